"""CamVid at convergence: does MS+CS help a model trained to a competitive level?

Three phases, each resumable (a finished run is a line of a results file and is skipped when the
script starts again; an interrupted run resumes exactly from its ``last.ckpt``):

1. ``--calibrate``: the calibration curve of the converged CPU recipe (val only, below).
2. ``--tune``: the contrastive weight of ``mscs_tuned``, chosen on ``val`` from {0.1, 0.3, 1.0}
   (3 seeds each) before any test score of it exists.
3. ``--study``: 5 seeds of ``ce``, ``mscs`` (the paper's defaults), ``mscs_tuned`` and the variant
   that won the peers' options study on val (``camvid_variants.py``), trained on ``train``, the
   final model scored once on ``test``; and the smp Unet pair (``ce`` vs ``mscs_tuned``, 3 seeds).
   Rows of ``--results`` (``docs/results/camvid_converged.jsonl``): ``setting``, ``model``,
   ``seed``, ``split``, ``miou``, ``per_class``, ``steps``, ``fit_minutes``.

``--tune`` and ``--study`` share one queue of runs: start the same command twice (one thread each
gets the most done on two cores) and the two workers split it, each run claimed by a lock file; the
study's runs that need the tuned weight wait until the last tuning run has its val score. A run with
a checkpoint in ``--out`` is taken first (a model trained for its val score needs only its test score,
an interrupted run only its remaining steps), so that what a machine has trained is used before its
``--out`` is gone (a session's scratch folder, a cluster job's local disk).

    OMP_NUM_THREADS=1 python benchmarks/camvid_converged.py --tune --study > w1.log 2>&1 &
    OMP_NUM_THREADS=1 python benchmarks/camvid_converged.py --tune --study > w2.log 2>&1 &
    python benchmarks/camvid_converged.py --report --docs docs/results.md --readme README.md \
        --gains-figure docs/results/camvid_converged_gains.png

Calibration:

``--calibrate`` trains FPN + EfficientNet-Lite0 (offline ImageNet weights) on ``train`` for a long
poly schedule and scores ``val`` every ``--val-every`` steps, for CE (and, with
``--settings ce mscs``, CE + 0.1 MS+CS), so the curve shows where training flattens; the
converged recipe's schedule is picked there, on val only. Every val score is a line of
``--curve`` (``setting``, ``model``, ``seed``, ``split``, ``step``, ``miou``, ``per_class``);
the run is resumable (an interrupted one resumes exactly from its ``last.ckpt``; the points
already recorded are kept). ``--figure`` draws val mIoU against steps.

    OMP_NUM_THREADS=1 python benchmarks/camvid_converged.py --calibrate --settings ce &
    python benchmarks/camvid_converged.py --report --figure docs/figures/camvid_calibration.png

``--calibrate --model smp_unet_lite0`` does the same for the smp Unet's CE recipe, with the optimizer
given by ``--optimizer``/``--lr``/``--weight-decay`` (recorded in each row, so that the curves of two
optimizers stay apart), e.g. the Unet's 1250-step schedule with AdamW:

    OMP_NUM_THREADS=1 python benchmarks/camvid_converged.py --calibrate --model smp_unet_lite0 --steps 1250 \
        --optimizer adamw --lr 0.001 --weight-decay 0.01 &
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from camvid_ablation import append_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fpn_lite0"
MSCS = ("configs/contrast/mscs.yaml",)
CONFIGS = {"ce": ("configs/camvid/fpn_lite0.yaml",),
           "mscs": ("configs/camvid/fpn_lite0.yaml", *MSCS, "configs/contrast/cpu_sampling.yaml")}
# the calibration of the other models: their CE recipe, its schedule overridden as for the FPN's
CALIBRATION_CONFIGS = {MODEL: CONFIGS, "smp_unet_lite0": {"ce": ("studies/camvid/smp_unet_lite0.yaml",)}}
LABELS = {"ce": "CE", "mscs": "CE + 0.1 MS+CS"}
CALIBRATION_CKPT_EVERY = 99


def calibration_args(args, setting: str, out: Path) -> list[str]:
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(out), "name": "csv"}}
    model = getattr(args, "model", MODEL)
    if setting not in CALIBRATION_CONFIGS[model]:
        raise SystemExit(f"--calibrate --model {model}: no {setting!r} recipe (it has "
                         f"{sorted(CALIBRATION_CONFIGS[model])})")
    return [
        *[a for c in CALIBRATION_CONFIGS[model][setting] for a in ("--config", str(ROOT / c))],
        "--data.root", str(args.data_root),
        "--seed_everything", str(args.seed),
        "--trainer.max_steps", str(args.steps),
        "--trainer.default_root_dir", str(out),
        "--trainer.val_check_interval", str(args.val_every),
        "--trainer.check_val_every_n_epoch", "null",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger", json.dumps(logger),
        # not a divisor of the val interval: a run killed during a val check resumes from a step before
        # it and scores that val again (resuming from the val's own step would skip it)
        "--checkpoint.every_n_train_steps", str(CALIBRATION_CKPT_EVERY),
        "--data.crop_size", json.dumps(args.crop),
        "--data.batch_size", str(args.batch),
        "--data.num_workers", str(args.workers),
    ] + (["--model.contrast.max_views", "2500", "--model.contrast.max_total", "10000"]  # the paper's caps
         if setting == "mscs" else []) + optimizer_args(args)


OPTIMIZER_KEYS = {"optimizer": "class_path", "lr": "init_args.lr", "weight_decay": "init_args.weight_decay"}
OPTIMIZER_CLASSES = {"sgd": "torch.optim.SGD", "adamw": "torch.optim.AdamW"}


def optimizer_args(args) -> list[str]:
    """The ``--optimizer``/``--lr``/``--weight-decay`` overrides of a calibration run (none: the config's)."""
    out = []
    for key, flag in OPTIMIZER_KEYS.items():
        if (v := getattr(args, key, None)) is not None:
            out += [f"--model.optimizer.{flag}", OPTIMIZER_CLASSES.get(str(v), str(v))]
    return out


def read_curve(out: Path, final: bool = True) -> dict[int, float]:
    """``{step: val mIoU (%)}`` from every CSVLogger version of a run (a resumed run writes a new one).
    ``final=False`` (the run is still writing): the last line of each file is left out, as it may
    be half written."""
    points: dict[int, float] = {}
    for f in sorted(out.glob("csv/version_*/metrics.csv")):
        with open(f) as fh:
            lines = fh.read().splitlines()
        if not final:
            lines = lines[:-1]
        for row in csv.DictReader(lines):
            v = row.get("val/mIoU")
            if v not in (None, ""):
                # Lightning logs validation at global_step - 1: store the optimizer steps done
                points[int(row["step"]) + 1] = round(float(v) * 100, 2)
    return points


def load_rows(path: Path) -> list[dict]:
    """The JSON lines of ``path``; a half-written last line (a kill during an append) is ignored."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise SystemExit(f"{path}: line {i + 1} is not JSON: {line[:80]!r}") from None
            print(f"{path}: ignoring a half-written last line", file=sys.stderr)
    return rows


# what a calibration row without the key (one recorded before it existed) was trained with
SCHEDULE_DEFAULTS = {"model": MODEL, **dict.fromkeys(OPTIMIZER_KEYS)}


def schedule(args) -> dict:
    """What makes two calibration runs the same run (besides setting and seed); ``optimizer``, ``lr``
    and ``weight_decay`` are ``None`` where the recipe's own are used."""
    return {"schedule_steps": args.steps, "crop": list(args.crop), "batch": args.batch,
            **{k: getattr(args, k, d) for k, d in SCHEDULE_DEFAULTS.items()}}


def same_schedule(row: dict, sched: dict) -> bool:
    return all(row.get(k, SCHEDULE_DEFAULTS.get(k)) == v for k, v in sched.items())


def curve_rows(path: Path, args) -> list[dict]:
    sched = schedule(args)
    return [r for r in load_rows(path) if r.get("kind") == "calibration" and same_schedule(r, sched)]


def record_curve(path: Path, setting: str, seed: int, points: dict[int, float], args) -> int:
    """Append the points not yet in ``path``; returns how many were new."""
    have = {(r["setting"], r["seed"], r["step"]) for r in curve_rows(path, args)}
    new = [(s, m) for s, m in sorted(points.items()) if (setting, seed, s) not in have]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for step, miou in new:
            f.write(json.dumps({"kind": "calibration", "setting": setting, "seed": seed,
                                "split": "val", "step": step, "miou": miou, **schedule(args)}) + "\n")
    return len(new)


def calibrate(args) -> None:
    path = Path(args.curve)
    for setting in args.settings:
        name = f"{setting}_{args.steps}steps_{args.crop[0]}x{args.crop[1]}_b{args.batch}"
        if (model := getattr(args, "model", MODEL)) != MODEL or optimizer_args(args):
            name = f"{model}_{opt_slug(schedule(args))}_{name}"
        out = Path(args.out) / "calibration" / name / f"seed{args.seed}"
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
            try:
                while proc.poll() is None:  # record the curve as it grows
                    time.sleep(60)
                    record_curve(path, setting, args.seed, read_curve(out, final=False), args)
            except BaseException:  # killed: stop the fit too (it resumes exactly from its last.ckpt)
                proc.kill()
                proc.wait()
                raise
        record_curve(path, setting, args.seed, read_curve(out), args)
        if proc.returncode != 0:
            raise SystemExit(f"{setting}: fit failed (exit {proc.returncode}), see {out / 'fit.log'}")
        missing = sorted(set(range(args.val_every, args.steps + 1, args.val_every)) - set(read_curve(out)))
        if missing:
            print(f"{setting}: no val score at step(s) {missing} (see {out / 'fit.log'})", file=sys.stderr)
        done.write_text(f"{(time.time() - t0) / 60:.1f} min in the last start\n")
        print(f"[{time.strftime('%H:%M:%S')}] {setting}: done", flush=True)


# ---- the study ------------------------------------------------------------------------------
RECIPES = {  # model -> its base recipe (CE); MS+CS adds configs/contrast/mscs.yaml
    "fpn_lite0": "studies/camvid/fpn_lite0_converged.yaml",
    "smp_unet_lite0": "studies/camvid/smp_unet_lite0.yaml",
    # the first smp Unet pair, trained with the FPN's optimizer (far from trained): reported, not planned
    "smp_unet_lite0_sgd": "studies/camvid/smp_unet_lite0_sgd.yaml",
}
MODEL_NOTES = {"smp_unet_lite0_sgd": "smp_unet_lite0_sgd (the FPN's SGD 0.01: under-trained)"}  # the README's table
TUNE_WEIGHTS = (0.1, 0.3, 1.0)
TUNE_SEEDS = (0, 1, 2)
STUDY_SEEDS = {"fpn_lite0": (0, 1, 2, 3, 4), "smp_unet_lite0": (0, 1, 2)}
STUDY_LABELS = {"ce": "CE", "mscs": "CE + 0.1 MS+CS (the paper's defaults)",
                "mscs_tuned": "CE + w MS+CS (w chosen on the FPN's val runs)",
                "variant": "the peers' options study's winner"}


def run_name(kind: str, weight: float | None = None, variant: str | None = None) -> str:
    """The folder (and identity) of one trained configuration: ``ce``, ``mscs_w0.3``, ``hard_0.5_w0.1``."""
    if kind == "ce":
        return "ce"
    return f"{variant + '_' if variant else 'mscs_'}w{weight:g}"


def fit_and_score(args, model: str, run: str, seed: int, splits: Sequence[str], extra: Sequence[str],
                  results: dict[str, dict], path: Path, setting: str, keep_fds: Sequence[int] = ()) -> None:
    """Train ``run`` of ``model`` (or resume it), then score its final checkpoint on each of ``splits``
    not yet recorded, one row each. ``keep_fds`` are passed to the ``fit`` process (the job's claim: a
    ``fit`` that outlives a killed worker keeps the run claimed)."""
    todo = [sp for sp in splits if f"{model}/{run}/seed{seed}/{sp}" not in results]
    if not todo:
        return
    cfg = ROOT / RECIPES[model]
    out = Path(args.out) / model / run / f"seed{seed}"
    max_steps = recipe_steps(cfg)
    overlays = [a for c in (() if run == "ce" else MSCS) for a in ("--config", str(ROOT / c))]
    base = ["--config", str(cfg), *overlays, "--data.root", str(args.data_root), "--seed_everything", str(seed),
            "--trainer.default_root_dir", str(out), "--trainer.limit_val_batches", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
            "--checkpoint.every_n_train_steps", "50", "--data.num_workers", str(args.workers), *extra]
    ckpt = out / "checkpoints" / "last.ckpt"
    done = out / "fit_done"
    if done.exists() and ckpt.exists() and (step := checkpoint_step(ckpt)) < max_steps:
        print(f"{out}: the fit ended with its checkpoint at step {step} of {max_steps}: resuming it", flush=True)
        done.unlink()
    if not done.exists():
        out.mkdir(parents=True, exist_ok=True)
        if not ckpt.exists():  # nothing to resume: the time of earlier starts bought nothing
            for f in (out / "fit_starts.jsonl", out / "fit_seconds"):
                f.unlink(missing_ok=True)
        print(f"[{time.strftime('%H:%M:%S')}] {model}/{run}/seed{seed}: training", flush=True)
        open_start(out, ckpt)
        cmd = [sys.executable, "-m", "scalecontrast.cli", "fit", *base] + (["--ckpt_path", "last"] if ckpt.exists()
                                                                          else [])
        try:
            with open(out / "fit.log", "a") as log:
                subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                               pass_fds=tuple(keep_fds))
        finally:
            close_start(out, ckpt)
        done.touch()
    steps = checkpoint_step(ckpt)
    if steps != max_steps:
        raise SystemExit(f"{ckpt} is at step {steps}, the recipe ({cfg.name}) trains {max_steps}: remove {out} "
                         "to train this run again")
    fit_minutes = round(fit_seconds(out) / 60, 1)
    commits, fit_threads = fit_sources(out)
    for split in todo:
        # scored in a folder of its own, so the run's folder keeps the fit's config.yaml
        scores = score([*base, "--trainer.default_root_dir", str(out / f"score_{split}")], ckpt, split)
        row = {"key": f"{model}/{run}/seed{seed}/{split}", "setting": setting, "run": run, "model": model,
               "seed": seed, "split": split, "miou": scores["miou"], "per_class": scores["per_class"],
               "pixel_acc": scores["pixel_acc"], "steps": steps,
               "fit_minutes": fit_minutes,
               "threads": thread_count(),
               "fit_commits": commits, "fit_threads": fit_threads}
        append_result(path, results, row)
        print(f"[{time.strftime('%H:%M:%S')}] {row['key']}: mIoU {row['miou']:.2f}", flush=True)


