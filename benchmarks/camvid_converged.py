"""CamVid at convergence: the calibration curve of the converged CPU recipe (val only).

``--calibrate`` trains FPN + EfficientNet-Lite0 (offline ImageNet weights) on ``train`` for a long
poly schedule and scores ``val`` every ``--val-every`` steps, for CE (and, with
``--settings ce mscs``, CE + 0.1 MS+CS), so the curve shows where training flattens; the
converged recipe's schedule is picked there, on val only. Every val score is a line of
``--curve`` (``setting``, ``model``, ``seed``, ``split``, ``step``, ``miou``, ``per_class``);
the run is resumable (an interrupted one resumes exactly from its ``last.ckpt``; the points
already recorded are kept). ``--figure`` draws val mIoU against steps.

    OMP_NUM_THREADS=1 python benchmarks/camvid_converged.py --calibrate --settings ce &
    python benchmarks/camvid_converged.py --report --figure docs/figures/camvid_calibration.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fpn_lite0"
CONFIGS = {"ce": "fpn_lite0_ce.yaml", "mscs": "fpn_lite0_mscs.yaml"}
LABELS = {"ce": "CE", "mscs": "CE + 0.1 MS+CS"}


def calibration_args(args, setting: str, out: Path) -> list[str]:
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(out), "name": "csv"}}
    return [
        "--config", str(ROOT / "configs" / "camvid" / CONFIGS[setting]),
        "--data.root", str(args.data_root),
        "--seed_everything", str(args.seed),
        "--trainer.max_steps", str(args.steps),
        "--trainer.default_root_dir", str(out),
        "--trainer.val_check_interval", str(args.val_every),
        "--trainer.check_val_every_n_epoch", "null",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger", json.dumps(logger),
        "--checkpoint.every_n_train_steps", "100",
        "--data.crop_size", json.dumps(args.crop),
        "--data.batch_size", str(args.batch),
        "--data.num_workers", str(args.workers),
        # the paper's sampling caps are the study's; the CPU config's are cheaper to calibrate with
    ]


def read_curve(out: Path) -> dict[int, float]:
    """``{step: val mIoU (%)}`` from every CSVLogger version of a run (a resumed run writes a new one)."""
    points: dict[int, float] = {}
    for f in sorted(out.glob("csv/version_*/metrics.csv")):
        with open(f) as fh:
            for row in csv.DictReader(fh):
                v = row.get("val/mIoU")
                if v not in (None, ""):
                    # Lightning logs validation at global_step - 1: store the optimizer steps done
                    points[int(row["step"]) + 1] = round(float(v) * 100, 2)
    return points


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record_curve(path: Path, setting: str, seed: int, points: dict[int, float], args) -> int:
    """Append the points not yet in ``path``; returns how many were new."""
    have = {(r["setting"], r["seed"], r["step"]) for r in load_rows(path) if r.get("kind") == "calibration"}
    new = [(s, m) for s, m in sorted(points.items()) if (setting, seed, s) not in have]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for step, miou in new:
            f.write(json.dumps({"kind": "calibration", "setting": setting, "model": MODEL, "seed": seed,
                                "split": "val", "step": step, "miou": miou, "schedule_steps": args.steps,
                                "crop": args.crop, "batch": args.batch}) + "\n")
    return len(new)


def calibrate(args) -> None:
    path = Path(args.curve)
    for setting in args.settings:
        out = Path(args.out) / "calibration" / setting / f"seed{args.seed}"
        done = out / "done"
        if done.exists():
            print(f"{setting}: calibration run already finished ({out})")
            continue
        ckpt = out / "checkpoints" / "last.ckpt"
        cmd = [sys.executable, "-m", "scalecontrast.cli", "fit", *calibration_args(args, setting, out)]
        if ckpt.exists():
            cmd += ["--ckpt_path", "last"]
        out.mkdir(parents=True, exist_ok=True)
        print(f"[{time.strftime('%H:%M:%S')}] {setting}: {args.steps} steps, val every {args.val_every}", flush=True)
        t0 = time.time()
        with open(out / "fit.log", "a") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            while proc.poll() is None:  # record the curve as it grows
                time.sleep(60)
                record_curve(path, setting, args.seed, read_curve(out), args)
        record_curve(path, setting, args.seed, read_curve(out), args)
        if proc.returncode != 0:
            raise SystemExit(f"{setting}: fit failed (exit {proc.returncode}), see {out / 'fit.log'}")
        done.write_text(f"{(time.time() - t0) / 60:.1f} min in the last start\n")
        print(f"[{time.strftime('%H:%M:%S')}] {setting}: done", flush=True)


def report(path: Path) -> str:
    rows = [r for r in load_rows(path) if r.get("kind") == "calibration"]
    settings = sorted({r["setting"] for r in rows}, key=list(CONFIGS).index)
    steps = sorted({r["step"] for r in rows})
    by = {(r["setting"], r["step"]): r["miou"] for r in rows}
    lines = ["| step | " + " | ".join(f"{LABELS[s]} val mIoU (%)" for s in settings) + " |",
             "|---|" + "---|" * len(settings)]
    for step in steps:
        lines.append(f"| {step} | " + " | ".join(f"{by[(s, step)]:.2f}" if (s, step) in by else "-"
                                                for s in settings) + " |")
    return "\n".join(lines)


def figure(path: Path, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in load_rows(path) if r.get("kind") == "calibration"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in sorted({r["setting"] for r in rows}, key=list(CONFIGS).index):
        pts = sorted((r["step"], r["miou"]) for r in rows if r["setting"] == s)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=LABELS[s])
    ax.set_xlabel("training step (batch 8)")
    ax.set_ylabel("val mIoU (%)")
    ax.set_title("CamVid val, FPN + EfficientNet-Lite0 (calibration)")
    ax.grid(alpha=0.3)
    ax.legend()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(dest, dpi=120)
    print(f"wrote {dest}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("SCALECONTRAST_CAMVID", "../shared/data/camvid"))
    p.add_argument("--calibrate", action="store_true", help="train the calibration run(s) (resumable)")
    p.add_argument("--settings", nargs="+", default=["ce"], choices=list(CONFIGS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=3000, help="length of the calibration's poly schedule")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--crop", type=int, nargs=2, default=[256, 256])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "runs" / "converged"))
    p.add_argument("--curve", default=str(ROOT / "docs" / "results" / "camvid_calibration.jsonl"))
    p.add_argument("--report", action="store_true", help="print the calibration table")
    p.add_argument("--figure", default=None, help="draw the calibration curve into this PNG")
    args = p.parse_args()
    if args.calibrate:
        calibrate(args)
    if args.report or not args.calibrate:
        print(report(Path(args.curve)))
    if args.figure:
        figure(Path(args.curve), Path(args.figure))


if __name__ == "__main__":
    main()
