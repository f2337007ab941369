"""Time and peak memory of the contrastive loss (forward + backward) against the dense formulation.

Each measurement runs in its own process so that peak memory is not shared. Prints a Markdown table.

    python benchmarks/loss.py [--sizes 1000 4000 10000] [--dim 256] [--classes 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(kind: str, n: int, dim: int, classes: int, repeats: int) -> dict:
    import torch

    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from naive import dense_contrastive

    from scalecontrast.losses import contrastive_loss, sample_anchors

    g = torch.Generator().manual_seed(0)
    if kind == "sampler":
        emb = torch.randn(8, dim, 128, 256, generator=g)
        labels = torch.randint(0, 19, (8, 512, 1024), generator=g, dtype=torch.uint8)
        labels[:, :64] = 255
        start_rss = _rss_mib()
        times = []
        for _ in range(repeats + 1):
            t = time.perf_counter()
            feats, _ = sample_anchors(emb, labels, generator=g)
            times.append(time.perf_counter() - t)
        return {"time": sorted(times[1:])[len(times[1:]) // 2], "peak": _peak_mib() - start_rss,
                "shape": list(feats.shape)}

    feats = torch.randn(n, dim, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    if kind == "floor":
        a = torch.nn.functional.normalize(feats, dim=1)
        b = a.clone()
        start_rss = _rss_mib()

        def step():
            s = a @ b.T  # similarities
            _ = s @ b  # gradient w.r.t. the anchors
            _ = s.T @ a  # gradient w.r.t. the contrast set
    else:
        fn = contrastive_loss if kind == "chunked" else dense_contrastive
        x = feats.clone().requires_grad_(True)
        start_rss = _rss_mib()

        def step():
            x.grad = None
            fn(x, labels).backward()

    step()  # first run: peak memory
    peak = _peak_mib() - start_rss
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"time": sorted(times)[len(times) // 2], "peak": peak}


def _run(kind: str, n: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, str(n), "--dim", str(args.dim), "--classes", str(args.classes),
           "--repeats", str(args.repeats)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, n = args.child
        print(json.dumps(_measure(kind, int(n), args.dim, args.classes, args.repeats)))
        return

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"d={args.dim}, {args.classes} classes, forward+backward, median of {args.repeats}\n")
    print("| N | floor: 3 NxNxd matmuls (s) | scalecontrast (s) | dense (s) | speed-up vs dense | "
          "vs floor | scalecontrast peak (MiB) | dense peak (MiB) | memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        floor = _run("floor", n, args)
        ours = _run("chunked", n, args)
        dense = _run("dense", n, args)
        print(f"| {n} | {floor['time']:.3f} | {ours['time']:.3f} | {dense['time']:.3f} | "
              f"{dense['time'] / ours['time']:.2f}x | {ours['time'] / floor['time']:.2f}x | "
              f"{ours['peak']:.0f} | {dense['peak']:.0f} | {dense['peak'] / max(ours['peak'], 1):.1f}x |", flush=True)
    sampler = _run("sampler", 0, args)
    print(f"\nsample_anchors on 8 maps of {args.dim}x128x256 (labels 8x512x1024, 19 classes): "
          f"{sampler['time'] * 1000:.0f} ms, output {tuple(sampler['shape'])}")


if __name__ == "__main__":
    main()
