"""Trials of a study on an Optuna storage: planned, taken by workers, trained with ``scalecontrast fit`` and
scored once.

Every trial of the spec is enqueued as a WAITING Optuna trial whose user attributes name it (``key``:
``phase/arm/seedS``); a worker takes one with ``study.ask()``, which hands each WAITING trial to one worker
only, trains it in its run folder ``RUNS/NAME/SETTING/seedS`` with ``scalecontrast fit`` in a child
process and scores the final checkpoint once, on the phase's split. The same setting at the same seed is
one training: a compare trial whose model a tune trial trained scores that model.

A trial whose worker dies is taken up again: each running trial shows it is alive (Optuna heartbeats on an
RDB storage such as SQLite or PostgreSQL; the user attribute ``alive_at`` on a journal file), and a later
worker fails a trial silent for three heartbeat intervals and enqueues it again; a trial that failed (its
``fit`` ended with an error, or SIGTERM) is enqueued again by the next ``study run``. Either way the new
attempt resumes from the run folder's ``last.ckpt`` (the engine's exact resume), so it does not restart.

The protocol: the tune phase chooses a setting on its split by the best mean over its seeds (ties to the
smaller value of a single numeric option, otherwise to the listed order); compare trials whose setting is a
tune candidate, the tuned arm's included, are enqueued only after the choice, so no candidate is scored
on the compare split before it.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import multiprocessing
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scalecontrast.study.spec import TUNED, Setting, StudySpec, TrialPlan, setting_args, setting_label, setting_slug

__all__ = ["choose_setting", "open_storage", "open_study", "run_study", "score_checkpoint", "study_status",
           "tune_table"]

HEARTBEAT_S = 60
POLL_S = 5.0


def quiet_optuna() -> None:
    """Optuna's notes that heartbeats and fail_stale_trials are experimental, and that heartbeats are meant
    for Study.optimize (this module sends them itself, for ask and tell), are not for the user."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


# ------------------------------------------------------------------------------------------------
# storage
def open_storage(url: str, *, heartbeat: float | None = HEARTBEAT_S, must_exist: bool = False):
    """An Optuna storage: an RDB URL (``sqlite:///path``, ``postgresql://...``; heartbeats and retries of
    trials whose worker died) or a journal file (any other string: a path; a text file that diffs well,
    for a shared file system without a database server)."""
    import optuna

    file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    if "://" not in url:
        file = Path(url.removeprefix("journal:"))
    if must_exist and file is not None and not file.is_file():
        raise FileNotFoundError(f"no study storage at {file} (`scalecontrast study run` creates it)")
    if "://" in url:
        engine_kwargs = {}
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": 60}}  # several workers writing to one file
        kwargs: dict[str, Any] = {}
        if heartbeat:
            hb = max(1, int(round(heartbeat)))
            kwargs = {"heartbeat_interval": hb, "grace_period": 3 * hb,
                      "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)}
        return _rdb_storage(url, engine_kwargs, kwargs)
    path = Path(url.removeprefix("journal:"))
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], kwargs: dict[str, Any], attempts: int = 8):
    """``optuna.storages.RDBStorage``, tried again when another worker starting at the same moment creates
    the database's tables first (its schema version row then exists twice)."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except (IntegrityError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + 0.3 * attempt + random.random() * 0.3)
    raise AssertionError("unreachable")


def open_study(spec: StudySpec, storage_url: str | None = None, *, heartbeat: float | None = HEARTBEAT_S,
               create: bool = True):
    """The Optuna study of ``spec`` (named after it) on its storage (or ``storage_url``)."""
    import optuna

    quiet_optuna()
    storage = open_storage(storage_url or spec.storage_url, heartbeat=heartbeat, must_exist=not create)
    if not create:
        try:
            return optuna.load_study(study_name=spec.name, storage=storage)
        except KeyError:
            raise KeyError(f"the storage {storage_url or spec.storage_url} holds no study named {spec.name!r} "
                           "(`scalecontrast study run` creates it)") from None
    return optuna.create_study(study_name=spec.name, storage=storage, direction="maximize", load_if_exists=True)


# ------------------------------------------------------------------------------------------------
# the state of a study
PLAN_KEYS = ("key", "phase", "arm", "seed", "split", "setting")


def plan_attrs(plan: TrialPlan) -> dict[str, Any]:
    return {"key": plan.key, "phase": plan.phase, "arm": plan.arm, "seed": plan.seed, "split": plan.split,
            "setting": plan.options}


def trials_by_key(study) -> dict[str, list]:
    """The study's trials grouped by their ``key`` (trials the study did not plan, and duplicates, left out)."""
    out: dict[str, list] = defaultdict(list)
    for t in study.get_trials(deepcopy=False):
        key = t.user_attrs.get("key")
        if key and "duplicate_of" not in t.user_attrs:
            out[key].append(t)
    return out


