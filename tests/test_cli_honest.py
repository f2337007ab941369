"""No command silently does other than it says: options given with a checkpoint file are applied (or refused
in one line), images of any bit depth and orientation are read as a viewer shows them, SIGTERM ends `fit`
with a checkpoint and a non-zero exit, export says what its graph accepts, and user errors are one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import synthetic_args
from torch import nn

from scalecontrast.cli import compare_settings, main
from scalecontrast.engine import SegmentationModule, export_onnx, read_image
from scalecontrast.engine.export import check_onnx, check_runs_at


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[str], Path]:
    root = tmp_path_factory.mktemp("honest_run")
    args = synthetic_args(root)
    # a tiny learning rate keeps the weights near their random start: predictions vary over the image, so
    # each evaluation (TTA, sliding window) gives its own scores
    main(["fit", *args, "--trainer.max_steps", "4", "--trainer.val_check_interval", "4",
          "--checkpoint.every_n_train_steps", "4", "--model.optimizer.lr", "1e-6"])
    return root, args, root / "checkpoints" / "last.ckpt"


def _miou(out: str) -> str:
    return next(line for line in out.splitlines() if "test/mIoU" in line)


def test_evaluation_options_given_with_a_checkpoint_file_are_applied(run, capsys):
    _, args, ckpt = run
    main(["test", *args, "--ckpt_path", str(ckpt)])
    plain = capsys.readouterr().out
    assert "evaluation: scales [1.0], flip False, whole image" in plain
    main(["test", *args, "--ckpt_path", str(ckpt), "--model.evaluation.scales", "[0.5, 1.0, 1.5]",
          "--model.evaluation.flip", "true"])
    tta = capsys.readouterr().out
    assert "evaluation: scales [0.5, 1.0, 1.5], flip True, whole image" in tta
    main(["test", *args, "--ckpt_path", str(ckpt), "--model.evaluation.crop_size", "[40, 40]",
          "--model.evaluation.stride", "[24, 24]"])
    window = capsys.readouterr().out
    assert "sliding window [40, 40] stride [24, 24]" in window
    assert len({_miou(plain), _miou(tta), _miou(window)}) == 3  # each evaluation gives its own scores


def test_a_setting_that_changes_the_weights_is_refused_in_one_line(run):
    _, args, ckpt = run
    with pytest.raises(SystemExit, match=r"--model.backbone 'resnet18' \(the checkpoint's: 'mobilenetv3_small_050'\)"):
        main(["test", *args, "--ckpt_path", str(ckpt), "--model.backbone", "resnet18"])
    with pytest.raises(SystemExit, match=r"--model.contrast.embed_dim 64 \(the checkpoint's: 256\)"):
        main(["test", *args, "--ckpt_path", str(ckpt), "--model.contrast.embed_dim", "64"])


def test_resume_shows_changed_settings_and_refuses_impossible_ones(run, tmp_path, capsys):
    root, _, _ = run
    args = synthetic_args(tmp_path)
    main(["fit", *args, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0"])
    capsys.readouterr()
    main(["fit", *args, "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0", "--ckpt_path", "last",
          "--data.batch_size", "2", "--model.contrast.weight", "1.0", "--seed_everything", "7"])
    err = capsys.readouterr().err
    assert "settings changed since it was written" in err
    for change in ("data.batch_size: 4 -> 2", "model.contrast.weight: 0.1 -> 1.0", "seed_everything: 0 -> 7"):
        assert change in err
    with pytest.raises(SystemExit, match="--model.contrast null"):
        main(["fit", *args, "--trainer.max_steps", "4", "--ckpt_path", "last", "--model.contrast", "null"])
    with pytest.raises(SystemExit, match="the optimiser 'torch.optim.AdamW'"):
        main(["fit", *args, "--trainer.max_steps", "4", "--ckpt_path", "last", "--model.optimizer",
              "torch.optim.AdamW"])
    with pytest.raises(SystemExit, match="--model.model_kwargs"):
        main(["fit", *args, "--trainer.max_steps", "4", "--ckpt_path", "last", "--model.model_kwargs",
              json.dumps({"channels": 16, "seg_channels": 16})])


def test_fit_with_a_checkpoint_file_applies_the_options_given(run, tmp_path, capsys):
    _, _, ckpt = run
    args = synthetic_args(tmp_path)
    main(["fit", *args, "--trainer.max_steps", "5", "--trainer.limit_val_batches", "0", "--ckpt_path", str(ckpt),
          "--model.optimizer.lr", "0.123"])
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["hyper_parameters"]["optimizer"]["init_args"]["lr"] == 0.123
    assert "model.optimizer.lr" in capsys.readouterr().err  # shown as a change


def test_compare_settings_is_silent_when_nothing_changed():
    stored = {"model": {"head": "fpn", "contrast": {"weight": 0.1, "embed_dim": 256}}, "data": {"batch_size": 8},
              "seed": 0}
    assert compare_settings(stored, stored, resume=True) == ([], [])


def _png16(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr.astype(np.uint16)).save(path)  # PIL writes mode I;16 as a 16-bit greyscale PNG


def test_16_bit_and_rotated_images_are_read_as_a_viewer_shows_them(tmp_path):
    ramp = np.linspace(0, 65535, 6 * 8).reshape(6, 8).astype(np.uint16)
    _png16(tmp_path / "grey16.png", ramp)
    rgb = read_image(tmp_path / "grey16.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 8, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.rint(ramp * 255.0 / 65535.0).astype(np.uint8))
    assert rgb.max() == 255 and rgb.min() == 0
    # EXIF orientation 6: stored landscape, shown rotated 90 degrees clockwise (portrait)
    stored = np.zeros((20, 30, 3), np.uint8)
    stored[:5, :5] = 255  # top-left corner of the stored pixels
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "phone.png", exif=exif)
    shown = read_image(tmp_path / "phone.png")
    assert shown.shape == (30, 20, 3)
    assert shown[:5, -5:].min() > 200 and shown[:5, :5].max() < 50  # the corner is now at the top right


def test_segment_writes_the_mask_in_the_orientation_shown(run, tmp_path):
    _, _, ckpt = run
    src = tmp_path / "in"
    src.mkdir()
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(src / "phone.png", exif=exif)
    _png16(src / "grey16.png", np.full((40, 40), 50000))
    assert main(["segment", "--ckpt_path", str(ckpt), "--input", str(src), "--output", str(tmp_path / "out")]) == 0
    masks = {p.name: Image.open(p).size for p in (tmp_path / "out").glob("*mask*.png")}
    assert any(name.startswith("phone") and size == (48, 64) for name, size in masks.items()), masks


def test_sigterm_stops_fit_with_a_checkpoint_and_a_nonzero_exit(tmp_path):
    root = tmp_path / "run"
    args = [a.replace('"length": 16', '"length": 4000') for a in synthetic_args(root)]
    cmd = [sys.executable, "-m", "scalecontrast.cli", "fit", *args, "--trainer.max_steps", "2000",
           "--trainer.limit_val_batches", "0", "--checkpoint.every_n_train_steps", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while not (root / "checkpoints" / "last.ckpt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, (out, err)
    line = next(x for x in err.splitlines() if "stopped by SIGTERM" in x)
    step = int(line.split(" at step ")[1].split()[0])
    assert " of 2000 " in line and "resume with --ckpt_path last" in line
    state = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == step >= 1


class FixedBatchNet(nn.Module):
    """Runs at any batch size in PyTorch, but its forward turns the batch size into a Python int, which a
    tracer records as a constant: the exported graph takes one batch size only."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y.reshape(int(x.shape[0]), y.shape[1], y.shape[2], y.shape[3])


