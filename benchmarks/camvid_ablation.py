"""CamVid ablation: CE vs CE + single-scale / multi-scale / multi+cross-scale contrast, several seeds.

Each run trains the CamVid recipe ``configs/camvid/fpn_lite0.yaml`` with one contrast overlay (none,
``configs/contrast/{ss,ms,mscs}.yaml``, each with ``cpu_sampling.yaml``); ``--heads``
swaps the head, e.g. ``deeplabv3``) on ``train`` with a fixed CPU-sized recipe, then scores the
*final* model on ``--eval-split`` (no checkpoint is picked on test). Every finished run is appended
to ``--results`` (JSON lines) and skipped when the script starts again; an interrupted run resumes
from its ``last.ckpt``. ``--report`` prints the tables (mean, std, every seed, per-class IoU).

    python benchmarks/camvid_ablation.py --data-root ../shared/data/camvid            # run what is missing
    python benchmarks/camvid_ablation.py --report                                      # tables only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("ce", "ss", "ms", "mscs")
# Heads whose model returns fewer than four embedding maps: "ss" must weight their deepest map.
NUM_MAPS = {"deeplabv3": 3}
LABELS = {"ce": "CE", "ss": "CE + single-scale", "ms": "CE + MS", "mscs": "CE + MS + CS"}


def run_key(head: str, setting: str, seed: int, split: str) -> str:
    return f"{head}/{setting}/seed{seed}/{split}"


def load_results(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["key"]: r for r in rows}


def append_result(path: Path, results: dict[str, dict], row: dict) -> None:
    """Record a finished run: in ``results`` and as one more JSON line of ``path``."""
    results[row["key"]] = row
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def train_args(args, head: str, setting: str, seed: int, out: Path, extra: Sequence[str] = ()) -> list[str]:
    configs = [ROOT / "configs" / "camvid" / "fpn_lite0.yaml"]
    if setting != "ce":
        overlays = ROOT / "configs" / "contrast"
        configs += [overlays / f"{setting}.yaml", overlays / "cpu_sampling.yaml"]
    return [
        *[a for c in configs for a in ("--config", str(c))],
        "--data.root", str(args.data_root),
        "--model.head", head,
        "--seed_everything", str(seed),
        "--trainer.max_steps", str(args.steps),
        "--trainer.default_root_dir", str(out),
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false",
        "--checkpoint.every_n_train_steps", "100",
        "--data.crop_size", json.dumps(args.crop),
        "--data.batch_size", str(args.batch),
        "--data.num_workers", str(args.workers),
    ] + (["--model.contrast.scale_weights", json.dumps([0.0] * (NUM_MAPS[head] - 1) + [1.0])]
         if setting == "ss" and head in NUM_MAPS else []) + list(extra)


def run_dir(args, head: str, setting: str, seed: int) -> Path:
    return Path(args.out) / head / setting / f"seed{seed}"


def run_one(args, head: str, setting: str, seed: int, out: Path | None = None, extra: Sequence[str] = ()) -> dict:
    """Train (or resume) one run in ``out`` and score its final checkpoint on ``args.eval_split``."""
    out = out or run_dir(args, head, setting, seed)
    ckpt = out / "checkpoints" / "last.ckpt"
    base = train_args(args, head, setting, seed, out, extra)
    exe = [sys.executable, "-m", "scalecontrast.cli"]
    t0 = time.time()
    fit = exe + ["fit", *base] + (["--ckpt_path", "last"] if ckpt.exists() else [])
    log = out / "fit.log"
    out.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        subprocess.run(fit, check=True, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    fit_seconds = time.time() - t0
    scores = evaluate(args, base, ckpt)
    # torch's intra-op threads of the training process (its default is the number of cores)
    scores["threads"] = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    return {"fit_seconds": round(fit_seconds, 1), **scores}


def evaluate(args, base: list[str], ckpt: Path) -> dict:
    """Scores of the final checkpoint on ``args.eval_split``, in this process."""
    from scalecontrast.cli import run_lightning

    split_opt = ["--data.test_split", args.eval_split]
    cli = run_lightning(["test", *base, *split_opt, "--ckpt_path", str(ckpt)])
    scores = cli.model.last_scores
    names = list(cli.model.class_names)
    iou = [round(float(v) * 100, 2) for v in scores["iou"].tolist()]
    return {"miou": round(float(scores["mIoU"]) * 100, 2), "iou": dict(zip(names, iou)),
            "pixel_acc": round(float(scores.get("pixel_acc", float("nan"))) * 100, 2)}


def paired_delta(values: list[float], baseline: list[float]) -> str:
    """``mean ± std`` of the per-seed differences, how many seeds are better, and the two-sided
    p-value of a paired t-test (``-`` below 2 pairs)."""
    diffs = [v - b for v, b in zip(values, baseline)]
    if len(diffs) < 2:
        return f"{diffs[0]:+.2f} (1 seed)" if diffs else "-"
    from scipy.stats import ttest_rel

    p = float(ttest_rel(values, baseline).pvalue)
    wins = sum(d > 0 for d in diffs)
    return (f"{statistics.mean(diffs):+.2f} ± {statistics.stdev(diffs):.2f}, better on {wins}/{len(diffs)}, "
            f"p = {p:.2f}")


def paired_by_seed(values: dict[int, float], baseline: dict[int, float]) -> str:
    """:func:`paired_delta` over the seeds both ``{seed: score}`` maps have."""
    shared = sorted(set(values) & set(baseline))
    return paired_delta([values[s] for s in shared], [baseline[s] for s in shared])


def report(results: dict[str, dict], split: str) -> str:
    lines = []
    heads = sorted({r["head"] for r in results.values()})
    for head in heads:
        rows = {s: [r for r in results.values() if r["head"] == head and r["setting"] == s and r["split"] == split]
                for s in SETTINGS}
        if not any(rows.values()):
            continue
        lines += [f"### {head} + tf_efficientnet_lite0, {split} mIoU (%)", "",
                  "| setting | runs | mean | std | seeds | vs CE, paired by seed |", "|---|---|---|---|---|---|"]
        ce = {r["seed"]: r["miou"] for r in rows["ce"]}
        for s in SETTINGS:
            rs = sorted(rows[s], key=lambda r: r["seed"])
            if not rs:
                continue
            vals = [r["miou"] for r in rs]
            std = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            seeds = ", ".join(f"{r['seed']}: {r['miou']:.2f}" for r in rs)
            paired = paired_by_seed({r["seed"]: r["miou"] for r in rs}, ce)
            lines.append(f"| {LABELS[s]} | {len(vals)} | {statistics.mean(vals):.2f} | {std:.2f} | {seeds} | "
                         f"{paired if s != 'ce' else '-'} |")
        classes = next(iter(r["iou"] for rs in rows.values() for r in rs))
        lines += ["", "Per-class IoU (%), mean over seeds:", "",
                  "| setting | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
        for s in SETTINGS:
            if rows[s]:
                means = [statistics.mean(r["iou"][c] for r in rows[s]) for c in classes]
                lines.append(f"| {LABELS[s]} | " + " | ".join(f"{m:.1f}" for m in means) + " |")
        secs = [r["fit_seconds"] for rs in rows.values() for r in rs]
        lines += ["", f"Training time per run: {min(secs) / 60:.1f}-{max(secs) / 60:.1f} min.", ""]
    return "\n".join(lines)


def write_block(path: Path, name: str, text: str) -> None:
    """Replace the text between ``<!-- NAME:BEGIN -->`` and ``<!-- NAME:END -->`` in ``path``."""
    begin, end = f"<!-- {name}:BEGIN -->", f"<!-- {name}:END -->"
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path}: markers {begin} / {end} not found")
    head, rest = doc.split(begin, 1)
    path.write_text(head + begin + "\n" + text.strip() + "\n" + end + rest.split(end, 1)[1])
    print(f"updated {path} ({name})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("SCALECONTRAST_CAMVID", "../shared/data/camvid"))
    p.add_argument("--heads", nargs="+", default=["fpn", "deeplabv3"])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--crop", type=int, nargs=2, default=[256, 256])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--eval-split", default="test", choices=["val", "test"])
    p.add_argument("--out", default=str(ROOT / "runs" / "ablation"))
    p.add_argument("--results", default=str(ROOT / "docs" / "results" / "camvid_ablation.jsonl"))
    p.add_argument("--report", action="store_true", help="print the tables and exit")
    p.add_argument("--docs", default=None, help="also write the tables into this Markdown file (between markers)")
    args = p.parse_args()
    results_path = Path(args.results)
    results = load_results(results_path)
    if not args.report:
        # seed-major order: after k rounds every setting has k seeds
        for head in args.heads:
            for seed in args.seeds:
                for setting in args.settings:
                    key = run_key(head, setting, seed, args.eval_split)
                    if key in results:
                        continue
                    print(f"[{time.strftime('%H:%M:%S')}] {key}: training {args.steps} steps", flush=True)
                    row = {"key": key, "head": head, "setting": setting, "seed": seed, "split": args.eval_split,
                           "steps": args.steps, "crop": args.crop, "batch": args.batch,
                           **run_one(args, head, setting, seed)}
                    append_result(results_path, results, row)
                    print(f"[{time.strftime('%H:%M:%S')}] {key}: mIoU {row['miou']:.2f} "
                          f"({row['fit_seconds'] / 60:.1f} min)", flush=True)
    text = report(results, args.eval_split)
    print(text)
    if args.docs:
        write_block(Path(args.docs), "ABLATION", text)


if __name__ == "__main__":
    main()