def completed(trials: list) -> Any:
    """The first COMPLETE trial of a key's trials, or None."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return min(done, key=lambda t: t.number) if done else None


def tie_order(candidates: list[Setting]) -> list[int]:
    """Indices of the candidates in the order ties go: the smaller value when the grid has one numeric
    option, otherwise the listed order."""
    idx = list(range(len(candidates)))
    if candidates and len(candidates[0]) == 1:
        values = [next(iter(c.values())) for c in candidates]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return sorted(idx, key=lambda i: (values[i], i))
    return idx


def tie_rule(spec: StudySpec) -> str:
    cands = spec.candidates()
    numeric = len(cands[0]) == 1 and all(isinstance(v, int | float) and not isinstance(v, bool)
                                         for c in cands for v in c.values())
    how = "ties go to the smaller value" if numeric else "ties go to the setting listed first"
    return (f"the setting with the best mean {spec.tune_split} mIoU over the tune seeds "
            f"({', '.join(map(str, spec.tune_seeds))}); {how}")


def choose_setting(candidates: list[Setting], means: list[float]) -> int:
    """Index of the chosen candidate: the best mean (compared at 1e-9), ties by :func:`tie_order`."""
    order = tie_order(candidates)
    best = max(means)
    return next(i for i in order if means[i] >= best - 1e-9)


def tune_table(spec: StudySpec, by_key: dict[str, list]) -> tuple[list[dict], Setting | None]:
    """Per tune setting (the reference arm first): its scores by seed and mean; and the chosen setting once
    every candidate has a score at every tune seed (``None`` before)."""
    rows = []
    plans = spec.tune_trials()
    for setting in ([None] if spec.tune_reference else []) + spec.candidates():
        arm = spec.tune_reference if setting is None else setting_slug(setting)
        scores = {}
        for p in plans:
            if p.arm == arm:
                t = completed(by_key.get(p.key, []))
                if t is not None:
                    scores[p.seed] = t.value
        rows.append({"arm": arm, "setting": setting, "scores": scores, "reference": setting is None,
                     "mean": sum(scores.values()) / len(scores) if scores else None})
    cands = [r for r in rows if not r["reference"]]
    if not cands or any(len(r["scores"]) < len(spec.tune_seeds) for r in cands):
        return rows, None
    i = choose_setting([r["setting"] for r in cands], [r["mean"] for r in cands])
    cands[i]["chosen"] = True
    return rows, dict(cands[i]["setting"])


@dataclass
class StudyState:
    """What the storage holds, against the spec's plan."""

    plans: list[TrialPlan]              # every trial known so far (the tuned arm's once chosen)
    by_key: dict[str, list]
    tuned: Setting | None
    waiting_for_choice: list[TrialPlan] = field(default_factory=list)  # compare trials not enqueued yet

    def state_of(self, plan: TrialPlan) -> str:
        """``done``, ``running``, ``waiting`` (enqueued), ``failed`` (its latest attempt) or ``left``."""
        from optuna.trial import TrialState

        trials = self.by_key.get(plan.key, [])
        if completed(trials) is not None:
            return "done"
        states = {t.state for t in trials}
        if TrialState.RUNNING in states:
            return "running"
        if TrialState.WAITING in states:
            return "waiting"
        if TrialState.FAIL in states:
            return "failed"
        return "left"