class NeedsLargeInput(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)
        self.pool = nn.AvgPool2d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


def test_export_check_tells_a_fixed_batch_from_a_dynamic_one(tmp_path):
    fixed = SegmentationModule(model=FixedBatchNet(), num_classes=3, contrast=None)
    path = export_onnx(fixed, tmp_path / "fixed.onnx", sample_size=(32, 48))
    result = check_onnx(path, fixed, sizes=((32, 48), (40, 56)), batches=(1, 2))
    assert not result.dynamic_batch and result.failures


def test_export_refuses_a_size_the_model_cannot_take():
    module = SegmentationModule(model=NeedsLargeInput(), num_classes=3, contrast=None)
    check_runs_at(module, (64, 64))
    with pytest.raises(ValueError, match="cannot run on a 8x12 image"):
        check_runs_at(module, (8, 12))


def test_user_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    args = ["test", "--model.head", "fpn", "--model.backbone", "mobilenetv3_small_050", "--data.dataset", "camvid",
            "--data.root", str(tmp_path / "missing"), "--ckpt_path", "none", "--trainer.logger", "false"]
    with pytest.raises(SystemExit) as info:
        main(args)
    message = str(info.value.code)
    assert message.startswith("scalecontrast test: ") and "\n" not in message
    assert str(tmp_path / "missing") in message and "Traceback" not in capsys.readouterr().err
    with pytest.raises(Exception, match="missing"):
        main([*args, "--debug"])


def test_a_full_disk_names_the_checkpoint_and_keeps_the_previous_one(tmp_path, monkeypatch):
    from scalecontrast.engine import callbacks

    io = callbacks.AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 1}, target)

    def full(obj, f):
        f.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed, unexpected pos 64")

    monkeypatch.setattr(callbacks.torch, "save", full)
    with pytest.raises(OSError, match=rf"cannot write checkpoint {target}: .*disk full\?.*written before it is kept"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "global_step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_unknown_dataset_options_and_rotated_masks(tmp_path):
    from scalecontrast.data import get_dataset
    from scalecontrast.data.io import read_header, read_mask

    with pytest.raises(ValueError, match=r"unknown option\(s\) \['lenght'\] for dataset 'synthetic'; valid: length"):
        get_dataset("synthetic", None, "train", lenght=3)
    mask = Image.fromarray(np.arange(20 * 30, dtype=np.uint8).reshape(20, 30) % 5)
    exif = mask.getexif()
    exif[0x0112] = 6
    mask.save(tmp_path / "m.png", exif=exif)
    assert read_mask(tmp_path / "m.png").shape == (30, 20)
    assert read_header(tmp_path / "m.png")[:2] == (30, 20)


def test_a_class_path_that_cannot_be_imported_is_one_line(run, tmp_path):
    _, _, ckpt = run
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["hyper_parameters"] = dict(state["hyper_parameters"], head=None, backbone=None, taps=["a"],
                                     model={"class_path": "torchvision.models.NoSuchNet", "init_args": {}})
    torch.save(state, tmp_path / "noclass.ckpt")
    with pytest.raises(SystemExit) as info:
        main(["export", "--ckpt_path", str(tmp_path / "noclass.ckpt"), "--output", str(tmp_path / "m.onnx")])
    message = str(info.value.code)
    assert message.startswith("scalecontrast export: cannot rebuild the model of ") and "NoSuchNet" in message
    assert "\n" not in message
