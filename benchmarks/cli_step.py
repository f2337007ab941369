"""The CamVid training step through the real CLI, this checkout against another commit, side by side.

Runs ``scalecontrast fit`` on a CamVid recipe (default ``configs/camvid/fpn_lite0.yaml``, CE, and with the
MS+CS overlays ``configs/contrast/mscs.yaml`` + ``cpu_sampling.yaml``: 288x288 crops, batch 8, 2 loader
workers, as a user runs it) for ``--steps`` steps, once
with this checkout's code and once with the reference commit's (checked out into a temporary git
worktree, imported through PYTHONPATH), alternating for ``--rounds`` rounds so drifts in the machine's
speed hit both alike. Step time = wall time between the ends of consecutive steps (data loading
included), median over the steps after ``--skip``. Prints a Markdown table.

    python benchmarks/cli_step.py --data-root ../shared/data/camvid --ref eeaa50f [--steps 30] [--rounds 2]
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

ROOT = Path(__file__).resolve().parents[1]


def run(tree: Path, configs: list[str], args, out: Path) -> list[float]:
    times = out / "times.json"
    cmd = [sys.executable, "-m", "scalecontrast.cli", "fit",
           *[a for c in configs for a in ("--config", str(tree / c))],
           "--data.root", str(args.data_root), "--trainer.max_steps", str(args.steps),
           "--trainer.default_root_dir", str(out), "--trainer.limit_val_batches", "0",
           "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
           "--checkpoint.every_n_train_steps", "100000",
           "--trainer.callbacks+=step_timer.StepTimer", "--trainer.callbacks.init_args.path", str(times)]
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{ROOT / 'benchmarks'}"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"fit failed in {tree}:\n{proc.stderr[-3000:]}")
    return json.loads(times.read_text())["times"][args.skip:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = str(ROOT.parent / "shared" / "data" / "camvid")
    p.add_argument("--data-root", default=os.environ.get("SCALECONTRAST_CAMVID", default_root))
    p.add_argument("--ref", default="eeaa50f", help="the commit to compare with")
    p.add_argument("--base", default="configs/camvid/fpn_lite0.yaml", help="the base recipe (CE)")
    p.add_argument("--overlays", nargs="+",
                   default=["configs/contrast/mscs.yaml", "configs/contrast/cpu_sampling.yaml"],
                   help="the contrast overlays of the second setting")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--skip", type=int, default=4, help="first steps left out (worker start-up, warm-up)")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    settings = {"ce": [args.base], "mscs": [args.base, *args.overlays]}
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(ref), args.ref],
                       check=True, capture_output=True)
        try:
            times: dict[tuple[str, str], list[float]] = {}
            for r in range(args.rounds):
                for config, stack in settings.items():
                    for name, tree in (("ref", ref), ("new", ROOT)):
                        t = run(tree, stack, args, Path(tmp) / f"{name}_{r}_{config}")
                        times.setdefault((name, config), []).extend(t)
                        print(f"round {r}: {name} {config}: median {statistics.median(t):.3f} s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref)], capture_output=True)
    load = os.getloadavg()[0]
    print(f"\nload average at the end {load:.2f}; {args.rounds} rounds x {args.steps - args.skip} steps per setting\n")
    print(f"| recipe | {args.ref} (s/step) | this checkout (s/step) | speed-up |\n|---|---|---|---|")
    for config in settings:
        old, new = statistics.median(times[("ref", config)]), statistics.median(times[("new", config)])
        print(f"| {config} | {old:.3f} | {new:.3f} | {old / new:.2f}x |")
    for name in ("ref", "new"):
        ratio = statistics.median(times[(name, "mscs")]) / statistics.median(times[(name, "ce")])
        print(f"\nmscs / ce ({name}): {ratio:.2f}x", end="")
    print()


if __name__ == "__main__":
    main()