def read_state(spec: StudySpec, study) -> StudyState:
    by_key = trials_by_key(study)
    _, tuned = tune_table(spec, by_key) if spec.has_tune else ([], None)
    plans = spec.tune_trials()
    known = spec.compare_trials(tuned)
    later = []
    for p in known:
        (later if spec.waits_for_choice(p) and tuned is None else plans).append(p)
    if spec.has_tune and tuned is None:  # the tuned arm, its setting not chosen yet
        later += [TrialPlan("compare", arm, (), seed, spec.compare_split)
                  for seed in spec.compare_seeds for arm, v in spec.arms.items() if v == TUNED]
    return StudyState(plans=plans, by_key=by_key, tuned=tuned, waiting_for_choice=later)


def sync(spec: StudySpec, study, *, retry_failed: bool) -> StudyState:
    """Enqueue the trials that are planned and have no trial yet (with ``retry_failed``, also those whose
    trials all failed); record the tuned setting once chosen."""
    state = read_state(spec, study)
    if state.tuned is not None and study.user_attrs.get("tuned") is None:
        study.set_user_attr("tuned", {"setting": state.tuned, "rule": tie_rule(spec)})
    for plan in state.plans:
        s = state.state_of(plan)
        if s == "left" or (s == "failed" and retry_failed):
            study.enqueue_trial({}, user_attrs=plan_attrs(plan))
    return read_state(spec, study)


# ------------------------------------------------------------------------------------------------
# one trial
def run_folder(spec: StudySpec, setting: Setting, seed: int) -> Path:
    return (spec.run_root / setting_slug(setting) / f"seed{seed}").absolute()


def source_commit() -> str | None:
    """The commit of the checkout the package runs from (``-dirty`` with uncommitted changes in it),
    or None outside a git checkout."""
    src = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=src, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    head = git("rev-parse", "--short=12", "HEAD")
    if head is None:
        return None
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".") else "")


