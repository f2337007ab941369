"""A Lightning callback that records the wall time of every training step as the user waits for it
(data loading included: the time between the ends of consecutive steps) and writes them to a JSON
file at the end. Works with any version of this project's CLI, so old and new commits can be timed
side by side (``benchmarks/cli_step.py``):

    scalecontrast fit --config CFG --trainer.callbacks+=step_timer.StepTimer \\
        --trainer.callbacks.init_args.path times.json      # with benchmarks/ on PYTHONPATH
"""

from __future__ import annotations

import json
import time

import lightning as L


class StepTimer(L.Callback):
    """Wall time between the ends of consecutive training steps, in seconds, written to ``path``."""

    def __init__(self, path: str = "step_times.json") -> None:
        self.path = path
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now

    def on_train_end(self, trainer, pl_module) -> None:
        with open(self.path, "w") as f:
            json.dump({"times": self.times}, f)