# The training time of a run over its starts, in ``fit_starts.jsonl``: ``{"start": t}`` when a fit starts
# and ``{"end": t}`` when it ends, ``t`` the time its newest checkpoint was written. Steps trained after
# that checkpoint are trained again by the next start, so they count once; a start ended by a kill
# (even a SIGKILL of this script) is closed by the next start, from the checkpoint it left.
def _spans(out: Path) -> list[dict]:
    f = out / "fit_starts.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []


def close_start(out: Path, ckpt: Path) -> None:
    spans = _spans(out)
    if spans and "start" in spans[-1]:
        t0 = spans[-1]["start"]
        t1 = ckpt.stat().st_mtime if ckpt.exists() else t0
        with open(out / "fit_starts.jsonl", "a") as f:
            f.write(json.dumps({"end": max(t0, t1)}) + "\n")


def thread_count() -> int:
    """The threads a fit started from here trains with (``OMP_NUM_THREADS``, else every core)."""
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


def source_commit() -> str | None:
    """The checkout's commit (``-dirty`` when ``src/`` has uncommitted changes), or ``None`` outside git."""
    def git(*a: str) -> str | None:
        try:
            proc = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        except OSError:  # no git here
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    return head and head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no", "--", "src") else "")


def open_start(out: Path, ckpt: Path) -> None:
    """Record a fit's start, with the code and thread count it trains with (a second training of a seed
    need not give the same model under another of either)."""
    close_start(out, ckpt)  # one a kill left open
    threads = thread_count()
    with open(out / "fit_starts.jsonl", "a") as f:
        f.write(json.dumps({"start": time.time(), "commit": source_commit(), "threads": threads}) + "\n")