def thread_count() -> int:
    """The threads a fit started from here trains with (``OMP_NUM_THREADS``, else torch's default)."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit():
        return int(env)
    import torch

    return torch.get_num_threads()


def config_hash(config: dict) -> str:
    """sha256 (16 hex digits) of a run's resolved config, without the keys that name where it ran."""
    cfg = json.loads(json.dumps(config, default=str))
    cfg.pop("ckpt_path", None)
    (cfg.get("trainer") or {}).pop("default_root_dir", None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_step(path: Path) -> int | None:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:  # noqa: BLE001 - an unreadable file is resumed from nothing
        return None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """The fit gets SIGTERM when its worker dies (Linux), writes last.ckpt and ends."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _read_attempts(folder: Path) -> list[dict]:
    f = folder / "fit_attempts.jsonl"
    if not f.exists():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def _append_attempt(folder: Path, record: dict) -> None:
    with open(folder / "fit_attempts.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def fit_time(folder: Path) -> tuple[float, float | None]:
    """Wall seconds and CPU seconds of training in ``folder`` over its fit attempts. Each attempt appends a
    start record and, when its ``fit`` ends, a closing one; an attempt killed before closing counts until
    the next attempt started (or, for the last one, until its last checkpoint was written), and its CPU
    time is unknown (None)."""
    records = _read_attempts(folder)
    closing = {rec["start"]: rec for rec in records if rec.get("closes")}
    starts = sorted(rec["start"] for rec in records if not rec.get("closes"))
    ckpt = folder / "checkpoints" / "last.ckpt"
    wall, cpu, known = 0.0, 0.0, True
    for i, start in enumerate(starts):
        if start in closing:
            wall += closing[start]["end"] - start
            cpu += closing[start].get("cpu_seconds", 0.0)
            continue
        known = False
        until = starts[i + 1] if i + 1 < len(starts) else (ckpt.stat().st_mtime if ckpt.exists() else start)
        wall += max(0.0, until - start)
    return wall, (cpu if known else None)


def fit_command(spec: StudySpec, setting: Setting, seed: int, folder: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "scalecontrast.cli", "fit"]
    for c in spec.config:
        cmd += ["--config", c]
    cmd += [*spec.args, *setting_args(setting), "--seed_everything", str(seed),
            "--trainer.default_root_dir", str(folder)]
    return cmd + (["--ckpt_path", "last"] if resume else [])


def run_fit(spec: StudySpec, setting: Setting, seed: int, folder: Path) -> dict:
    """Train (or resume, or find finished) the run in ``folder``; the attempt's record. Raises
    ``RuntimeError`` when the fit ends with an error or a signal."""
    from scalecontrast.engine.callbacks import RunFolderLock, RunFolderLockedError

    folder.mkdir(parents=True, exist_ok=True)
    lock = RunFolderLock(folder / "checkpoints")
    while True:  # a fit of a dead worker may still be writing its checkpoint on SIGTERM
        try:
            lock.acquire()
            lock.release()
            break
        except RunFolderLockedError:
            time.sleep(1.0)
    ckpt = folder / "checkpoints" / "last.ckpt"
    start_step = checkpoint_step(ckpt) if ckpt.exists() else None
    if start_step is None:  # nothing to resume: earlier attempts bought nothing
        (folder / "fit_attempts.jsonl").unlink(missing_ok=True)
    cmd = fit_command(spec, setting, seed, folder, resume=start_step is not None)
    record = {"start": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
              "commit": source_commit(), "threads": thread_count(), "resumed_from_step": start_step}
    _append_attempt(folder, record)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(folder / "fit.log", "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            rc = proc.wait()
        except BaseException:
            proc.terminate()  # the worker is stopping: the fit writes last.ckpt and ends
            proc.wait()
            raise
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {**record, "end": time.time(), "exit": rc,
              "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}
    _append_attempt(folder, {k: record[k] for k in ("start", "end", "exit", "cpu_seconds")} | {"closes": True})
    if rc != 0:
        how = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
        raise RuntimeError(f"scalecontrast fit ended with {how} (log: {folder / 'fit.log'})")
    return record


def score_checkpoint(ckpt: Path, config: dict, split: str) -> dict:
    """Score a checkpoint on ``split`` of the data its run trained on (``config``: the run's resolved
    config, ``data`` and ``trainer.precision`` used), with the evaluation options stored in it:
    ``{"miou", "per_class", "pixel_acc"}`` in %."""
    import lightning as L

    from scalecontrast.engine import SegmentationDataModule, load_module

    module = load_module(ckpt)
    data = dict(config.get("data") or {})
    data["test_split"] = split
    trainer_cfg = config.get("trainer") or {}
    trainer = L.Trainer(accelerator=trainer_cfg.get("accelerator", "auto"), devices=1,
                        precision=trainer_cfg.get("precision", "32-true"), logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=SegmentationDataModule(**data), verbose=False)
    scores = module.last_scores
    iou = [round(float(v) * 100, 2) for v in scores["iou"].tolist()]
    per_class = {name: (v if math.isfinite(v) else None) for name, v in zip(module.class_names, iou)}
    pixel = scores.get("pixel_acc")
    return {"miou": round(float(scores["mIoU"]) * 100, 2), "per_class": per_class,
            "pixel_acc": round(float(pixel) * 100, 2) if pixel is not None else None}


def resolved_config(folder: Path) -> dict:
    """The config the run's last fit wrote (``config.yaml``, the newest under the folder)."""
    found = sorted(folder.rglob("config.yaml"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"{folder}: the fit wrote no config.yaml")
    return yaml.safe_load(found[-1].read_text())


ALIVE_ATTR = "alive_at"


class Heartbeat:
    """A running trial's sign of life, from a thread: Optuna heartbeats on an RDB storage; on a storage
    without them (a journal file), the time as the user attribute ``alive_at`` every ``interval`` seconds."""

    def __init__(self, storage, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id = storage, trial_id
        native = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.native = bool(native)
        self.interval = native or interval
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def record(self) -> None:
        try:
            if self.native:
                self.storage.record_heartbeat(self.trial_id)
            else:
                self.storage.set_trial_user_attr(self.trial_id, ALIVE_ATTR, time.time())
        except Exception:  # noqa: BLE001 - the trial has just finished: nothing left to keep alive
            pass

    def __enter__(self):
        if self.interval:
            self.record()
            self.thread = threading.Thread(target=self.beat, daemon=True)
            self.thread.start()
        return self

    def beat(self) -> None:
        while not self.stop.wait(self.interval):
            self.record()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def retry_silent_trials(study, storage, interval: float) -> list[int]:
    """On a storage without Optuna heartbeats: fail each running trial whose ``alive_at`` is older than three
    ``interval`` and enqueue its plan again (what ``RetryHeartbeatStaleTrialCallback`` does on an RDB
    storage). The numbers of the trials failed."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    now, failed = time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "key" not in t.user_attrs or "duplicate_of" in t.user_attrs:
            continue
        alive = t.user_attrs.get(ALIVE_ATTR) or (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - alive <= 3 * interval:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, "error", f"no sign of life for {now - alive:.0f} s: its worker died")
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:  # another worker got there first, or it just finished
            continue
        study.enqueue_trial({}, user_attrs={k: t.user_attrs[k] for k in PLAN_KEYS})
        failed.append(t.number)
    return failed


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_trial(spec: StudySpec, study, storage, trial) -> bool:
    """Train and score one taken trial; tell Optuna the outcome. True when it completed."""
    from optuna.trial import TrialState

    attrs = trial.user_attrs
    setting, seed, split = attrs["setting"], int(attrs["seed"]), attrs["split"]
    folder = run_folder(spec, setting, seed)
    trial.set_user_attr("run_dir", str(folder))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    log(f"{spec.name}: trial {trial.number} {attrs['key']} ({setting_label(setting)}): {folder}")
    try:
        record = run_fit(spec, setting, seed, folder)
        config = resolved_config(folder)
        ckpt = folder / "checkpoints" / "last.ckpt"
        steps = checkpoint_step(ckpt)
        scores = score_checkpoint(ckpt, config, split)
    except Exception as err:  # the trial fails; the next `study run` takes it up again
        trial.set_user_attr("error", " ".join(str(err).split())[:500])
        study.tell(trial, state=TrialState.FAIL)
        log(f"{spec.name}: trial {trial.number} {attrs['key']} failed: {err}")
        return False
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C: the fit was stopped (last.ckpt written); it resumes later
        trial.set_user_attr("error", "the worker was stopped")
        study.tell(trial, state=TrialState.FAIL)
        raise
    wall, cpu = fit_time(folder)
    attempts = [r for r in _read_attempts(folder) if "threads" in r]
    trial.set_user_attr("metric", scores["miou"])
    trial.set_user_attr("per_class", scores["per_class"])
    trial.set_user_attr("pixel_acc", scores["pixel_acc"])
    trial.set_user_attr("steps", steps)
    trial.set_user_attr("fit_seconds", round(wall, 1))
    trial.set_user_attr("fit_cpu_seconds", round(cpu, 1) if cpu is not None else None)
    trial.set_user_attr("trained_here", record["resumed_from_step"] != steps)
    trial.set_user_attr("threads", sorted({r["threads"] for r in attempts}))
    trial.set_user_attr("commit", sorted({r["commit"] for r in attempts if r.get("commit")}))
    trial.set_user_attr("config_hash", config_hash(config))
    trial.set_user_attr("scored_at", time.time())
    study.tell(trial, scores["miou"])
    log(f"{spec.name}: trial {trial.number} {attrs['key']}: {split} mIoU {scores['miou']:.2f}")
    return True


# ------------------------------------------------------------------------------------------------
# workers
def _is_duplicate(study, trial) -> int | None:
    """The number of another trial of the same key that is complete, or running with a smaller number."""
    from optuna.trial import TrialState

    key = trial.user_attrs.get("key")
    for t in study.get_trials(deepcopy=False):
        if t.number == trial.number or t.user_attrs.get("key") != key or "duplicate_of" in t.user_attrs:
            continue
        if t.state == TrialState.COMPLETE or (t.state == TrialState.RUNNING and t.number < trial.number):
            return t.number
    return None


def _folder_busy(spec: StudySpec, study, trial) -> int | None:
    """Another running trial that trains in the same run folder (the same setting and seed)."""
    from optuna.trial import TrialState

    mine = (json.dumps(trial.user_attrs["setting"], sort_keys=True), trial.user_attrs["seed"])
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number != trial.number and "key" in t.user_attrs and "duplicate_of" not in t.user_attrs:
            if (json.dumps(t.user_attrs.get("setting"), sort_keys=True), t.user_attrs.get("seed")) == mine:
                return t.number
    return None


def worker(spec: StudySpec, storage_url: str | None, heartbeat: float | None, max_trials: int | None = None) -> int:
    """Take and run trials until none is left; the number of trials this worker completed."""
    import optuna
    from optuna.trial import TrialState

    quiet_optuna()
    storage = open_storage(storage_url or spec.storage_url, heartbeat=heartbeat)
    study = optuna.load_study(study_name=spec.name, storage=storage)
    study_id = storage.get_study_id_from_name(spec.name)
    native = bool(getattr(storage, "get_heartbeat_interval", lambda: None)())
    interval = float(heartbeat or HEARTBEAT_S)

    def retry_dead() -> None:
        if native:
            optuna.storages.fail_stale_trials(study)
        else:
            for number in retry_silent_trials(study, storage, interval):
                log(f"{spec.name}: trial {number} showed no sign of life for {3 * interval:.0f} s; taken up again")
    stopping = threading.Event()

    def on_term(signum, frame):  # stop taking trials; the running fit gets SIGTERM too (its process group)
        stopping.set()
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    done, first, waited = 0, True, False
    try:
        while not stopping.is_set() and (max_trials is None or done < max_trials):
            retry_dead()
            state = sync(spec, study, retry_failed=first)
            first = False
            if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                running = [p for p in state.plans if state.state_of(p) == "running"]
                # wait while trials run elsewhere: the tuned arm needs the tune phase's last scores, and a
                # trial whose worker died (no heartbeat or sign of life) comes back to be taken
                choice = bool(state.waiting_for_choice) and any(p.phase == "tune" for p in running)
                if running:
                    if not waited:
                        log(f"{spec.name}: waiting for {len(running)} trial(s) running elsewhere"
                            + (" (the tuned setting is chosen when the tune phase ends)" if choice else ""))
                        waited = True
                    time.sleep(POLL_S)
                    continue
                break
            waited = False
            trial = study.ask()
            if "key" not in trial.user_attrs:  # another worker took the last waiting trial first
                trial.set_user_attr("duplicate_of", -1)
                study.tell(trial, state=TrialState.FAIL)
                continue
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            with Heartbeat(storage, trial_id, interval):
                other = _is_duplicate(study, trial)
                if other is not None:
                    trial.set_user_attr("duplicate_of", other)
                    study.tell(trial, state=TrialState.PRUNED)
                    continue
                while (busy := _folder_busy(spec, study, trial)) is not None:
                    log(f"{spec.name}: trial {trial.number} waits for trial {busy}, which trains its model")
                    time.sleep(POLL_S)
                    retry_dead()
                done += run_trial(spec, study, storage, trial)
    except KeyboardInterrupt:
        log(f"{spec.name}: worker stopped; its trial is taken up again by the next `study run`")
        return done
    return done


def _worker_entry(spec: StudySpec, storage_url: str | None, heartbeat: float | None) -> None:
    worker(spec, storage_url, heartbeat)


def run_study(spec: StudySpec, *, storage: str | None = None, workers: int = 1,
              heartbeat: float | None = HEARTBEAT_S, max_trials: int | None = None) -> int:
    """``scalecontrast study run``: ``workers`` worker processes take the trials that are left. Returns
    0 when every planned trial is done, 1 otherwise (failed trials, or trials running elsewhere)."""
    open_study(spec, storage, heartbeat=heartbeat)  # create it once, before the workers race to
    if workers <= 1:
        worker(spec, storage, heartbeat, max_trials)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker_entry, args=(spec, storage, heartbeat)) for _ in range(workers)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            for p in procs:
                p.terminate()
            for p in procs:
                p.join()
    study = open_study(spec, storage, heartbeat=None, create=False)
    state = read_state(spec, study)
    left = [p for p in state.plans if state.state_of(p) != "done"] + state.waiting_for_choice
    print(status_text(spec, state))
    return 0 if not left else 1


# ------------------------------------------------------------------------------------------------
# status
def _duration(seconds: float) -> str:
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def status_text(spec: StudySpec, state: StudyState) -> str:
    lines = [f"study {spec.name} ({spec.storage or spec.storage_url})"]
    counts: dict[str, dict[str, int]] = {}
    for p in state.plans:
        counts.setdefault(p.phase, defaultdict(int))[state.state_of(p)] += 1
    for p in state.waiting_for_choice:
        counts.setdefault(p.phase, defaultdict(int))["left"] += 1
    for phase in ("tune", "compare"):
        if phase not in counts:
            continue
        c = counts[phase]
        total = sum(c.values())
        lines.append(f"  {phase}: {c['done']}/{total} done, {c['running']} running, {c['failed']} failed, "
                     f"{c['left'] + c['waiting']} left")
    if spec.has_tune:
        tuned = state.tuned
        lines.append("  tuned setting: " + (setting_label(tuned) if tuned is not None else "not chosen yet"))
    # time left: the mean training time of the models trained so far, times the models still to train
    trained: dict[tuple, float] = {}
    for trials in state.by_key.values():
        t = completed(trials)
        if t is not None and t.user_attrs.get("fit_seconds"):
            ident = (json.dumps(t.user_attrs.get("setting"), sort_keys=True), t.user_attrs.get("seed"))
            trained[ident] = float(t.user_attrs["fit_seconds"])
    todo = set()
    for p in state.plans + state.waiting_for_choice:
        if state.state_of(p) != "done":
            pending = p.phase == "compare" and spec.arms.get(p.arm) == TUNED and state.tuned is None
            ident = ("tuned" if pending else json.dumps(p.options, sort_keys=True), p.seed)
            if ident not in trained:
                todo.add(ident)
    if trained and todo:
        mean = sum(trained.values()) / len(trained)
        lines.append(f"  time left: about {_duration(mean * len(todo))} of training for {len(todo)} model(s) "
                     f"({_duration(mean)} each, the mean of {len(trained)} trained; divide by the workers)")
    elif todo:
        lines.append(f"  time left: {len(todo)} model(s) to train (no finished training to estimate from)")
    else:
        lines.append("  nothing left")
    return "\n".join(lines)


def study_status(spec: StudySpec, *, storage: str | None = None) -> str:
    """``scalecontrast study status``: done / running / failed / left per phase and the time left."""
    study = open_study(spec, storage, heartbeat=None, create=False)
    return status_text(spec, read_state(spec, study))
