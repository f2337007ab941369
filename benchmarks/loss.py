"""Time, peak memory and host syncs of the contrastive loss (forward + backward).

Compares ``contrastive_loss`` with the "three-matmul floor" (the three ``N x N x d`` products
that any exact loss with gradients needs), optionally with an older version of the loss
(``--baseline REV``: ``src/scalecontrast/losses/contrastive.py`` at that git revision, run in the
same rounds, interleaved) and with the dense ``N x N`` formulation. Each measurement runs in its own
process so that peak memory is not shared; the reported time is the fastest of ``--rounds``
interleaved rounds, each the median of ``--repeats`` steps. Prints Markdown tables.

Host syncs are counted on one extra call: on CUDA with torch's sync debug mode, on the CPU by
counting the calls that read a tensor back or need its values for an output shape (``item``,
``tolist``, ``int()``/``float()``/``bool()``, ``nonzero``, ``unique*``, ``masked_select``,
``repeat_interleave`` without ``output_size``, boolean-mask indexing).

    python benchmarks/loss.py [--sizes 1000 4000 10000] [--dim 256] [--classes 20] [--repeats 5]
                              [--rounds 3] [--baseline REV] [--no-dense] [--memory 2000] [--device cpu]
                              [--threads 0] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def count_host_reads():
    """Count the CPU-side calls that would synchronise with a device (a dict, ``["n"]``)."""
    import torch

    counter = {"n": 0}
    patched = []

    def wrap(owner, name, when=None):
        original = getattr(owner, name)
        own = name in vars(owner)

        @functools.wraps(original)
        def counted(*args, **kwargs):
            if when is None or when(*args, **kwargs):
                counter["n"] += 1
            return original(*args, **kwargs)

        setattr(owner, name, counted)
        patched.append((owner, name, original if own else None))

    def bool_index(self, index, *rest):
        items = index if isinstance(index, tuple) else (index,)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)

    def no_output_size(*args, **kwargs):  # tensor repeats without output_size: the size is read back
        repeats = kwargs.get("repeats", args[1] if len(args) > 1 else None)
        return isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None

    for name in ("item", "tolist", "__int__", "__float__", "__bool__", "nonzero", "unique", "unique_consecutive",
                 "masked_select"):
        wrap(torch.Tensor, name)
    wrap(torch.Tensor, "repeat_interleave", no_output_size)
    wrap(torch.Tensor, "__getitem__", bool_index)
    for name in ("nonzero", "unique", "unique_consecutive", "masked_select"):
        wrap(torch, name)
    wrap(torch, "repeat_interleave", no_output_size)
    try:
        yield counter
    finally:
        for owner, name, original in reversed(patched):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


def _cuda_syncs(fn) -> int:
    import torch

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def _load_baseline(rev: str):
    """``contrastive.py`` at git revision ``rev``, imported as a module of its own."""
    source = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:src/scalecontrast/losses/contrastive.py"],
                            check=True, capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "baseline_contrastive.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("baseline_contrastive", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _measure(kind: str, n: int, args) -> dict:
    import torch

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from naive import dense_contrastive

    from scalecontrast.losses import contrastive_loss, sample_anchors
    from scalecontrast.losses.contrastive import contrast

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def peak_start():
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated() / 2**20
        return _rss_mib()

    def peak_now(start):
        return (torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_mib()) - start

    g = torch.Generator().manual_seed(0)
    if kind == "multiscale":  # host reads of one 4-scale MultiScaleContrastiveLoss forward + backward
        from scalecontrast.losses import MultiScaleContrastiveLoss

        labels = torch.randint(0, 19, (4, 128, 128), generator=g).to(device)
        labels[:, :10] = 255
        embs = [torch.randn(4, 32, s, s, generator=g).to(device).requires_grad_(True) for s in (32, 16, 8, 4)]
        loss_fn = MultiScaleContrastiveLoss()

        def step():
            loss_fn(embs, labels).backward()
            sync()
        step()
        if cuda:
            return {"syncs": _cuda_syncs(step)}
        with count_host_reads() as counter:
            step()
        return {"syncs": counter["n"]}
    if kind == "sampler":
        emb = torch.randn(8, args.dim, 128, 256, generator=g).to(device)
        labels = torch.randint(0, 19, (8, 512, 1024), generator=g, dtype=torch.uint8).to(device)
        labels[:, :64] = 255
        start = peak_start()
        times = []
        for _ in range(args.repeats + 1):
            t = clock()
            feats, _ = sample_anchors(emb, labels, generator=g)
            sync()
            times.append(clock() - t)
        return {"time": sorted(times[1:])[len(times[1:]) // 2], "peak": peak_now(start), "shape": list(feats.shape)}

    feats = torch.randn(n, args.dim, generator=g).to(device)
    labels = torch.randint(0, args.classes, (n,), generator=g).to(device)
    loss_call = None
    if kind == "floor":
        a = torch.nn.functional.normalize(feats, dim=1)
        b = a.clone()
        start = peak_start()

        def step():
            s = a @ b.T  # similarities
            _ = s @ b  # gradient w.r.t. the anchors
            _ = s.T @ a  # gradient w.r.t. the contrast set
            sync()
    else:
        x = feats.clone().requires_grad_(True)
        if kind == "memory":  # within-scale term with a pixel memory of args.memory entries in the contrast set
            queue = torch.nn.functional.normalize(torch.randn(args.memory, args.dim, generator=g), dim=1).to(device)
            queue_labels = torch.randint(0, args.classes, (args.memory,), generator=g).to(device)
            index = torch.arange(n, device=device)

            def loss_call():
                return contrast(x, labels, torch.cat([x, queue]), torch.cat([labels, queue_labels]),
                                temperature=0.1, self_index=index)
        else:
            fn = {"chunked": contrastive_loss, "dense": dense_contrastive}.get(kind)
            if kind == "baseline":
                fn = _load_baseline(args.baseline).contrastive_loss

            def loss_call():
                return fn(x, labels)
        start = peak_start()

        def step():
            x.grad = None
            loss_call().backward()
            sync()

    step()  # first run: peak memory
    peak = peak_now(start)
    times = []
    for _ in range(args.repeats):
        t = clock()
        step()
        times.append(clock() - t)
    out = {"time": sorted(times)[len(times) // 2], "peak": peak}
    if loss_call is not None:
        if cuda:
            out["syncs"] = _cuda_syncs(step)
        else:
            with count_host_reads() as counter:
                step()
            out["syncs"] = counter["n"]
    return out


def _run(kind: str, n: int, args, src: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, str(n), "--dim", str(args.dim), "--classes", str(args.classes),
           "--repeats", str(args.repeats), "--device", args.device, "--memory", str(args.memory),
           "--threads", str(args.threads), "--clock", args.clock]
    if args.baseline:
        cmd += ["--baseline", args.baseline]
    env = None
    if src is not None:  # import scalecontrast from this source tree
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _baseline_tree(rev: str) -> str:
    """``src/`` of git revision ``rev``, extracted to a temporary folder."""
    folder = tempfile.mkdtemp()
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return os.path.join(folder, "src")


def _best(results: list[dict]) -> dict:
    best = min(results, key=lambda r: r["time"])
    return {**best, "peak": max(r["peak"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the fastest counts")
    parser.add_argument("--baseline", default=None, help="git revision of contrastive.py to compare with")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense N x N formulation")
    parser.add_argument("--memory", type=int, default=2000, help="pixel-memory entries of the memory row (0: none)")
    parser.add_argument("--no-sampler", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or this process's CPU time (steadier on a shared machine; use --threads 1)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, n = args.child
        print(json.dumps(_measure(kind, int(n), args)))
        return

    import torch

    kinds = ["floor", "chunked"] + (["baseline"] if args.baseline else []) + ([] if args.no_dense else ["dense"])
    kinds += ["memory"] if args.memory > 0 else []
    load = os.getloadavg()[0]
    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs, device {args.device}, "
          f"{args.clock} clock, load average {load:.2f} at start; d={args.dim}, {args.classes} classes, "
          f"forward+backward, fastest of {args.rounds} interleaved rounds of the median of {args.repeats}\n")
    head = "| N | floor: 3 NxNxd matmuls (s) | scalecontrast (s) | vs floor | syncs | peak (MiB) |"
    rule = "|---|---|---|---|---|---|"
    if args.baseline:
        head += f" {args.baseline} (s) | vs floor | syncs | peak (MiB) |"
        rule += "---|---|---|---|"
    if not args.no_dense:
        head += " dense (s) | dense peak (MiB) |"
        rule += "---|---|"
    if args.memory:
        head += f" with {args.memory}-entry memory (s) | vs floor of N x (N+{args.memory}) | peak (MiB) |"
        rule += "---|---|---|"
    print(head)
    print(rule)
    for n in args.sizes:
        runs: dict[str, list[dict]] = {k: [] for k in kinds}
        for _ in range(args.rounds):
            for kind in kinds:
                runs[kind].append(_run(kind, n, args))
        r = {k: _best(v) for k, v in runs.items()}
        floor = r["floor"]["time"]
        row = (f"| {n} | {floor:.4f} | {r['chunked']['time']:.4f} | {r['chunked']['time'] / floor:.2f}x | "
               f"{r['chunked']['syncs']} | {r['chunked']['peak']:.0f} |")
        if args.baseline:
            b = r["baseline"]
            row += f" {b['time']:.4f} | {b['time'] / floor:.2f}x | {b['syncs']} | {b['peak']:.0f} |"
        if not args.no_dense:
            row += f" {r['dense']['time']:.4f} | {r['dense']['peak']:.0f} |"
        if args.memory:
            m = r["memory"]
            row += f" {m['time']:.4f} | {m['time'] / (floor * (n + args.memory) / n):.2f}x | {m['peak']:.0f} |"
        print(row, flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    syncs = _run("multiscale", 0, args)["syncs"]
    line = f"\nhost syncs of one 4-scale MultiScaleContrastiveLoss forward+backward: {syncs}"
    if args.baseline:
        line += f" ({args.baseline}: {_run('multiscale', 0, args, _baseline_tree(args.baseline))['syncs']})"
    print(line)
    if not args.no_sampler:
        sampler = _run("sampler", 0, args)
        print(f"\nsample_anchors on 8 maps of {args.dim}x128x256 (labels 8x512x1024, 19 classes): "
              f"{sampler['time'] * 1000:.0f} ms, output {tuple(sampler['shape'])}")


if __name__ == "__main__":
    main()