def fit_sources(out: Path) -> tuple[list[str], list[int]]:
    """The commits and thread counts the run's starts trained with, each once, in order (older starts
    did not record them)."""
    starts = [s for s in _spans(out) if "start" in s]
    commits = [s["commit"] for s in starts if s.get("commit")]
    threads = [s["threads"] for s in starts if "threads" in s]
    return list(dict.fromkeys(commits)), list(dict.fromkeys(threads))


def fit_seconds(out: Path) -> float:
    """Seconds of training over the run's starts (plus ``fit_seconds``, the older record: one line each)."""
    spans, total = _spans(out), 0.0
    for a, b in zip(spans, spans[1:]):
        if "start" in a and "end" in b:
            total += b["end"] - a["start"]
    old = out / "fit_seconds"
    return total + (sum(float(x) for x in old.read_text().split()) if old.exists() else 0.0)


def checkpoint_step(ckpt: Path) -> int:
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])


def recipe_steps(cfg: Path) -> int:
    import yaml

    return int(yaml.safe_load(cfg.read_text())["trainer"]["max_steps"])


def score(base: list[str], ckpt: Path, split: str) -> dict:
    from scalecontrast.cli import run_lightning

    cli = run_lightning(["test", *base, "--data.test_split", split, "--ckpt_path", str(ckpt)])
    scores = cli.model.last_scores
    iou = [round(float(v) * 100, 2) for v in scores["iou"].tolist()]
    return {"miou": round(float(scores["mIoU"]) * 100, 2), "per_class": dict(zip(cli.model.class_names, iou)),
            "pixel_acc": round(float(scores.get("pixel_acc", float("nan"))) * 100, 2)}


