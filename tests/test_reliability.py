"""No silent wrong result, nothing lost: evaluation needs a checkpoint, divergence stops the run, a used run
folder is refused, resume is exact, damaged checkpoints give one clear error, segment goes on past a bad
image, and checkpoints get the umask's mode."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scalecontrast.cli import main
from scalecontrast.engine.callbacks import (
    AtomicCheckpointIO,
    NonFiniteCheckpointError,
    TrainingDivergedError,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cli import synthetic_args  # noqa: E402

FIT = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "0", "--checkpoint.every_n_train_steps", "2"]


def fit(root: Path, *extra: str) -> None:
    main(["fit", *synthetic_args(root), *FIT, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("trained")
    fit(root)
    return root, root / "checkpoints" / "last.ckpt"


# ------------------------------------------------------------------------------------------------
# 1. evaluation without a checkpoint
@pytest.mark.parametrize("cmd", ["test", "validate"])
def test_eval_without_ckpt_path_is_refused(cmd, tmp_path):
    with pytest.raises(SystemExit, match=rf"scalecontrast {cmd}: --ckpt_path is required.*--ckpt_path none"):
        main([cmd, *synthetic_args(tmp_path)])


def test_eval_untrained_on_purpose_and_help(tmp_path, capsys):
    main(["test", *synthetic_args(tmp_path), "--ckpt_path", "none"])
    captured = capsys.readouterr()
    assert "test results" in captured.out and "scoring the model as initialised" in captured.err
    assert main(["--help"]) == 0
    assert "`none`: untrained" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# 2. divergence
def test_all_ignore_batch_is_a_zero_ce_with_graph():
    from scalecontrast.losses import SegmentationLoss

    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.full((2, 8, 8), 255)
    for loss_fn in (SegmentationLoss(), SegmentationLoss(class_weights=[1.0, 2.0, 0.5])):
        out = loss_fn(logits, labels, logits)
        assert all(v.item() == 0.0 for v in out.values())
        (grad,) = torch.autograd.grad(out["loss"], logits)
        assert torch.isfinite(grad).all() and not grad.any()
    labels[0, :2] = 1  # weighted mean as PyTorch's
    w = torch.tensor([1.0, 2.0, 0.5])
    ref = torch.nn.functional.cross_entropy(
        torch.nn.functional.interpolate(logits, size=(8, 8), mode="bilinear"), labels, weight=w, ignore_index=255)
    torch.testing.assert_close(SegmentationLoss(class_weights=w.tolist())(logits, labels)["ce"], ref)


def test_nonfinite_loss_is_skipped_then_stops():
    from types import SimpleNamespace

    from scalecontrast.engine.callbacks import NonFiniteGuard

    class Strategy:
        @staticmethod
        def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
            return decision

    trainer = SimpleNamespace(strategy=Strategy(), global_step=0, current_epoch=0)
    nan = torch.tensor(float("nan"))
    module = SimpleNamespace(last_terms={"ce": nan, "contrastive_scale_0": torch.tensor(0.5),
                                         "contrastive_cross_hl": nan})
    param = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    guard = NonFiniteGuard(max_skipped_steps=1)
    guard.on_before_backward(trainer, module, torch.tensor(1.0))
    assert not guard.bad
    with pytest.warns(UserWarning, match="step skipped"):
        guard.on_before_backward(trainer, module, nan)
    param.grad = torch.full((2,), float("nan"))
    guard.on_before_optimizer_step(trainer, module, opt)
    opt.step()  # no gradient: the weights are untouched
    assert param.grad is None and torch.equal(param.detach(), torch.ones(2))
    with pytest.raises(TrainingDivergedError, match=r"step 1 .*ce=nan, contrastive_cross_hl=nan") as err:
        guard.on_before_backward(trainer, module, nan)
    assert "scale_0" not in str(err.value) and "--nonfinite.max_skipped_steps" in str(err.value)


def test_nonfinite_weights_are_never_written(tmp_path):
    ckpt = {"global_step": 3, "state_dict": {"a": torch.ones(2), "b": torch.tensor([1.0, float("inf")])}}
    expected = r"diverged: at step 3 the weights are not finite \(NaN/inf in b\); not writing .*x.ckpt"
    with pytest.raises(NonFiniteCheckpointError, match=expected):
        AtomicCheckpointIO().save_checkpoint(ckpt, tmp_path / "x.ckpt")
    assert not list(tmp_path.iterdir())


def test_divergence_stops_fit_with_step_and_terms(tmp_path):
    def diverge(root: Path, every: int) -> str:
        with pytest.raises(SystemExit) as err:
            main(["fit", *synthetic_args(root), "--trainer.max_steps", "30", "--trainer.limit_val_batches", "0",
                  "--checkpoint.every_n_train_steps", str(every), "--model.optimizer.lr", "10000"])
        return str(err.value.code)

    msg = diverge(tmp_path / "a", 100)  # no step checkpoint: the loss or the final weights show it
    loss_first = re.match(r"scalecontrast fit: training diverged: non-finite loss at step \d+ \(epoch \d+\)", msg)
    weights_first = re.match(r"scalecontrast fit: training diverged: at step 30 the weights are not finite", msg)
    assert loss_first or weights_first, msg
    if loss_first:  # which terms went non-finite (the unit test above covers the naming in detail)
        assert "non-finite terms: ce=nan" in msg and "contrastive_scale_0=nan" in msg
    assert "--model.optimizer.lr" in msg
    assert msg.endswith("No checkpoint was written.") and not list((tmp_path / "a").rglob("*.ckpt"))

    msg = diverge(tmp_path / "b", 1)  # the BN statistics go inf first: that checkpoint is not written
    assert re.match(r"scalecontrast fit: training diverged: at step (\d+) the weights are not finite \(NaN/inf in "
                    r".*running_var.*The last checkpoint written \(finite weights\) is .*last.ckpt \(step \d+\)",
                    msg), msg
    for path in (tmp_path / "b" / "checkpoints").glob("*.ckpt"):
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path


# ------------------------------------------------------------------------------------------------
# 3. a reused run folder
def test_used_run_folder_is_refused_unless_resumed_or_overwritten(tmp_path, capsys):
    root = tmp_path / "run"
    fit(root)
    last = root / "checkpoints" / "last.ckpt"
    assert f"checkpoint written last: {last}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"already holds checkpoints of an earlier run \(last.ckpt.*--ckpt_path last"):
        fit(root)
    fit(root, "--overwrite", "true", "--trainer.max_steps", "4")  # the documented path is the newest run's
    assert torch.load(last, weights_only=True)["global_step"] == 4
    assert not list((root / "checkpoints").glob("last-v*.ckpt"))
    fit(root, "--ckpt_path", "last", "--trainer.max_steps", "6")
    assert torch.load(last, weights_only=True)["global_step"] == 6


def test_concurrent_fit_into_one_folder_is_refused(tmp_path):
    root = tmp_path / "run"
    (root).mkdir()
    holder = ("import sys, time; from scalecontrast.engine.callbacks import RunFolderLock; "
              "RunFolderLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", holder, str(root / "checkpoints")], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit, match=rf"in use by another `fit` \(process {other.pid}"):
            fit(root)
    finally:
        other.kill()  # a SIGKILL: its lock file stays behind, but not its lock
        other.wait()
    assert (root / ".checkpoints.lock").exists()
    fit(root)  # the lock of a process that is gone is taken over
    assert (root / "checkpoints" / "last.ckpt").is_file() and not (root / ".checkpoints.lock").exists()


# ------------------------------------------------------------------------------------------------
# 4. exact resume after SIGKILL
PAUSE = '''
import os, sys, time
import lightning as L

class Pause(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == int(os.environ["PAUSE_AT"]):  # the checkpoint of that step is written
            open(os.environ["PAUSE_FLAG"], "w").close()
            time.sleep(600)

from scalecontrast.cli import main
main(sys.argv[1:])
'''
RESUME_STEPS = 10  # 16 items, batch 4: 4 steps per epoch


def resume_args(root: Path, workers: int) -> list[str]:
    return [*synthetic_args(root), "--trainer.max_steps", str(RESUME_STEPS), "--checkpoint.every_n_train_steps", "2",
            "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
            "--data.num_workers", str(workers)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = {}

    def get(workers: int) -> dict[str, torch.Tensor]:
        if workers not in runs:
            root = tmp_path_factory.mktemp(f"straight{workers}")
            main(["fit", *resume_args(root, workers)])
            runs[workers] = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
        return runs[workers]

    return get


@pytest.mark.parametrize("pause_at, workers", [(6, 0), (4, 0), pytest.param(6, 2, marks=pytest.mark.slow)],
                         ids=["mid_epoch", "epoch_boundary", "mid_epoch_2_workers"])
def test_resume_after_sigkill_is_exact(pause_at, workers, tmp_path, uninterrupted):
    reference = uninterrupted(workers)
    root = tmp_path / "run"
    script, flag = tmp_path / "pause.py", tmp_path / "paused"
    script.write_text(PAUSE)
    env = {**os.environ, "PAUSE_AT": str(pause_at), "PAUSE_FLAG": str(flag),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, str(script), "fit", *resume_args(root, workers),
                              "--trainer.callbacks+=__main__.Pause"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not flag.exists():
        if child.poll() is not None:
            raise AssertionError(f"the run ended before step {pause_at}: {child.stderr.read().decode()[-3000:]}")
        assert time.monotonic() < deadline, "the run did not reach the pause"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()
    killed = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert killed["global_step"] == pause_at

    main(["fit", *resume_args(root, workers), "--ckpt_path", "last"])
    resumed = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == reference["global_step"] == RESUME_STEPS
    ref, got = reference["state_dict"], resumed["state_dict"]
    assert ref.keys() == got.keys()
    worst = {k: (got[k].double() - ref[k].double()).abs().max().item() for k in ref if ref[k].numel()}
    bad = {k: v for k, v in worst.items() if v > 1e-5}
    assert not bad, f"{len(bad)} tensors differ, e.g. {sorted(bad.items(), key=lambda kv: -kv[1])[:3]}"


# ------------------------------------------------------------------------------------------------
# 5. damaged checkpoints
def damaged(trained_ckpt: Path, folder: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    data = trained_ckpt.read_bytes()
    files = {"truncated": data[: len(data) // 2], "random": os.urandom(4096), "empty": b""}
    out = {}
    for name, content in files.items():
        out[name] = folder / f"{name}.ckpt"
        out[name].write_bytes(content)
    out["plain_dict"] = folder / "plain_dict.ckpt"
    torch.save({"weights": torch.ones(2), "epoch": 3}, out["plain_dict"])
    return out


EXPECTED = {"truncated": "truncated", "random": "not a PyTorch checkpoint", "empty": "empty",
            "plain_dict": "not a scalecontrast checkpoint written by `fit`"}


def test_damaged_checkpoints_name_the_file(trained, tmp_path):
    root, good = trained
    args = synthetic_args(tmp_path / "eval")
    for kind, path in damaged(good, tmp_path / "bad").items():
        commands = {
            "segment": ["segment", "--ckpt_path", str(path), "--input", str(path), "--output", str(tmp_path / "s")],
            "export": ["export", "--ckpt_path", str(path), "--output", str(tmp_path / "m.onnx")],
            "embed": ["embed", "--ckpt_path", str(path), "--output", str(tmp_path / "t.png")],
            "test": ["test", *args, "--ckpt_path", str(path)],
            "validate": ["validate", *args, "--ckpt_path", str(path)],
            "fit": ["fit", *synthetic_args(tmp_path / f"resume_{kind}"), "--ckpt_path", str(path)],
        }
        for cmd, argv in commands.items():
            with pytest.raises(SystemExit) as err:
                main(argv)
            msg = str(err.value.code)
            assert msg.startswith(f"scalecontrast {cmd}: ") and str(path) in msg and EXPECTED[kind] in msg, (
                kind, cmd, msg)


def test_damaged_last_checkpoint_on_resume(trained, tmp_path):
    _, good = trained
    root = tmp_path / "run"
    (root / "checkpoints").mkdir(parents=True)
    last = root / "checkpoints" / "last.ckpt"
    last.write_bytes(good.read_bytes()[:1000])
    (root / "checkpoints" / "step0000002.ckpt").write_bytes(good.read_bytes())
    with pytest.raises(SystemExit, match=r"fit --ckpt_path last: cannot read checkpoint .*last.ckpt.*truncated"
                                         r".*other checkpoints there: .*step0000002.ckpt"):
        fit(root, "--ckpt_path", "last")


def test_weights_only_checkpoint_cannot_resume(trained, tmp_path):
    _, good = trained
    ckpt = torch.load(good, weights_only=True)
    for key in ("optimizer_states", "loops"):
        ckpt.pop(key, None)
    path = tmp_path / "weights.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(SystemExit, match=rf"{path} cannot resume a run: it holds no training state"):
        fit(tmp_path / "run", "--ckpt_path", str(path))


# ------------------------------------------------------------------------------------------------
# 6. segment past a bad image; checkpoint mode
def test_segment_goes_on_past_an_unreadable_image(trained, tmp_path, capsys):
    from PIL import Image

    _, ckpt = trained
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 48), (120, 30, 200)).save(images / "a_good.png")
    (images / "b_broken.png").write_bytes(b"\x89PNG not really")
    Image.new("RGB", (40, 48), (20, 200, 10)).save(images / "c_good.jpg")
    out = tmp_path / "seg"
    assert main(["segment", "--ckpt_path", str(ckpt), "--input", str(images), "--output", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"cannot read image file {images / 'b_broken.png'}" in captured.err
    assert "1 of 3 image(s) could not be read" in captured.err and "segmented 2 of 3" in captured.out
    assert (out / "a_good_overlay.png").is_file() and (out / "c_good_overlay.png").is_file()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoint_mode_follows_the_umask(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1)}}, tmp_path / "c.ckpt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.ckpt").stat().st_mode) == mode


def test_fit_checkpoint_is_0644_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        fit(tmp_path / "run")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run" / "checkpoints" / "last.ckpt").stat().st_mode) == 0o644



def test_run_folder_lock_is_held_by_a_started_child_but_not_by_a_forked_one(tmp_path):
    import os

    from scalecontrast.engine.callbacks import RunFolderLock, RunFolderLockedError

    lock = RunFolderLock(tmp_path / "checkpoints")
    lock.acquire()
    with pytest.raises(RunFolderLockedError, match=f"process {os.getpid()}"):
        RunFolderLock(tmp_path / "checkpoints").acquire()
    pid = os.fork()
    if pid == 0:  # a data loader worker: its copy of the descriptor is closed
        try:
            os.fstat(lock.fileno())
            code = 1
        except OSError:
            code = 0
        os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    # a process started with the descriptor keeps the lock after this one lets go of its own copy
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=(lock.fileno(),))
    try:
        from scalecontrast.engine import callbacks

        fd, lock._fd = lock.fileno(), None  # as if this process were killed
        callbacks._HELD_LOCK_FDS.discard(fd)
        os.close(fd)
        with pytest.raises(RunFolderLockedError):
            RunFolderLock(tmp_path / "checkpoints").acquire()
    finally:
        child.kill()
        child.wait()
    again = RunFolderLock(tmp_path / "checkpoints")
    again.acquire()  # the last holder is gone
    again.release()
    assert not (tmp_path / ".checkpoints.lock").exists()
