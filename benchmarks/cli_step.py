"""The engine's own cost: the CamVid training step through the real CLI, CE vs MS+CS, side by side with
the bare step (model + contrastive head + CE + backward + SGD, no Lightning) at the same crop, batch and
anchor caps.

``scalecontrast fit`` runs the base recipe (default ``configs/camvid/fpn_lite0.yaml``: 288x288 crops,
batch 8) with and without the contrast overlays (default ``configs/contrast/mscs.yaml`` +
``cpu_sampling.yaml``), the loader in the main process, for ``--steps`` steps; step time = wall time
between the ends of consecutive steps, median over the steps after ``--skip``. The bare step
(``train_step.py``'s loop) runs on real CamVid batches between the CLI runs; every round repeats all
three, so drifts in the machine's speed hit them alike. The engine adds nothing of its own to the
contrastive path when the two MS+CS / CE ratios agree. Prints a Markdown table.

    python benchmarks/cli_step.py --data-root ../shared/data/camvid [--steps 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_cli(configs: list[str], args, out: Path) -> list[float]:
    times = out / "times.json"
    cmd = [sys.executable, "-m", "scalecontrast.cli", "fit",
           *[a for c in configs for a in ("--config", str(ROOT / c))],
           "--data.root", str(args.data_root), "--data.num_workers", "0", "--trainer.max_steps", str(args.steps),
           "--trainer.default_root_dir", str(out), "--trainer.limit_val_batches", "0",
           "--trainer.enable_progress_bar", "false", "--checkpoint.every_n_train_steps", "100000",
           "--trainer.callbacks+=step_timer.StepTimer", "--trainer.callbacks.init_args.path", str(times)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"fit failed:\n{proc.stderr[-3000:]}")
    return json.loads(times.read_text())["times"][args.skip:]


def merged(configs: list[str]) -> dict:
    """The keys this script reads, merged over the config files as the CLI merges them."""
    out: dict = {"data": {}, "contrast": {}}
    for c in configs:
        cfg = yaml.safe_load((ROOT / c).read_text()) or {}
        out["data"].update(cfg.get("data") or {})
        out["contrast"].update((cfg.get("model") or {}).get("contrast") or {})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = str(ROOT.parent / "shared" / "data" / "camvid")
    p.add_argument("--data-root", default=os.environ.get("SCALECONTRAST_CAMVID", default_root))
    p.add_argument("--base", default="configs/camvid/fpn_lite0.yaml", help="the base recipe (CE)")
    p.add_argument("--overlays", nargs="+",
                   default=["configs/contrast/mscs.yaml", "configs/contrast/cpu_sampling.yaml"],
                   help="the contrast overlays of the MS+CS setting")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--skip", type=int, default=4, help="first steps left out (warm-up)")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_step import batches, time_training

    settings = {"ce": [args.base], "mscs": [args.base, *args.overlays]}
    cfg = merged(settings["mscs"])
    crop, batch = int(cfg["data"]["crop_size"][0]), int(cfg["data"]["batch_size"])
    caps = {k: cfg["contrast"][k] for k in ("max_views", "max_total") if k in cfg["contrast"]}
    bare_settings = {"ce": (None, {}, True), "mscs": (caps, {}, True)}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, stack in settings.items():
                t = run_cli(stack, args, Path(tmp) / f"cli_{r}_{name}")
                times.setdefault(("cli", name), []).append(statistics.median(t))
                print(f"round {r}: CLI {name}: median {times[('cli', name)][-1]:.3f} s", flush=True)
            data = batches(args.data_root, crop, batch, args.steps)
            for name, sec in time_training("fpn", data, bare_settings, args.skip).items():
                times.setdefault(("bare", name), []).append(sec)
                print(f"round {r}: bare {name}: median {sec:.3f} s", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; {args.rounds} rounds x {args.steps - args.skip} steps; "
          f"crop {crop}, batch {batch}, caps {caps}\n")
    print("| step | CE (s) | MS+CS (s) | MS+CS / CE |\n|---|---|---|---|")
    ratios = {}
    for kind in ("cli", "bare"):
        ce, ms = (statistics.median(times[(kind, n)]) for n in ("ce", "mscs"))
        ratios[kind] = ms / ce
        print(f"| {'through the CLI' if kind == 'cli' else 'bare'} | {ce:.3f} | {ms:.3f} | {ms / ce:.3f}x |")
    print(f"\nCLI ratio - bare ratio: {ratios['cli'] - ratios['bare']:+.3f}")


if __name__ == "__main__":
    main()