def load_keyed(path: Path) -> dict[str, dict]:
    return {r["key"]: r for r in load_rows(path) if "key" in r}


def weight_args(weight: float) -> list[str]:
    return ["--model.contrast.weight", str(weight)]


def tuned_weight(results: dict[str, dict]) -> float | None:
    """The weight of ``mscs_tuned``: the best mean val mIoU over the tuning seeds, once every tuning
    run has its val score (``None`` before)."""
    means = {}
    for w in TUNE_WEIGHTS:
        vals = [results.get(f"fpn_lite0/{run_name('mscs', w)}/seed{s}/val", {}).get("miou") for s in TUNE_SEEDS]
        if None in vals:
            return None
        means[w] = sum(vals) / len(vals)
    return max(means, key=means.get)


def variant_winner(path: Path) -> str | None:
    """The peers' options study's best variant on val (3 seeds each), if it beat MS+CS there."""
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    means = {}
    for v in {r["variant"] for r in rows}:
        vals = [r["miou"] for r in rows if r["variant"] == v and r["split"] == "val"]
        if len(vals) >= 3:
            means[v] = sum(vals) / len(vals)
    if "mscs" not in means or len(means) < 2:
        return None
    best = max(means, key=means.get)
    return None if best == "mscs" else best


@dataclass(frozen=True)
class Job:
    """One trained configuration of one seed, and the splits its final model is scored on."""

    model: str
    run: str
    seed: int
    splits: tuple[str, ...]
    extra: tuple[str, ...]
    setting: str

    def finished(self, results: dict[str, dict]) -> bool:
        return all(f"{self.model}/{self.run}/seed{self.seed}/{sp}" in results for sp in self.splits)


def plan(phases: Sequence[str], results: dict[str, dict], winner: str | None) -> tuple[list[Job], bool]:
    """The jobs of ``phases`` (``"tune"``, ``"study"``; the study includes the tuning runs) in the order
    they are taken, and whether some study jobs are left out because they need the tuned weight, which
    is not chosen yet (the runs of w = 0.1 too, so that no candidate is scored on test before the choice)."""
    from camvid_variants import VARIANTS

    jobs, waiting = [], False
    if "tune" in phases or "study" in phases:  # the study needs the tuning runs
        for seed in TUNE_SEEDS:
            jobs.append(Job("fpn_lite0", "ce", seed, ("val",), (), "ce"))
            jobs += [Job("fpn_lite0", run_name("mscs", w), seed, ("val",), tuple(weight_args(w)), f"tune_w{w:g}")
                     for w in TUNE_WEIGHTS]
    if "study" in phases:
        w = tuned_weight(results)
        waiting = w is None
        for seed in STUDY_SEEDS["fpn_lite0"]:
            jobs.append(Job("fpn_lite0", "ce", seed, ("test",), (), "ce"))
            if w is not None:  # no test score of a candidate weight before the choice
                jobs.append(Job("fpn_lite0", run_name("mscs", 0.1), seed, ("test",), tuple(weight_args(0.1)),
                                "mscs"))
                jobs.append(Job("fpn_lite0", run_name("mscs", w), seed, ("test",), tuple(weight_args(w)),
                                "mscs_tuned"))
            if winner:
                jobs.append(Job("fpn_lite0", run_name("mscs", 0.1, winner), seed, ("test",),
                                tuple(weight_args(0.1) + VARIANTS[winner][0]), "variant"))
        for seed in STUDY_SEEDS["smp_unet_lite0"]:
            jobs.append(Job("smp_unet_lite0", "ce", seed, ("test",), (), "ce"))
            if w is not None:
                jobs.append(Job("smp_unet_lite0", run_name("mscs", w), seed, ("test",), tuple(weight_args(w)),
                                "mscs_tuned"))
    return jobs, waiting


