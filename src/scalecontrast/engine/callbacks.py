"""The guards of a training run, as Lightning callbacks (and a ``CheckpointIO``): non-finite losses stop
the run or skip the step, contrastive terms that stay 0 draw a warning, validation predictions go to
TensorBoard, the final step is checkpointed, checkpoints are written atomically and only when finite,
a resumed run draws what the uninterrupted one drew, and a run folder holds one run at a time."""

from __future__ import annotations

import math
import os
import random
import shutil
import socket
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor

__all__ = [
    "AtomicCheckpointIO",
    "ExactResume",
    "FinalCheckpoint",
    "NonFiniteGuard",
    "ValidationImages",
    "ZeroTermWatch",
    "NonFiniteCheckpointError",
    "RunFolderGuard",
    "RunFolderLock",
    "RunFolderLockedError",
    "RunFolderUsedError",
    "TrainingDivergedError",
    "collect_rng_states",
    "nonfinite_tensors",
    "set_rng_states",
]


class TrainingDivergedError(RuntimeError):
    """The training loss became non-finite (NaN or inf)."""


class NonFiniteCheckpointError(RuntimeError):
    """A checkpoint was about to be written with NaN / inf weights or buffers."""


class RunFolderUsedError(RuntimeError):
    """A new run would write into a folder that holds another run's checkpoints."""


class RunFolderLockedError(RuntimeError):
    """Another ``fit`` holds the run folder."""


