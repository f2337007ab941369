"""Cost of the contrastive supervision: training-step time, CE vs MS+CS.

Times full training steps (forward, CE (+ 0.1 x contrastive head), backward, SGD step) of the CamVid
model on real CamVid batches (the training augmentation, so the sampled anchor counts are the real
ones), with the contrastive loss at the paper's sampling settings (max_views 2500, max_total 10000)
and at the CPU configs' caps. Prints a Markdown table. (The model is the same with and without the
contrastive head, so inference costs the same: the head is training-only.)

    python benchmarks/train_step.py --data-root ../shared/data/camvid [--head fpn] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from scalecontrast import create_model
from scalecontrast.data import HALF_MEAN, HALF_STD, get_dataset, train_transforms
from scalecontrast.losses import ContrastiveHead

PAPER_CAPS = dict(max_views=2500, max_total=10000)
TRUNK_ONLY = "CE + the projectors' trunks only (Conv-ReLU-BN over every pixel, no sampling, no loss), channels_last"
# name -> (ContrastiveHead options or None for CE, model options, channels_last)
SETTINGS: dict[str, tuple[dict | None, dict, bool]] = {
    "CE, default layout": (None, {}, False),
    "CE + 0.1 MS+CS (paper caps: 2500 views, 10000 total), default layout": (PAPER_CAPS, {}, False),
    "CE, channels_last (the default)": (None, {}, True),
    "CE + 0.1 MS+CS (paper caps), channels_last": (PAPER_CAPS, {}, True),
    "CE + 0.1 MS+CS (CPU config caps: 500 views, 2000 total), channels_last": (
        dict(max_views=500, max_total=2000), {}, True),
    "CE + 0.1 MS+CS (paper caps), channels_last, taps at the backbone stages (embed_indices=(0, 1, 2, 3))": (
        PAPER_CAPS, {"embed_indices": (0, 1, 2, 3)}, True),
    # the floor of any exact implementation of the paper's projector: its Conv1x1-ReLU-BN trunk runs
    # over every pixel (BN's statistics are those of the whole map), with the gradient of a mean.
    TRUNK_ONLY: (PAPER_CAPS, {}, True),
}


def batches(root: str, crop: int, batch: int, n: int):
    ds = get_dataset("camvid", root, "train", transform=train_transforms((crop, crop), mean=HALF_MEAN, std=HALF_STD))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(0))
    out = []
    for item in loader:
        out.append((item["image"], item["mask"]))
        if len(out) == n:
            return out
    return out


def time_training(head: str, data, settings: dict, warmup: int, compiled: frozenset = frozenset()) -> dict[str, float]:
    """Median step time per setting; the settings take turns on each batch so that drifts in the
    machine's speed affect them alike."""
    runs = {}
    for name, (caps, model_kwargs, channels_last) in settings.items():
        torch.manual_seed(0)
        model = create_model(head, "tf_efficientnet_lite0", 11, **model_kwargs).train()
        contrast = ContrastiveHead(model.feature_channels, **caps).train() if caps is not None else None
        if channels_last:
            model.to(memory_format=torch.channels_last)
            if contrast is not None:
                contrast.to(memory_format=torch.channels_last)
        params = list(model.parameters()) + (list(contrast.parameters()) if contrast is not None else [])
        forward = torch.compile(model) if name in compiled else model
        runs[name] = (forward, contrast, torch.optim.SGD(params, lr=0.01, momentum=0.9), [], channels_last,
                      name == TRUNK_ONLY)
    for i, (images, masks) in enumerate(data):
        for model, contrast, opt, times, channels_last, trunk_only in runs.values():
            t = time.perf_counter()
            x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
            out = model(x)
            loss = F.cross_entropy(out.logits, masks, ignore_index=255)
            if trunk_only:
                loss = loss + 0.1 * sum(p.trunk(f).mean() for p, f in zip(contrast.projectors, out.features))
            elif contrast is not None:
                loss = loss + 0.1 * contrast(out.features, masks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= warmup:
                times.append(time.perf_counter() - t)
    return {name: statistics.median(run[3]) for name, run in runs.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("SCALECONTRAST_CAMVID", "../shared/data/camvid"))
    p.add_argument("--head", default="fpn")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models (compiled in warm-up)")
    args = p.parse_args()
    data = batches(args.data_root, args.crop, args.batch, args.steps + args.warmup)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.head} + tf_efficientnet_lite0, "
          f"CamVid batches of {args.batch} x {args.crop}^2, median of {args.steps} steps\n")
    settings = {k: v for k, v in SETTINGS.items()
                if "embed_indices" not in v[1] or args.head in ("fpn", "upernet")}
    compiled = set()
    if args.compile:
        for name in ("CE, channels_last (the default)", "CE + 0.1 MS+CS (paper caps), channels_last"):
            settings[name + ", torch.compile"] = settings[name]
            compiled.add(name + ", torch.compile")
    t0 = time.perf_counter()
    train = time_training(args.head, data, settings, args.warmup, frozenset(compiled))
    print(f"all settings timed in {time.perf_counter() - t0:.0f} s (compilation included)")
    print(f"load average {os.getloadavg()[0]:.2f}\n")
    print("| training step | seconds | relative to CE in the same layout | relative to CE, default layout |")
    print("|---|---|---|---|")
    for name, sec in train.items():
        ce = train["CE, channels_last (the default)" if "channels_last" in name else "CE, default layout"]
        print(f"| {name} | {sec:.3f} | {sec / ce:.3f}x | {sec / train['CE, default layout']:.2f}x |")


if __name__ == "__main__":
    main()