def run_dir(args, job: Job) -> Path:
    """The folder a job trains in (shared by the jobs of one trained configuration and seed)."""
    return Path(args.out) / job.model / job.run / f"seed{job.seed}"


def has_checkpoint(args, job: Job) -> bool:
    """Whether the job's run was trained here, fully or in part (its ``last.ckpt`` is in ``--out``)."""
    return (run_dir(args, job) / "checkpoints" / "last.ckpt").exists()


def claim(args, job: Job):
    """The job's claim (a ``RunFolderLock``), or ``None`` when another worker holds it. Several workers
    (``--tune --study`` started more than once) share the queue this way."""
    from scalecontrast.engine.callbacks import RunFolderLock, RunFolderLockedError

    lock = RunFolderLock(run_dir(args, job) / "claim")
    try:
        lock.acquire()
    except RunFolderLockedError:
        return None
    return lock


def work(args, phases: Sequence[str], poll: float = 60.0) -> None:
    """Take the unfinished, unclaimed jobs of ``phases`` one at a time until none is left; wait while the
    rest run in other workers or need the tuned weight. A job whose ``fit`` fails is reported and left
    (for this worker) so the others go on; the worker then exits with an error naming it."""
    path = Path(args.results)
    winner = variant_winner(Path(args.variants)) if "study" in phases else None
    if "study" in phases:
        print(f"variant: {winner or 'none (MS+CS won its val study)'}", flush=True)
    said, failed = None, {}
    while True:
        results = load_keyed(path)
        jobs, waiting = plan(phases, results, winner)
        todo = [j for j in jobs if not j.finished(results) and j not in failed]
        # a run with a checkpoint first (a model trained for another split needs only scoring, an
        # interrupted one only its remaining steps): what a machine trained is used before it is gone
        todo.sort(key=lambda j: not has_checkpoint(args, j))
        if not todo and (not waiting or failed):
            break
        for job in todo:
            lock = claim(args, job)
            if lock is None:
                continue
            try:
                results = load_keyed(path)  # another worker may have finished it since
                if not job.finished(results):
                    fit_and_score(args, job.model, job.run, job.seed, job.splits, job.extra, results, path,
                                  job.setting, keep_fds=(lock.fileno(),))
            except subprocess.CalledProcessError as err:
                log = run_dir(args, job) / "fit.log"
                failed[job] = f"{job.model}/{job.run}/seed{job.seed}: fit failed (exit {err.returncode}), see {log}"
                print(f"[{time.strftime('%H:%M:%S')}] {failed[job]}", file=sys.stderr, flush=True)
            finally:
                lock.release()
            break
        else:
            msg = (f"{len(todo)} job(s) running in another worker"
                   + (", and the tuned weight waits for the tuning runs" if waiting else ""))
            if msg != said:
                print(f"[{time.strftime('%H:%M:%S')}] waiting: {msg}", flush=True)
                said = msg
            time.sleep(poll)
    w = tuned_weight(load_keyed(path))
    if failed:
        raise SystemExit("\n".join(["these runs failed (fix them, then start the command again):", *failed.values()]))
    print(f"done; weight chosen on val: {w if w is None else f'{w:g}'}", flush=True)


def score_finished(args, model_run: str, split: str) -> None:
    """Score the final model of every finished seed of ``model/run`` (e.g. ``smp_unet_lite0_sgd/ce``) in
    ``--out`` on ``split`` too, one row each (a row already there is kept), with the setting of its
    other rows."""
    model, _, run = model_run.partition("/")
    if model not in RECIPES or not run:
        raise SystemExit(f"--score {model_run}: give MODEL/RUN with MODEL one of {sorted(RECIPES)}")
    path = Path(args.results)
    results = load_keyed(path)
    settings = {r["setting"] for r in results.values() if r["model"] == model and r["run"] == run}
    seeds = sorted(int(d.name.removeprefix("seed")) for d in (Path(args.out) / model / run).glob("seed*")
                   if (d / "fit_done").exists())
    if not seeds or len(settings) != 1:
        raise SystemExit(f"--score {model_run}: no finished run with rows in {path} under {Path(args.out) / model_run}")
    setting = settings.pop()
    for seed in seeds:
        fit_and_score(args, model, run, seed, (split,), (), results, path, setting)
    print(f"{model_run}: seeds {seeds} scored on {split} (rows of {path})", flush=True)


def remaining(args) -> str:
    """What the queue of ``--tune --study`` still holds: one line per trained configuration and seed,
    marked when a checkpoint of it is in ``--out`` (empty when the study is complete)."""
    results = load_keyed(Path(args.results))
    jobs, waiting = plan(["tune", "study"], results, variant_winner(Path(args.variants)))
    todo = [j for j in jobs if not j.finished(results)]
    lines = [f"  {j.model}/{j.run}/seed{j.seed} ({j.setting}, {'/'.join(j.splits)})"
             + (" [checkpoint here]" if has_checkpoint(args, j) else "")
             for j in todo]
    if waiting:
        lines.append("  and the runs of the tuned weight (mscs, mscs_tuned), once it is chosen on val")
    return f"still to run ({len(todo)}):\n" + "\n".join(lines) if lines else ""


