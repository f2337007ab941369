"""CamVid study of the peers' contrastive options on ``val``: hard anchors and a pixel memory.

Every variant is the CamVid MS+CS recipe of ``camvid_ablation.py`` (FPN + EfficientNet-Lite0, 500
steps of 8 x 256^2 crops, trained on ``train``, the *final* model scored on ``val``) with one change:

- ``mscs``: MS+CS as configured (the baseline of this study, trained with the current code);
- ``hard_0.5``: prediction-aware hard anchors, half of each pair's views mispredicted pixels;
- ``memory_1000`` / ``memory_5000``: a per-class pixel memory of 1000 / 5000 embeddings per scale;
- ``hard_0.5_memory_1000``: both.

Scored on ``val`` only: the best variant on val is what the converged study may take to test. Every
finished run is a line of ``--results`` and is skipped when the script starts again; an interrupted run
resumes from its ``last.ckpt``. Two single-thread processes side by side get more done on 2 cores:

    OMP_NUM_THREADS=1 python benchmarks/camvid_variants.py --seeds 0 &
    OMP_NUM_THREADS=1 python benchmarks/camvid_variants.py --seeds 1 &
    python benchmarks/camvid_variants.py --report --docs docs/results.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from camvid_ablation import ROOT, append_result, load_results, paired_by_seed, run_one, write_block  # noqa: E402

VARIANTS: dict[str, tuple[list[str], str]] = {
    "mscs": ([], "MS+CS as configured (weight 0.1)"),
    "hard_0.5": (["--model.contrast.hard_fraction", "0.5"], "hard anchors, hard_fraction 0.5"),
    "memory_1000": (["--model.contrast.memory_size", "1000"], "pixel memory, 1000 per class and scale"),
    "memory_5000": (["--model.contrast.memory_size", "5000"], "pixel memory, 5000 per class and scale"),
    "hard_0.5_memory_1000": (["--model.contrast.hard_fraction", "0.5", "--model.contrast.memory_size", "1000"],
                             "both: hard_fraction 0.5 and memory 1000"),
}
HEAD = "fpn"


def report(results: dict[str, dict]) -> str:
    rows = {v: sorted((r for r in results.values() if r["variant"] == v), key=lambda r: r["seed"]) for v in VARIANTS}
    base = {r["seed"]: r["miou"] for r in rows["mscs"]}
    lines = ["| variant | runs | val mIoU mean ± std (%) | seeds | vs MS+CS, paired by seed | min/run |",
             "|---|---|---|---|---|---|"]
    for v, rs in rows.items():
        if not rs:
            continue
        vals = [r["miou"] for r in rs]
        std = f"{statistics.stdev(vals):.2f}" if len(vals) > 1 else "-"
        seeds = ", ".join(f"{r['seed']}: {r['miou']:.2f}" for r in rs)
        paired = "-" if v == "mscs" else paired_by_seed({r["seed"]: r["miou"] for r in rs}, base)
        mins = statistics.mean(r["fit_seconds"] for r in rs) / 60
        lines.append(f"| {VARIANTS[v][1]} | {len(vals)} | {statistics.mean(vals):.2f} ± {std} | {seeds} | "
                     f"{paired} | {mins:.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("SCALECONTRAST_CAMVID", "../shared/data/camvid"))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--crop", type=int, nargs=2, default=[256, 256])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "runs" / "variants"))
    p.add_argument("--results", default=str(ROOT / "docs" / "results" / "camvid_variants.jsonl"))
    p.add_argument("--report", action="store_true", help="print the table and exit")
    p.add_argument("--docs", default=None, help="also write the table into this Markdown file (between markers)")
    args = p.parse_args()
    args.eval_split = "val"
    path = Path(args.results)
    results = load_results(path)
    if not args.report:
        for seed in args.seeds:
            for v in args.variants:
                key = f"{HEAD}/{v}/seed{seed}/val"
                if key in results:
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] {key}: training {args.steps} steps", flush=True)
                out = Path(args.out) / v / f"seed{seed}"
                row = {"key": key, "head": HEAD, "variant": v, "seed": seed, "split": "val", "steps": args.steps,
                       "crop": args.crop, "batch": args.batch,
                       **run_one(args, HEAD, "mscs", seed, out=out, extra=VARIANTS[v][0])}
                append_result(path, load_results(path), row)
                results[key] = row
                print(f"[{time.strftime('%H:%M:%S')}] {key}: val mIoU {row['miou']:.2f} "
                      f"({row['fit_seconds'] / 60:.1f} min)", flush=True)
    text = report(load_results(path))
    print(text)
    if args.docs:
        write_block(Path(args.docs), "VARIANTS", text)


if __name__ == "__main__":
    main()
