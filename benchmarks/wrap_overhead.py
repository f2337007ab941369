"""Eval-time cost of ``wrap_model`` on client models: wrapped / plain forward time.

The wrapped model registers its forward hooks for the duration of each forward and returns the tapped
maps as well as the logits; this measures what that costs against calling the client model directly
(its own output, logits resized to the input size as the wrapper does). Settings interleaved, median of
``--repeats`` forwards on random ``--size`` images, batch 1, eval mode, no grad. Prints a Markdown table.

    python benchmarks/wrap_overhead.py [--size 256] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def clients():
    from test_any_model import CLIENTS

    return CLIENTS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    from scalecontrast.models import model_logits, wrap_model

    x = torch.rand(1, 3, args.size, args.size)
    rows = []
    for name, (build, taps) in clients().items():
        plain = build().eval()
        wrapped = wrap_model(plain, taps).eval()

        def run_plain(plain=plain):
            logits = model_logits(plain(x))[0]
            return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

        def run_wrapped(wrapped=wrapped):
            return wrapped(x).logits

        times = {"plain": [], "wrapped": []}
        with torch.no_grad():
            run_plain(), run_wrapped()  # warm-up
            for _ in range(args.repeats):
                for key, fn in (("plain", run_plain), ("wrapped", run_wrapped)):
                    t = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - t)
        tp, tw = statistics.median(times["plain"]), statistics.median(times["wrapped"])
        rows.append(f"| {name} | {len(taps)} | {1000 * tp:.1f} | {1000 * tw:.1f} | {tw / tp:.3f} |")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1 x {args.size}^2, eval, "
          f"median of {args.repeats}\n")
    print("| client model | taps | plain (ms) | wrapped (ms) | wrapped / plain |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