def run_label(run: str, rows: list[dict], w: float | None) -> str:
    settings = {r["setting"] for r in rows if r["run"] == run}
    names = [STUDY_LABELS[s] for s in STUDY_LABELS if s in settings]
    if w is not None and run == run_name("mscs", w) and "mscs_tuned" not in settings:
        names.append(STUDY_LABELS["mscs_tuned"])
    if not names:  # a tuning run on val
        names = [f"CE + {run.removeprefix('mscs_w')} MS+CS" if run.startswith("mscs_w") else run]
    label = " = ".join(names)
    if any("w chosen" in n for n in names) and w is not None:
        label += f", w = {w:g}"
    if "variant" in settings:
        label += f" ({run})"
    return label


def by_run(results: dict[str, dict], model: str, split: str) -> tuple[list[dict], dict[str, dict[int, float]],
                                                                      dict[str, list[float]]]:
    """One model's rows on one split, their mIoU by trained configuration (``run``) and seed, and the
    training minutes of each run (with w = 0.1 chosen, mscs and mscs_tuned are the same runs)."""
    rows = [r for r in results.values() if r["model"] == model and r["split"] == split]
    mious: dict[str, dict[int, float]] = {}
    minutes: dict[str, list[float]] = {}
    for r in rows:
        mious.setdefault(r["run"], {})[r["seed"]] = r["miou"]
        minutes.setdefault(r["run"], []).append(r["fit_minutes"])
    return rows, mious, minutes


def mean_std(vals: dict[int, float]) -> str:
    v = [vals[k] for k in sorted(vals)]
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f} ± -"


def study_report(path: Path) -> str:
    from camvid_ablation import paired_by_seed

    results = load_keyed(path)
    lines = []
    w = tuned_weight(results)
    for model in RECIPES:
        for split in ("test", "val"):
            rows, mious, minutes = by_run(results, model, split)
            if not rows:
                continue
            lines += [f"#### {model}, {split} mIoU (%)", "",
                      "| setting | runs | mean ± std | seeds | vs CE, paired by seed | training min/run |",
                      "|---|---|---|---|---|---|"]
            ce = mious.get("ce", {})
            for run, vals in mious.items():
                seeds = ", ".join(f"{k}: {vals[k]:.2f}" for k in sorted(vals))
                paired = "-" if run == "ce" else paired_by_seed(vals, ce)
                lines.append(f"| {run_label(run, rows, w)} | {len(vals)} | {mean_std(vals)} | {seeds} "
                             f"| {paired} | {statistics.mean(minutes[run]):.1f} |")
            lines.append("")
    return "\n".join(lines)


def headline(path: Path, winner: str | None = None) -> str:
    """The README's table: every model's test mIoU per setting, paired by seed against its CE, and how
    many of the study's test runs (``winner``: the variant in the study, if any) are scored."""
    from camvid_ablation import paired_by_seed

    results = load_keyed(path)
    w = tuned_weight(results)
    lines = ["| model | setting | test seeds | test mIoU (%) | vs CE, paired by seed |", "|---|---|---|---|---|"]
    for model in RECIPES:
        rows, mious, _ = by_run(results, model, "test")
        ce = mious.get("ce", {})
        for run in sorted(mious, key=lambda r: (r != "ce", r)):
            paired = "-" if run == "ce" else paired_by_seed(mious[run], ce)
            lines.append(f"| {MODEL_NOTES.get(model, model)} | {run_label(run, rows, w)} | {len(mious[run])} "
                         f"| {mean_std(mious[run])} "
                         f"| {paired} |")
    if len(lines) == 2:
        return ""
    jobs, waiting = plan(["study"], results, winner)
    test = [j for j in jobs if "test" in j.splits]
    done = sum(j.finished(results) for j in test)
    if waiting or done < len(test):
        lines += ["", f"{done} of the study's {len(test) if not waiting else 'planned'} test runs are scored so far: "
                  "the study is not finished, and a setting with fewer seeds than the others is not a result yet."]
    return "\n".join(lines)


def _opt_parts(row: dict) -> tuple[str | None, list[tuple[str, float]]]:
    """A calibration row's optimizer name and its given ``("lr", v)``/``("wd", v)`` (``None``: the recipe's)."""
    given = [(short, row[k]) for k, short in (("lr", "lr"), ("weight_decay", "wd")) if row.get(k) is not None]
    return row.get("optimizer"), given


def opt_label(row: dict) -> str:
    """``"adamw, lr 0.001, wd 0.01"``: a calibration row's optimizer (``"the recipe's optimizer"``: none given)."""
    name, given = _opt_parts(row)
    return ", ".join([name or "the recipe's optimizer"] + [f"{k} {v:g}" for k, v in given])


def opt_slug(row: dict) -> str:
    """A folder-name form of :func:`opt_label`: ``adamw_lr0.001_wd0.01``."""
    name, given = _opt_parts(row)
    return "_".join([name or "recipe"] + [f"{k}{v:g}" for k, v in given])


