"""Throughput of the CamVid training input pipeline (decode + augment + collate).

    python benchmarks/data.py [--root DIR] [--workers 0 1 2] [--batches 15] [--batch-size 8]

Prints images/s for each number of DataLoader workers with the paper's training augmentation at
360x480 (random rescale 0.5-2 with aspect jitter, pad, balanced crop, flip, colour jitter, normalise).
Workers run single-threaded (PyTorch's default in workers); ``--threads`` sets the main process's
intra-op threads, which is what the 0-worker figure uses.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from scalecontrast.data import get_dataset, train_transforms

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


def measure(dataset, *, workers: int, batch_size: int, batches: int) -> float:
    """Images per second over ``batches`` batches, after one warm-up batch (worker start-up)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
    elapsed = time.perf_counter() - start
    assert batch["image"].shape[0] == batch_size
    return batches * batch_size / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batches", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, nargs=2, default=[360, 480], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=None, help="main-process torch threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = get_dataset("camvid", args.root, "train", transform=train_transforms(tuple(args.crop)))
    print(
        f"CamVid train ({len(ds)} images) at {args.root}; crop {args.crop[0]}x{args.crop[1]}, "
        f"batch {args.batch_size}, {args.batches} timed batches, main-process threads {torch.get_num_threads()}"
    )
    for w in args.workers:
        rate = measure(ds, workers=w, batch_size=args.batch_size, batches=args.batches)
        print(f"workers={w}: {rate:7.1f} images/s  ({1000 * args.batch_size / rate:6.0f} ms per batch)", flush=True)


if __name__ == "__main__":
    main()
