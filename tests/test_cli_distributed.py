"""Lightning does the heavy lifting: 2-process DDP on CPU (gloo; PyTorch's SyncBN is GPU-only), and a killed run
resumed with `fit --ckpt_path last` at the step it reached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_cli import synthetic_args

pytestmark = pytest.mark.slow


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "scalecontrast.cli", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def test_ddp_two_processes_gloo(tmp_path):
    root = tmp_path / "ddp"
    cmd = _cli("fit", *synthetic_args(root), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
               "--trainer.strategy", "ddp", "--trainer.max_steps", "4",
               "--trainer.val_check_interval", "2", "--model.contrast.gather_distributed", "true")
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert "distributed_backend=gloo" in log
    assert "All distributed processes registered" in log
    assert _step(root / "checkpoints" / "last.ckpt") == 4


def test_resume_after_kill(tmp_path):
    root = tmp_path / "resume"
    args = [*synthetic_args(root), "--trainer.max_steps", "30", "--trainer.val_check_interval", "1000",
            "--trainer.limit_val_batches", "0", "--checkpoint.every_n_train_steps", "2"]
    last = root / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(_cli("fit", *args), cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 300
        reached = 0
        while time.time() < deadline and proc.poll() is None:
            if last.is_file():
                try:
                    reached = _step(last)
                except Exception:  # noqa: BLE001 - only a complete file counts
                    reached = 0
                if reached >= 4:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    killed_at = _step(last)  # a complete checkpoint: the write is atomic
    assert 4 <= killed_at < 30

    res = subprocess.run(_cli("fit", *args, "--ckpt_path", "last"), cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    log = res.stdout + res.stderr
    assert "Restoring states from the checkpoint path" in log and "last.ckpt" in log
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 30
    assert not list(last.parent.glob(".*.tmp"))  # a write cut by the kill is cleaned up on restart
    # the resumed run (a new TensorBoard version) trained only the remaining steps
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    versions = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    acc = EventAccumulator(str(versions[-1]))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps and min(steps) >= killed_at - 1 and max(steps) <= 30
    assert len(steps) <= 30 - killed_at + 1
    # the LR schedule continued from the killed run's step instead of restarting
    sched = ckpt["lr_schedulers"][0]
    assert sched["last_epoch"] == 30