def other_curves(path: Path) -> dict[str, dict[str, dict[int, float]]]:
    """The calibration curves of the models other than the FPN: ``{model: {"CE, adamw, lr 0.001, ...
    (1250-step poly, seed 0)": {step: val mIoU}}}``."""
    out: dict[str, dict[str, dict[int, float]]] = {}
    for r in load_rows(path):
        if r.get("kind") != "calibration" or r.get("model", MODEL) == MODEL:
            continue
        label = (f"{LABELS[r['setting']]}, {opt_label(r)} ({r['schedule_steps']}-step poly, "
                 f"{r['crop'][0]}x{r['crop'][1]} crops, batch {r['batch']}, seed {r['seed']})")
        out.setdefault(r["model"], {}).setdefault(label, {})[r["step"]] = r["miou"]
    return out


def other_report(path: Path) -> str:
    """One val table per model other than the FPN, one column per calibration run."""
    lines = []
    for model, curves in other_curves(path).items():
        labels = list(curves)
        steps = sorted({s for c in curves.values() for s in c})
        lines += [f"{model}, val mIoU (%):", "", "| step | " + " | ".join(labels) + " |",
                  "|---|" + "---|" * len(labels)]
        lines += [f"| {step} | " + " | ".join(f"{curves[lb][step]:.2f}" if step in curves[lb] else "-"
                                            for lb in labels) + " |" for step in steps]
        lines.append("")
    return "\n".join(lines).rstrip()


def report(path: Path, args) -> str:
    """The FPN's calibration table (``args``' schedule and seed), then those of the other models."""
    rows = [r for r in curve_rows(path, args) if r["seed"] == args.seed]
    settings = sorted({r["setting"] for r in rows}, key=list(CONFIGS).index)
    steps = sorted({r["step"] for r in rows})
    by = {(r["setting"], r["step"]): r["miou"] for r in rows}
    lines = ["| step | " + " | ".join(f"{LABELS[s]} val mIoU (%)" for s in settings) + " |",
             "|---|" + "---|" * len(settings)]
    for step in steps:
        lines.append(f"| {step} | " + " | ".join(f"{by[(s, step)]:.2f}" if (s, step) in by else "-"
                                                for s in settings) + " |")
    if others := other_report(path):
        lines += ["", others]
    return "\n".join(lines)


# a calibration panel also marks the val scores of another model's final CE runs: the first smp Unet pair's
PANEL_ENDPOINTS = {"smp_unet_lite0": {"smp_unet_lite0_sgd": "CE, the FPN's sgd, lr 0.01 (the first pair's runs)"}}


def mark_final(ax, step: float, vals: list[float], color: str, label: str) -> None:
    """The val scores of a recipe's final models on a calibration panel: mean ± std over seeds."""
    ax.errorbar([step], [statistics.mean(vals)], yerr=[statistics.stdev(vals) if len(vals) > 1 else 0], fmt="s",
                color=color, markersize=8, capsize=4, markerfacecolor="none",
                label=f"{label} ({len(vals)} seed{'s' if len(vals) > 1 else ''})")


