"""A checkpoint written when a scheduler's SIGTERM stops ``fit``."""

from __future__ import annotations

import os

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["PreemptionCheckpoint"]


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM (what SLURM and other schedulers send before pre-empting a job) Lightning stops the loop
    at the next batch boundary with :class:`SIGTERMException`; this writes the run's ``last`` checkpoint
    there, so ``fit --ckpt_path last`` resumes from the step reached, exactly."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath:
                name = cb.CHECKPOINT_NAME_LAST + cb.FILE_EXTENSION
                trainer.save_checkpoint(os.path.join(cb.dirpath, name), weights_only=False)
                return