# ------------------------------------------------------------------------------------------------
# random number generators
def collect_rng_states() -> dict[str, Any]:
    """The global RNG states of torch (CPU and every CUDA device), numpy and Python, as tensors and plain
    Python values (a checkpoint holding them still loads with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`collect_rng_states` returned."""
    torch.set_rng_state(states["torch"].cpu())
    cuda = states.get("torch.cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


class ExactResume(L.Callback):
    """Saves the global RNG states (torch CPU + CUDA, numpy, Python) in every checkpoint and restores them
    when a run resumes, just before its first training step, so that what a step draws (anchor sampling,
    dropout) is what the uninterrupted run drew. The data side (sampler position, augmentation) is
    :class:`~scalecontrast.engine.SegmentationDataModule`'s: per-sample seeds and a stateful loader."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": collect_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None


class FinalCheckpoint(L.Callback):
    """Checkpoints the last training step. A ``ModelCheckpoint`` with ``every_n_train_steps`` saves only at
    multiples of it, so a run of ``max_steps`` = 1250 saving every 100 steps would end with ``last.ckpt``
    at step 1200: the last 50 steps lost. At the end of training this writes, for the final step, each
    such callback's ``last.ckpt`` and (without a monitored metric) its step file, the one it replaces
    removed when it keeps one (``save_top_k=1``)."""

    def __init__(self) -> None:
        self.saved_step = -1

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self.saved_step = max(self.saved_step, int(checkpoint.get("global_step", -1)))

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step == 0 or self.saved_step >= trainer.global_step:
            return
        metrics = {**trainer.callback_metrics, "epoch": torch.tensor(trainer.current_epoch),
                   "step": torch.tensor(trainer.global_step)}
        for cb in trainer.checkpoint_callbacks:
            if not isinstance(cb, ModelCheckpoint) or cb.dirpath is None:
                continue
            if cb.monitor is None and cb.save_top_k != 0:
                path = cb.format_checkpoint_name(metrics)
                trainer.save_checkpoint(path, weights_only=cb.save_weights_only)
                previous, cb.best_model_path = cb.best_model_path, path
                if cb.save_top_k == 1 and previous and previous != path:
                    trainer.strategy.remove_checkpoint(previous)
            if cb.save_last:
                path = os.path.join(cb.dirpath, cb.CHECKPOINT_NAME_LAST + cb.FILE_EXTENSION)
                trainer.save_checkpoint(path, weights_only=cb.save_weights_only)
                cb.last_model_path = path


def tensorboard(trainer: L.Trainer | None):
    """The first logger's ``SummaryWriter``-like experiment that takes images, or ``None``."""
    for logger in getattr(trainer, "loggers", None) or []:
        exp = getattr(logger, "experiment", None)
        if exp is not None and hasattr(exp, "add_image"):
            return exp
    return None


class ValidationImages(L.Callback):
    """Sends ``num_images`` validation predictions of the first batch to TensorBoard at every validation,
    as image | ground truth | prediction side by side, in the classes' palette."""

    def __init__(self, num_images: int = 4) -> None:
        self.num_images = int(num_images)

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        tb = tensorboard(trainer)
        if batch_idx or not self.num_images or trainer.sanity_checking or tb is None or not trainer.is_global_zero:
            return
        if not isinstance(outputs, Tensor):
            return
        from scalecontrast.models.layers import resize

        k = pl_module.num_classes
        palette = torch.tensor(pl_module.palette + [[0, 0, 0]] * (256 - k), dtype=torch.float32,
                               device=outputs.device) / 255.0
        for i in range(min(self.num_images, outputs.shape[0])):
            image = resize(batch["image"][i : i + 1].float(), outputs.shape[-2:])[0].clamp(0, 1)
            gt = palette[batch["mask"][i].long().clamp(0, 255)].permute(2, 0, 1)
            pred = palette[outputs[i].long()].permute(2, 0, 1)
            tb.add_image(f"val_samples/{i}", torch.cat([image, gt, pred], dim=2), trainer.global_step)


class NonFiniteGuard(L.Callback):
    """A training step whose loss is NaN or inf (on any process) never updates the weights: its gradients
    are dropped before the optimiser step (an optimiser skips parameters without a gradient). After
    ``max_skipped_steps`` such steps the run stops with :class:`TrainingDivergedError`, naming the step and
    the loss terms (the module's ``last_terms``) that were not finite. 0 (default): stop at the first."""

    def __init__(self, max_skipped_steps: int = 0) -> None:
        if int(max_skipped_steps) < 0:
            raise ValueError(f"max_skipped_steps must be >= 0, got {max_skipped_steps}")
        self.max_skipped_steps = int(max_skipped_steps)
        self.skipped = 0
        self.bad = False

    def on_before_backward(self, trainer, pl_module, loss: Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        self.bad = bool(trainer.strategy.reduce_boolean_decision(bad, all=False))
        if not self.bad:
            return
        self.skipped += 1
        terms = {k: float(v.float()) for k, v in getattr(pl_module, "last_terms", {}).items()
                 if isinstance(v, Tensor) and v.numel() == 1}
        value = float(loss.detach().float())
        culprits = {k: v for k, v in terms.items() if not math.isfinite(v) and k != "loss"}
        where = f"step {trainer.global_step + 1} (epoch {trainer.current_epoch})"
        what = (f"loss={value}, non-finite terms: {describe_terms(culprits)}" if culprits
                else f"loss={value} (its terms are finite: the weighted sum overflowed)")
        if self.skipped > self.max_skipped_steps:
            raise TrainingDivergedError(
                f"training diverged: non-finite loss at {where}: {what}. The run stops before updating the weights "
                "with it. Lower the learning rate (--model.optimizer.lr), add warm-up (--model.lr_scheduler "
                "scalecontrast.engine.optim.WarmupPolyLR --model.lr_scheduler.warmup_steps N), or skip up to N "
                "such steps with --nonfinite.max_skipped_steps N")
        warnings.warn(f"non-finite loss at {where}: {what}; step skipped (no weight update), "
                      f"{self.skipped} of --nonfinite.max_skipped_steps {self.max_skipped_steps}", stacklevel=2)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.bad:
            optimizer.zero_grad(set_to_none=True)


class ZeroTermWatch(L.Callback):
    """Warns once per contrastive term (``scale_<s>``, ``cross_*``) that has been exactly 0 for ``steps``
    consecutive training steps: at that scale no (image, class) pair reaches ``min_views`` sampled pixels,
    so it never contributes. Counts on the device; reads them back once every ``steps`` steps."""

    def __init__(self, steps: int = 100) -> None:
        self.steps = int(steps)
        self.zero_steps: dict[str, Tensor] = {}
        self.warned: set[str] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        prefix = "contrastive_"
        for name, value in getattr(pl_module, "last_terms", {}).items():
            term = name.removeprefix(prefix)
            if not name.startswith(prefix) or not term.startswith(("scale_", "cross_")):
                continue
            count = self.zero_steps.get(term)
            count = torch.zeros((), dtype=torch.long, device=value.device) if count is None else count
            self.zero_steps[term] = torch.where(value == 0, count + 1, torch.zeros_like(count))
        if self.steps <= 0 or trainer.global_step % self.steps or not self.zero_steps:
            return
        names = [n for n in self.zero_steps if n not in self.warned]
        if not names:
            return
        counts = torch.stack([self.zero_steps[n] for n in names]).tolist()
        silent = [n for n, c in zip(names, counts, strict=True) if c >= self.steps]
        if silent:
            self.warned.update(silent)
            head = getattr(pl_module, "contrastive_head", None)
            min_views = head.loss.min_views if head is not None else "?"
            warnings.warn(
                f"contrastive term(s) {silent} have been exactly 0 for {self.steps} consecutive steps: at "
                f"that scale no (image, class) pair reaches min_views={min_views} sampled pixels (small "
                "crops or deep maps), so it never contributes; use larger crops, lower contrast.min_views, or "
                "give that scale's weight 0 (train/contrastive_pairs_* in the logs show the counts)",
                stacklevel=2)


# ------------------------------------------------------------------------------------------------
# checkpoints
def nonfinite_tensors(state_dict: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding a NaN or an inf."""
    bad = []
    for name, value in state_dict.items():
        if isinstance(value, Tensor) and value.is_floating_point() and value.numel():
            if not bool(torch.isfinite(value).all()):
                bad.append(name)
    return bad


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file in the target folder, fsyncs, then renames over the target: a killed run
    never leaves a truncated checkpoint. The file gets the mode the umask gives new files (0644 under the
    usual 022, as the logs), and a checkpoint whose weights or buffers are not finite is never written
    (:class:`NonFiniteCheckpointError`). (Lightning's own save stages the file in the system's temporary
    folder and moves it, which is a copy, not an atomic rename, when that folder is on another file
    system, and does not fsync.)"""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        bad = nonfinite_tensors(checkpoint.get("state_dict") or {})
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise NonFiniteCheckpointError(
                f"training diverged: at step {checkpoint.get('global_step', '?')} the weights are not finite "
                f"(NaN/inf in {shown}); not writing {path}. Lower the learning rate (--model.optimizer.lr) or add "
                "warm-up (--model.lr_scheduler.warmup_steps N)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as err:
            raise OSError(f"cannot write checkpoint {path}: {err.strerror or err}") from err
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError ("unexpected pos")
            free = shutil.disk_usage(path.parent).free if path.parent.exists() else None
            room = f"; {free / 2**20:.0f} MiB free there" if free is not None else ""
            raise OSError(f"cannot write checkpoint {path}: {str(err).splitlines()[0][:160]} (disk full?{room}); "
                          "the checkpoint written before it is kept") from err
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


# ------------------------------------------------------------------------------------------------
# run folder
_HELD_LOCK_FDS: set[int] = set()


def _close_held_locks_in_child() -> None:
    # A forked child (a data loader worker) shares the parent's flock; closing its copy of the descriptor
    # keeps it from holding the lock after the parent is killed. (``subprocess`` does not run this hook:
    # a descriptor given in ``pass_fds`` stays with the child on purpose.)
    for fd in _HELD_LOCK_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCK_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_locks_in_child)


class RunFolderLock:
    """``.<folder name>.lock`` beside the checkpoint folder, held with ``flock`` while the run lasts: a second
    ``fit`` into the same folder is refused. The file holds ``host pid`` for the message. The kernel drops the
    lock when its process ends, however it ends, so a killed run leaves nothing to take over. Forked children
    (data loader workers) drop their copy; a process started with the descriptor (``fileno()``, e.g.
    ``subprocess``'s ``pass_fds``) keeps the lock held while it runs."""

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder).absolute()
        self.folder = folder
        self.path = folder.parent / f".{folder.name}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def fileno(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not held")
        return self._fd

    def _owner(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                owner = self._owner()
                who = f"process {owner[1]} on {owner[0]}" if owner else "another process"
                raise RunFolderLockedError(
                    f"{self.folder} is in use by another `fit` ({who}, lock file {self.path}); two runs in one "
                    "folder overwrite each other's checkpoints. Use another --trainer.default_root_dir") from None
            try:  # the last holder may have removed the file between this open and this flock
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._fd = fd
        _HELD_LOCK_FDS.add(fd)

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # before the unlock: a waiter then finds a new file
            _HELD_LOCK_FDS.discard(self._fd)
            os.close(self._fd)
            self._fd = None


class RunFolderGuard(L.Callback):
    """Holds a :class:`RunFolderLock` on every checkpoint folder while ``fit`` runs (global rank zero) and
    refuses a folder that already holds checkpoints of another run, unless ``resuming`` or ``overwrite``.
    Writes cut short by a kill (``.*.ckpt.*.tmp``) are removed first. Raises :class:`RunFolderLockedError`
    or :class:`RunFolderUsedError`."""

    def __init__(self, *, overwrite: bool = False, resuming: bool = False) -> None:
        self.overwrite, self.resuming = overwrite, resuming
        self.locks: list[RunFolderLock] = []

    @staticmethod
    def folders(trainer: L.Trainer) -> list[Path]:
        return [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks
                if isinstance(cb, ModelCheckpoint) and cb.dirpath]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        for folder in self.folders(trainer):
            lock = RunFolderLock(folder)
            lock.acquire()
            self.locks.append(lock)
            for stale in folder.glob(".*.ckpt.*.tmp"):
                stale.unlink(missing_ok=True)
            used = sorted(p.name for p in folder.glob("*.ckpt"))
            if used and not (self.resuming or self.overwrite):
                self.release()
                shown = ", ".join(used[:4]) + (f" and {len(used) - 4} more" if len(used) > 4 else "")
                raise RunFolderUsedError(
                    f"{folder} already holds checkpoints of an earlier run ({shown}). Resume it with "
                    "--ckpt_path last, train into another folder (--trainer.default_root_dir DIR), or replace "
                    "them with --overwrite true")

    def release(self) -> None:
        for lock in self.locks:
            lock.release()
        self.locks.clear()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.release()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.release()


def describe_terms(terms: Mapping[str, float]) -> str:
    """``"ce=nan, contrastive_scale_0=inf"``."""
    return ", ".join(f"{k}={v:.4g}" if math.isfinite(v) else f"{k}={v}" for k, v in terms.items())