def figure(path: Path, dest: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in curve_rows(path, args) if r["seed"] == args.seed]
    others = other_curves(path)
    fig, axes = plt.subplots(1, 1 + len(others), figsize=(6 + 6 * len(others), 4), squeeze=False)
    ax = axes[0, 0]
    ends = recipe_endpoints(Path(args.results))
    for i, s in enumerate(sorted({r["setting"] for r in rows} | set(ends), key=list(CONFIGS).index)):
        pts = sorted((r["step"], r["miou"]) for r in rows if r["setting"] == s)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=f"C{i}", label=LABELS[s])
        if s in ends:  # the converged recipe's own runs: their final models
            step, vals = ends[s]
            mark_final(ax, step + 25 * (2 * i - 1), vals, f"C{i}",  # side by side
                       f"{LABELS[s]}: the {step}-step recipe, final")
    ax.set_xlabel(f"training step (batch {args.batch}, {args.crop[0]}x{args.crop[1]} crops, "
                  f"poly schedule over {args.steps})")
    ax.set_ylabel("val mIoU (%)")
    ax.set_title("CamVid val, FPN + EfficientNet-Lite0 (calibration)")
    ax.grid(alpha=0.3)
    ax.legend()
    for ax, (model, curves) in zip(axes[0, 1:], others.items()):
        for i, (label, pts) in enumerate(curves.items()):
            steps = sorted(pts)
            ax.plot(steps, [pts[s] for s in steps], marker="o", color=f"C{i + 2}", label=label)
        for i, (other, label) in enumerate(PANEL_ENDPOINTS.get(model, {}).items(), start=len(curves) + 2):
            if "ce" in (ends := recipe_endpoints(Path(args.results), other)):
                step, vals = ends["ce"]
                mark_final(ax, step, vals, f"C{i}", f"{label}, final")
        ax.set_xlabel("training step")
        ax.set_ylabel("val mIoU (%)")
        ax.set_title(f"CamVid val, {model} (calibration)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(dest, dpi=120)
    print(f"wrote {dest}")


def recipe_endpoints(path: Path, model: str = MODEL) -> dict[str, tuple[int, list[float]]]:
    """``{calibration setting: (steps, [val mIoU of each seed])}`` of a model's study runs scored on val
    (the FPN's tuning runs), for the calibration figure."""
    results = load_keyed(path)
    ends: dict[str, tuple[int, list[float]]] = {}
    for setting, run in (("ce", "ce"), ("mscs", run_name("mscs", 0.1))):
        rows = sorted((r for r in results.values() if r["model"] == model and r["run"] == run
                       and r["split"] == "val"), key=lambda r: r["seed"])
        if rows:
            ends[setting] = (rows[0]["steps"], [r["miou"] for r in rows])
    return ends


def per_class_gains(path: Path, model: str = "fpn_lite0") -> dict[str, dict[str, float]]:
    """``{setting label: {class: mean over shared seeds of (IoU - CE's IoU)}}`` on test."""
    results = load_keyed(path)
    rows = [r for r in results.values() if r["model"] == model and r["split"] == "test"]
    w = tuned_weight(results)
    ce = {r["seed"]: r["per_class"] for r in rows if r["run"] == "ce"}
    gains: dict[str, dict[str, float]] = {}
    for run in sorted({r["run"] for r in rows} - {"ce"}):
        mine = {r["seed"]: r["per_class"] for r in rows if r["run"] == run}
        seeds = sorted(set(mine) & set(ce))
        if not seeds:
            continue
        classes = list(ce[seeds[0]])
        gains[run_label(run, rows, w)] = {c: statistics.mean(mine[s][c] - ce[s][c] for s in seeds) for c in classes}
    return gains


def gains_figure(path: Path, dest: Path, models: Sequence[str] = tuple(RECIPES)) -> None:
    """Per-class test IoU change against CE, one panel per model with paired runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {m: g for m in models if (g := per_class_gains(path, m))}
    if not panels:
        print("no paired test runs yet: no per-class figure")
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.6 * len(panels)), squeeze=False)
    for ax, (model, gains) in zip(axes[:, 0], panels.items()):
        classes = list(next(iter(gains.values())))
        width = 0.8 / len(gains)
        for i, (label, g) in enumerate(gains.items()):
            ax.bar([k + i * width for k in range(len(classes))], [g[c] for c in classes], width, label=label)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(classes))], classes, rotation=45, ha="right")
        ax.set_ylabel("test IoU minus CE's\n(points, mean over seeds)")
        ax.set_title(f"CamVid test, {model}: per-class change against CE, paired by seed"
                     + (f"\n{MODEL_NOTES[model]}" if model in MODEL_NOTES else ""))
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(dest, dpi=120)
    print(f"wrote {dest}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("SCALECONTRAST_CAMVID", "../shared/data/camvid"))
    p.add_argument("--calibrate", action="store_true", help="train the calibration run(s) (resumable)")
    p.add_argument("--settings", nargs="+", default=["ce"], choices=list(CONFIGS))
    p.add_argument("--model", default=MODEL, choices=list(CALIBRATION_CONFIGS),
                   help="the model --calibrate trains (its CE recipe, with the schedule given here)")
    p.add_argument("--optimizer", default=None, choices=["sgd", "adamw"],
                   help="--calibrate: the optimizer (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None, help="--calibrate: the peak learning rate (default: the recipe's)")
    p.add_argument("--weight-decay", type=float, default=None, help="--calibrate: weight decay (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=3000, help="length of the calibration's poly schedule")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--crop", type=int, nargs=2, default=[256, 256])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "runs" / "converged"))
    p.add_argument("--curve", default=str(ROOT / "docs" / "results" / "camvid_calibration.jsonl"))
    p.add_argument("--tune", action="store_true", help="the tuning runs on val (resumable)")
    p.add_argument("--study", action="store_true", help="the study's runs on test (resumable; after --tune)")
    p.add_argument("--results", default=str(ROOT / "docs" / "results" / "camvid_converged.jsonl"))
    p.add_argument("--variants", default=str(ROOT / "docs" / "results" / "camvid_variants.jsonl"),
                   help="the peers' options study's results (its val winner joins the study)")
    p.add_argument("--score", nargs=2, metavar=("MODEL/RUN", "SPLIT"),
                   help="score the final models of a trained configuration's finished seeds on SPLIT too, "
                        "e.g. --score smp_unet_lite0_sgd/ce val")
    p.add_argument("--report", action="store_true", help="print the tables and what the queue still holds")
    p.add_argument("--figure", default=None, help="draw the calibration curve into this PNG")
    p.add_argument("--gains-figure", default=None, help="draw the per-class test gains over CE into this PNG")
    p.add_argument("--docs", default=None, help="also write the tables into this Markdown file (between markers)")
    p.add_argument("--readme", default=None,
                   help="also write the test table into this Markdown file (between CONVERGED_HEADLINE markers)")
    args = p.parse_args()
    # a plain kill (SIGTERM) unwinds like Ctrl-C: the fit is stopped with it (it resumes exactly) and the
    # time it trained is kept in fit_minutes
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.calibrate:
        calibrate(args)
    phases = [name for name, on in (("tune", args.tune), ("study", args.study)) if on]
    if phases:
        work(args, phases)
    if args.score:
        score_finished(args, *args.score)
    if args.report or not (args.calibrate or args.tune or args.study or args.score):
        calibration, study_text = report(Path(args.curve), args), study_report(Path(args.results))
        print(calibration)
        print()
        print(study_text)
        if todo := remaining(args):
            print(todo)
        if args.docs:
            from camvid_ablation import write_block

            write_block(Path(args.docs), "CALIBRATION", calibration)
            if study_text.strip():
                write_block(Path(args.docs), "CONVERGED", study_text)
        if args.readme and (table := headline(Path(args.results), variant_winner(Path(args.variants)))):
            from camvid_ablation import write_block

            write_block(Path(args.readme), "CONVERGED_HEADLINE", table)
    if args.figure:
        figure(Path(args.curve), Path(args.figure), args)
    if args.gains_figure:
        gains_figure(Path(args.results), Path(args.gains_figure))


if __name__ == "__main__":
    main()
