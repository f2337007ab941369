"""What a CE training step costs, for this project's FPN and for smp's Unet at several decoder widths.

For each model (EfficientNet-Lite0 encoder, 11 classes, channels_last as the engine runs it): its
parameters, its forward GFLOPs per image split into encoder and decoder (``FlopCounterMode``), and
the median wall time of a CE training step (forward, cross-entropy, backward, SGD step) on random
batches of ``--batch`` x ``--crop``^2, the models taking turns on each step so that drifts in the
machine's speed hit them alike. Prints a Markdown table; the last column is the step time relative
to the FPN's, which turns the FPN's measured minutes per run into an estimate for the others.

    python benchmarks/model_cost.py [--steps 8] [--decoders 256,128,64,32,16 128,64,32,16,16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from scalecontrast import create_model


def fpn() -> nn.Module:
    return create_model("fpn", "tf_efficientnet_lite0", 11)


def smp_unet(decoder_channels: tuple[int, ...]) -> nn.Module:
    import segmentation_models_pytorch as smp

    return smp.Unet(encoder_name="tu-tf_efficientnet_lite0", encoder_weights=None, classes=11,
                    decoder_channels=decoder_channels)


def logits(out) -> torch.Tensor:
    """This project's models return ``(logits, features)``; smp's return the logits."""
    return out.logits if hasattr(out, "logits") else out


def gflops(model: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Forward GFLOPs per image: the whole model and its encoder (``encoder`` or ``backbone``)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    per_module = counter.get_flop_counts()
    total = sum(per_module["Global"].values())
    names = [n for n, _ in model.named_children() if n in ("encoder", "backbone")]
    key = f"{type(model).__name__}.{names[0]}" if names else None
    if key not in per_module:
        raise ValueError(f"{type(model).__name__}: no FLOPs counted for an `encoder` or `backbone` child")
    return total / x.shape[0] / 1e9, sum(per_module[key].values()) / x.shape[0] / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--decoders", nargs="+", default=["256,128,64,32,16", "128,64,32,16,16", "64,32,16,16,16"],
                   help="smp Unet decoder_channels to compare (comma-separated)")
    args = p.parse_args()
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {"FPN (this project), Lite0": fpn()}
    for spec in args.decoders:
        channels = tuple(int(c) for c in spec.split(","))
        models[f"smp Unet, Lite0, decoder_channels {channels}"] = smp_unet(channels)
    x = torch.randn(args.batch, 3, args.crop, args.crop).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 11, (args.batch, args.crop, args.crop))
    rows, opts, times = {}, {}, {}
    for name, model in models.items():
        model.to(memory_format=torch.channels_last).eval()
        total, enc = gflops(model, x[:1])
        rows[name] = (sum(p.numel() for p in model.parameters()) / 1e6, total, enc)
        model.train()
        opts[name] = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        times[name] = []
    for i in range(args.warmup + args.steps):
        for name, model in models.items():
            t = time.perf_counter()
            loss = F.cross_entropy(logits(model(x)), y)
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}; "
          f"CE step on batches of {args.batch} x {args.crop}^2, median of {args.steps} steps\n")
    print("| model | params (M) | GFLOPs/image (forward) | of which encoder | CE step (s) | vs FPN |")
    print("|---|---|---|---|---|---|")
    ref = statistics.median(times["FPN (this project), Lite0"])
    for name, (params, total, enc) in rows.items():
        sec = statistics.median(times[name])
        print(f"| {name} | {params:.2f} | {total:.2f} | {enc:.2f} | {sec:.2f} | {sec / ref:.2f}x |")


if __name__ == "__main__":
    main()
