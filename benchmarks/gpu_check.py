"""A prepared GPU check: training speed and memory of the paper recipes, the loss alone, host syncs.

One command on a machine with one CUDA GPU (installs nothing, downloads nothing, needs no data)::

    python benchmarks/gpu_check.py

(from the repository root, with the package installed or ``PYTHONPATH=src``). It prints the device,
the versions and the settings, then three Markdown tables, in well under 8 minutes (each setting's
warm-up and timed steps stop at ``--setting-cap-s``; a setting whose worst case no longer fits in
``--budget-s`` is skipped and reported as such, so with the defaults the whole run stays under about
7.5 minutes; every section prints its elapsed time):

(a) training steps/s and peak GPU memory of the Cityscapes HRNet-W48 recipe (512x1024 crops,
    batch 3, SGD) and the ADE20K UPerNet-Swin-T recipe (512x512, batch 2, AdamW, + 0.4 aux CE),
    CE vs CE + 0.1 x (MS + CS) with the contrast options of ``configs/contrast/mscs.yaml``, under
    bf16 autocast with model and inputs channels_last, ``pretrained=False``; random images and
    blocky random label maps (a few warm-up steps, then timed steps). A setting that runs out of
    memory is reported as OOM and retried with half the batch.
(b) ``contrastive_loss`` forward + backward at N = 1k / 4k / 10k (C = 256, 20 classes) against the
    "matmul floor" (the three N x N x C fp32 matmuls any exact method needs).
(c) host synchronisations (``torch.cuda.set_sync_debug_mode("warn")``) in one contrastive-head
    forward + backward per recipe, with the source lines that caused them, and in a whole step.

``--smoke`` runs the same code with tiny backbones and inputs (hrnet_w18_small, resnet18 UPerNet,
64x64, batch 2, 2 steps, N = 200) on whatever device there is (the CPU included, where the sync
count is "n/a"); a test keeps it working. On a GPU, ``--smoke`` is a quick pre-check of the full run.

    python benchmarks/gpu_check.py [--smoke] [--recipes cityscapes ade20k] [--steps 10] [--warmup 3]
                                   [--budget-s 450] [--setting-cap-s 40] [--sizes 1000 4000 10000]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from scalecontrast import create_model
from scalecontrast.losses import ContrastiveHead, contrastive_loss

ROOT = Path(__file__).resolve().parents[1]
IGNORE = 255
# Worst-case seconds a setting needs beyond its warm-up (<= cap / 2) and timed steps (<= cap): model
# construction, data, the sync counts. A setting starts only if it fits in what is left of --budget-s.
SETTING_ALLOWANCE_S = 30.0
LOSS_ALLOWANCE_S = 20.0  # one N of section (b), worst case


@dataclass
class Recipe:
    name: str
    config: str  # the MS+CS config (its CE twin differs only in ``contrast``)
    head: str
    backbone: str
    num_classes: int
    crop: tuple[int, int]
    batch: int
    aux_weight: float
    model_kwargs: dict
    contrast: dict  # ContrastiveHead options (embed_dim + the loss's options)
    weight: float  # contrast weight in the total loss
    optimizer: dict
    classes_per_image: int  # for the blocky random labels
    notes: list[str] = field(default_factory=list)


OVERLAY = "configs/contrast/mscs.yaml"
# Used when a config file is missing or unreadable (the values of the configs at the time of writing).
_PAPER_CONTRAST = dict(embed_dim=256, weight=0.1, scale_weights=[1.0, 0.7, 0.4, 0.1], temperature=0.1,
                       cross_scale=True, cross_scale_temperature=0.1, cross_scale_weights=[1.0, 1.0],
                       min_views=5, max_views=2500, max_total=10000)
_FALLBACK = {
    "cityscapes": dict(config="configs/cityscapes/hrnet_w48.yaml", num_classes=19,
                       model=dict(head="hrnet", backbone="hrnet_w48", contrast=_PAPER_CONTRAST,
                                  optimizer=dict(name="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4)),
                       data=dict(batch_size=3, crop_size=[512, 1024])),
    "ade20k": dict(config="configs/ade20k/upernet_swin_t.yaml", num_classes=150,
                   model=dict(head="upernet", backbone="swin_tiny_patch4_window7_224",
                              aux_weight=0.4, model_kwargs={"drop_path_rate": 0.3}, contrast=_PAPER_CONTRAST,
                              optimizer=dict(name="adamw", lr=6e-5, betas=[0.9, 0.999], weight_decay=0.01)),
                   data=dict(batch_size=2, crop_size=[512, 512])),
}
# --smoke: tiny stand-ins, same code paths
_SMOKE = {"cityscapes": dict(backbone="hrnet_w18_small", model_kwargs={}),
          "ade20k": dict(backbone="resnet18", model_kwargs={"channels": 64, "aux_channels": 32})}


def load_recipe(name: str, smoke: bool) -> Recipe:
    spec = _FALLBACK[name]
    notes = []
    cfg = None
    try:
        import yaml

        with open(ROOT / spec["config"]) as f:
            cfg = yaml.safe_load(f)
        with open(ROOT / OVERLAY) as f:  # the contrast settings: an overlay on the base recipe
            cfg["model"]["contrast"] = yaml.safe_load(f)["model"]["contrast"]
        opt = cfg["model"]["optimizer"]  # by class path: torch.optim.SGD / AdamW and their init args
        cfg["model"]["optimizer"] = {"name": opt["class_path"].rsplit(".", 1)[-1].lower(), **opt["init_args"]}
    except Exception as e:  # noqa: BLE001 - any problem: fall back to the built-in copy
        notes.append(f"{spec['config']} unreadable ({type(e).__name__}): built-in copy of its settings")
        cfg = None
    cfg = cfg or spec
    m, d = cfg["model"], cfg.get("data", {})
    contrast = dict(m.get("contrast") or _PAPER_CONTRAST)
    weight = float(contrast.pop("weight", 0.1))
    crop = tuple(int(c) for c in d.get("crop_size", spec["data"]["crop_size"]))
    batch = int(d.get("batch_size", spec["data"]["batch_size"]))
    backbone, model_kwargs = m["backbone"], dict(m.get("model_kwargs") or {})
    if smoke:
        crop, batch = (64, 64), 2
        backbone, model_kwargs = _SMOKE[name]["backbone"], dict(_SMOKE[name]["model_kwargs"])
    k = int(spec["num_classes"])
    return Recipe(name=name, config=spec["config"], head=m["head"], backbone=backbone, num_classes=k, crop=crop,
                  batch=batch, aux_weight=float(m.get("aux_weight", 0.4)), model_kwargs=model_kwargs,
                  contrast=contrast, weight=weight, optimizer=dict(m["optimizer"]),
                  classes_per_image=min(k, 19), notes=notes)


# ----------------------------------------------------------------------------------------- helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def blocky_batch(b: int, size: tuple[int, int], num_classes: int, classes_per_image: int, device: torch.device,
                 g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images ``(B, 3, H, W)`` (channels_last) and label maps ``(B, H, W)`` int64 made of
    square blocks (side ``min(H, W) // 8``), each of one of ``classes_per_image`` classes drawn per
    image, about 5 % of the blocks ignore (255)."""
    h, w = size
    side = max(8, min(h, w) // 8)
    gh, gw = -(-h // side), -(-w // side)
    labels = torch.empty(b, gh, gw, dtype=torch.int64)
    for i in range(b):
        present = torch.randperm(num_classes, generator=g)[:classes_per_image]
        labels[i] = present[torch.randint(0, len(present), (gh, gw), generator=g)]
    labels[torch.rand(b, gh, gw, generator=g) < 0.05] = IGNORE
    labels = labels.repeat_interleave(side, 1).repeat_interleave(side, 2)[:, :h, :w].contiguous()
    images = torch.randn(b, 3, h, w, generator=g)
    return (images.to(device).contiguous(memory_format=torch.channels_last), labels.to(device))


def build_optimizer(params_named, spec: dict) -> torch.optim.Optimizer:
    spec = dict(spec)
    name = spec.pop("name", "sgd")
    wd = float(spec.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD([p for _, p in params_named], lr=float(spec["lr"]),
                               momentum=float(spec.get("momentum", 0.9)), weight_decay=wd)
    if name == "adamw":
        # as the Swin recipe: no weight decay on norms, biases, position embeddings, relative position tables
        decay, no_decay = [], []
        for n, p in params_named:
            (no_decay if p.ndim <= 1 or "position" in n or "pos_embed" in n else decay).append(p)
        return torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                                 lr=float(spec["lr"]), betas=tuple(spec.get("betas", (0.9, 0.999))))
    raise ValueError(f"optimizer {name!r} not handled by this check")


def seg_loss(out, labels: torch.Tensor, aux_weight: float) -> torch.Tensor:
    loss = F.cross_entropy(out.logits.float(), labels, ignore_index=IGNORE)
    if out.aux_logits is not None:
        aux = out.aux_logits.float()
        if aux.shape[-2:] != labels.shape[-2:]:
            aux = F.interpolate(aux, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        loss = loss + aux_weight * F.cross_entropy(aux, labels, ignore_index=IGNORE)
    return loss


class SyncCounter:
    """Counts the host synchronisations CUDA's sync debug mode reports inside the ``with`` block."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.count: int | None = None
        self.sources: Counter = Counter()

    def __enter__(self):
        if self.device.type != "cuda":
            return self
        self._catch = warnings.catch_warnings(record=True)
        self._records = self._catch.__enter__()
        warnings.simplefilter("always")  # every occurrence, not once per source line
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type != "cuda":
            return
        torch.cuda.set_sync_debug_mode("default")
        self._catch.__exit__(*exc)
        syncs = [r for r in self._records if "synchroniz" in str(r.message).lower()]
        self.count = len(syncs)
        for r in syncs:
            path = Path(r.filename)
            where = "/".join(path.parts[-3:] if "scalecontrast" in path.parts else path.parts[-2:])
            self.sources[f"{where}:{r.lineno}"] += 1

    def describe(self, top: int = 6) -> str:
        if self.count is None:
            return "n/a"
        return ", ".join(f"{k} x{v}" for k, v in self.sources.most_common(top)) or "-"


# ------------------------------------------------------------------------------------ (a) training


def train_setting(recipe: Recipe, contrast: bool, batch: int, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.no_autocast)
    model = create_model(recipe.head, recipe.backbone, recipe.num_classes, pretrained=False, **recipe.model_kwargs)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    named = list(model.named_parameters())
    head = None
    if contrast:
        head = ContrastiveHead(model.feature_channels, **recipe.contrast).to(device).train()
        named += [(f"contrast.{n}", p) for n, p in head.named_parameters()]
    opt = build_optimizer(named, recipe.optimizer)
    data = [blocky_batch(batch, recipe.crop, recipe.num_classes, recipe.classes_per_image, device, g)
            for _ in range(2)]

    def step(x, y):
        with amp:
            out = model(x)
            loss = seg_loss(out, y, recipe.aux_weight)
            if head is not None:
                loss = loss + recipe.weight * head(out.features, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return out

    t0 = time.perf_counter()
    for i in range(args.warmup):  # at least one; stops early when slow
        step(*data[i % 2])
        _sync(device)
        if time.perf_counter() - t0 > args.setting_cap_s / 2:
            break
    warm_s = time.perf_counter() - t0
    times = []
    start = time.perf_counter()
    for i in range(args.steps):
        t = time.perf_counter()
        step(*data[i % 2])
        _sync(device)
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > args.setting_cap_s:
            break
    total = time.perf_counter() - start
    res = {"batch": batch, "steps": len(times), "steps_s": len(times) / total, "median_ms": statistics.median(times)
           * 1000, "peak_gib": _peak_gib(device), "warm_s": warm_s}

    # (c) host syncs: one step end to end, and the contrastive head's forward + backward alone
    try:
        res.update(count_syncs(step, head, amp, *data[0], device))
    except Exception as e:  # noqa: BLE001 - keep the timings; say why the count is missing
        res["sync_error"] = "OOM" if _is_oom(e) else f"error: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    return res


def count_syncs(step, head, amp, x, y, device: torch.device) -> dict:
    step_sync = SyncCounter(device)
    with step_sync:
        out = step(x, y)
    _sync(device)
    res = {"sync_step": step_sync}
    if head is not None:
        feats = [f.detach().requires_grad_(True) for f in out.features]
        with amp:  # once outside the count: lazy initialisations are not per-step costs
            loss = head(feats, y)
        loss.backward()
        _sync(device)
        head_sync = SyncCounter(device)
        with head_sync:
            with amp:
                loss = head(feats, y)
            loss.backward()
        _sync(device)
        res["sync_head"] = head_sync
    return res


def section_training(recipes: list[Recipe], args, device: torch.device, t_start: float) -> list[tuple]:
    print("## (a) Training step: CE vs CE + 0.1 x (MS + CS)\n")
    print("| recipe | loss | batch x crop | optimizer | steps timed | steps/s | images/s | median ms/step | "
          "vs CE | peak GPU memory (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    t_sec = time.perf_counter()
    syncs = []
    for recipe in recipes:
        ce_ms = None
        for contrast in (False, True):
            label = f"CE + {recipe.weight:g} MS+CS" if contrast else "CE"
            if recipe.aux_weight and recipe.head in ("upernet", "ocrnet"):
                label = label.replace("CE", f"CE + {recipe.aux_weight:g} aux CE", 1)
            desc = f"{recipe.head} {recipe.backbone}"
            opt = recipe.optimizer.get("name", "sgd")
            batch = recipe.batch
            while True:
                crop = f"{batch} x {recipe.crop[0]}x{recipe.crop[1]}"
                if time.perf_counter() - t_start + SETTING_ALLOWANCE_S + 1.5 * args.setting_cap_s > args.budget_s:
                    print(f"| {desc} | {label} | {crop} | {opt} | skipped (--budget-s {args.budget_s:g}) "
                          "| | | | | |", flush=True)
                    syncs.append((recipe, contrast, None, "skipped"))
                    break
                _free(device)
                res, err = None, None
                try:
                    res = train_setting(recipe, contrast, batch, args, device)
                except Exception as e:  # noqa: BLE001 - report and go on to the next setting
                    err = "OOM" if _is_oom(e) else f"error: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
                if res is None:
                    _free(device)
                    print(f"| {desc} | {label} | {crop} | {opt} | {err} | | | | | |", flush=True)
                    if err == "OOM" and batch > 1:
                        batch //= 2
                        continue
                    syncs.append((recipe, contrast, None, err))
                    break
                if not contrast:
                    ce_ms = res["median_ms"]
                rel = f"{res['median_ms'] / ce_ms:.2f}x" if ce_ms else "-"
                peak = f"{res['peak_gib']:.2f}" if res["peak_gib"] is not None else "n/a (CPU)"
                print(f"| {desc} | {label} | {crop} | {opt} | {res['steps']} | {res['steps_s']:.2f} | "
                      f"{res['steps_s'] * batch:.1f} | {res['median_ms']:.0f} | {rel} | {peak} |", flush=True)
                syncs.append((recipe, contrast, res, None))
                break
    print(f"\nsection (a): {time.perf_counter() - t_sec:.1f} s\n", flush=True)
    return syncs


def section_syncs(results: list[tuple], device: torch.device) -> None:
    print("## (c) Host synchronisations (torch.cuda.set_sync_debug_mode('warn'))\n")
    if device.type != "cuda":
        print("n/a: no CUDA device (the count needs CUDA's sync debug mode)\n")
    print("| recipe | loss | syncs in the contrastive head's forward + backward | sources (head) | "
          "syncs in one whole training step |")
    print("|---|---|---|---|---|")
    for recipe, contrast, res, err in results:
        label = "MS+CS" if contrast else "CE"
        desc = f"{recipe.head} {recipe.backbone}"
        if res is None:
            print(f"| {desc} | {label} | {err} | | {err} |")
            continue
        if "sync_error" in res:
            print(f"| {desc} | {label} | {res['sync_error']} | | {res['sync_error']} |")
            continue
        head = res.get("sync_head")
        head_n = "-" if head is None else ("n/a" if head.count is None else str(head.count))
        src = "-" if head is None else head.describe()
        step = res["sync_step"]
        step_n = "n/a" if step.count is None else str(step.count)
        print(f"| {desc} | {label} | {head_n} | {src} | {step_n} |")
    print(flush=True)


# ------------------------------------------------------------------------------------ (b) the loss


def _time(fn, device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _loss_one(n: int, args, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(n, args.dim, generator=g).to(device)
    labels = torch.randint(0, args.classes, (n,), generator=g).to(device)
    a = F.normalize(feats, dim=1)
    b = a.clone()

    def floor():
        s = a @ b.T  # similarities
        _ = s @ b  # gradient w.r.t. the anchors
        _ = s.T @ a  # gradient w.r.t. the contrast set

    x = feats.clone().requires_grad_(True)

    def ours():
        x.grad = None
        contrastive_loss(x, labels).backward()

    def ours_amp():
        x.grad = None
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = contrastive_loss(x, labels)
        loss.backward()

    res = {"floor": _time(floor, device, args.loss_warmup, args.loss_repeats)}
    _free(device)
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    res["ours"] = _time(ours, device, args.loss_warmup, args.loss_repeats)
    res["peak_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else None
    res["amp"] = _time(ours_amp, device, args.loss_warmup, args.loss_repeats)
    res["dense_mib"] = n * n * 4 / 2**20  # one fp32 N x N matrix, what a dense formulation holds (several)
    return res


def section_loss(args, device: torch.device, t_start: float) -> None:
    print(f"## (b) contrastive_loss alone: forward + backward, C = {args.dim}, {args.classes} classes "
          f"(median of {args.loss_repeats})\n")
    print("| N | matmul floor: 3 NxNxC fp32 matmuls (ms) | contrastive_loss fp32 (ms) | vs floor | "
          "under bf16 autocast (ms) | peak extra memory (MiB) | one fp32 NxN matrix (MiB) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    t_sec = time.perf_counter()
    for n in args.sizes:
        if time.perf_counter() - t_start + LOSS_ALLOWANCE_S > args.budget_s:
            print(f"| {n} | skipped (--budget-s {args.budget_s:g}) | | | | | |", flush=True)
            continue
        r, err = None, None
        try:
            r = _loss_one(n, args, device)
        except Exception as e:  # noqa: BLE001
            err = "OOM" if _is_oom(e) else f"error: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
        if r is None:
            _free(device)
            print(f"| {n} | {err} | | | | | |", flush=True)
            continue
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "n/a (CPU)"
        print(f"| {n} | {r['floor'] * 1000:.2f} | {r['ours'] * 1000:.2f} | {r['ours'] / r['floor']:.2f}x | "
              f"{r['amp'] * 1000:.2f} | {peak} | {r['dense_mib']:.0f} |", flush=True)
    print(f"\nsection (b): {time.perf_counter() - t_sec:.1f} s\n", flush=True)


# ------------------------------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny backbones and inputs (runs on a CPU in seconds)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--recipes", nargs="+", default=["cityscapes", "ade20k"], choices=list(_FALLBACK))
    p.add_argument("--steps", type=int, default=None, help="timed steps per setting (default 10; smoke 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per setting (default 3; smoke 1)")
    p.add_argument("--setting-cap-s", type=float, default=40.0,
                   help="a setting's timed steps stop after this many seconds (its warm-up after half of it)")
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="total time limit: a setting (or an N of the loss table) starts only if its worst case "
                        "still fits, else it is reported as skipped")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="N for (b) (default 1000 4000 10000; smoke 200)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--loss-repeats", type=int, default=None, help="default 10; smoke 2")
    p.add_argument("--loss-warmup", type=int, default=2)
    p.add_argument("--no-autocast", action="store_true", help="fp32 training steps instead of bf16 autocast")
    p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    args = p.parse_args(argv)
    smoke = args.smoke
    args.steps = args.steps if args.steps is not None else (2 if smoke else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 3)
    args.sizes = args.sizes or ([200] if smoke else [1000, 4000, 10000])
    args.loss_repeats = args.loss_repeats if args.loss_repeats is not None else (2 if smoke else 10)
    args.loss_warmup = 1 if smoke else args.loss_warmup
    return args


def main(argv: list[str] | None = None) -> None:
    t_start = time.perf_counter()
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    recipes = [load_recipe(r, args.smoke) for r in args.recipes]

    print(f"# scalecontrast GPU check{' (--smoke)' if args.smoke else ''}\n")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        print(f"- device: {torch.cuda.get_device_name(device)} ({props.total_memory / 2**30:.0f} GiB), "
              f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
              f"cudnn.benchmark {torch.backends.cudnn.benchmark}, "
              f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32} / conv {torch.backends.cudnn.allow_tf32}")
    else:
        print(f"- device: {device} ({torch.get_num_threads()} threads, {os.cpu_count()} CPUs); no CUDA: "
              "peak memory and sync counts are n/a")
    print(f"- torch {torch.__version__}, python {sys.version.split()[0]}")
    print(f"- training: {'fp32' if args.no_autocast else 'bf16 autocast'}, channels_last, pretrained=False, "
          f"random images + blocky random labels (5 % ignore); {args.warmup} warm-up + up to {args.steps} timed "
          f"steps per setting (cap {args.setting_cap_s:g} s), budget {args.budget_s:g} s")
    for r in recipes:
        extra = f" {r.model_kwargs}" if r.model_kwargs else ""
        print(f"- {r.name}: {r.head} {r.backbone}{extra}, {r.num_classes} classes "
              f"({r.classes_per_image} per image), batch {r.batch} x {r.crop[0]}x{r.crop[1]}, optimizer {r.optimizer}, "
              f"aux weight {r.aux_weight:g} (if the model has aux logits); contrast (from {r.config} + {OVERLAY}): "
              f"weight {r.weight:g}, {r.contrast}")
        for note in r.notes:
            print(f"  - note: {note}")
    print(f"- loss: N = {args.sizes}, C = {args.dim}, {args.classes} classes\n", flush=True)

    results = section_training(recipes, args, device, t_start)
    section_loss(args, device, t_start)
    section_syncs(results, device)
    print(f"total: {time.perf_counter() - t_start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
