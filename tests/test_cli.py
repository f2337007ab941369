"""The command line end to end: synthetic data and a few CamVid images (fit, test, segment, export,
embed), misspelled options, and the data command's errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from scalecontrast.cli import main
from scalecontrast.data import get_dataset

# ../shared/data/camvid beside the repo (as in CI), or $SCALECONTRAST_CAMVID
CAMVID = Path(
    os.environ.get("SCALECONTRAST_CAMVID", Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid")
)
TINY_MODEL = [
    "--model.head", "fpn", "--model.backbone", "mobilenetv3_small_050", "--model.pretrained", "false",
    "--model.model_kwargs", json.dumps({"channels": 32, "seg_channels": 32}),
    "--model.contrast.max_total", "500", "--model.contrast.max_views", "100",
]  # fmt: skip
QUIET = [
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--trainer.num_sanity_val_steps", "0", "--trainer.log_every_n_steps", "1",
]  # fmt: skip


def synthetic_args(root: Path) -> list[str]:
    return [
        *TINY_MODEL,
        "--data.dataset", "synthetic", "--data.batch_size", "4", "--data.crop_size", "[64, 64]",
        "--data.eval_batch_size", "4",
        "--data.dataset_kwargs", json.dumps({"size": 64}),
        "--data.train_kwargs", json.dumps({"length": 16}), "--data.eval_kwargs", json.dumps({"length": 4}),
        "--trainer.default_root_dir", str(root), *QUIET,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("synthetic_run")
    args = synthetic_args(root)
    main(["fit", *args, "--trainer.max_steps", "4", "--trainer.val_check_interval", "2",
          "--checkpoint.every_n_train_steps", "2"])
    return root, args


def test_fit_writes_checkpoint_with_metadata(synthetic_run):
    root, _ = synthetic_run
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    hp = ckpt["hyper_parameters"]
    classes = list(get_dataset("synthetic", None, "val").classes)
    assert hp["class_names"] == classes
    assert len(hp["palette"]) == len(classes)
    assert len(hp["mean"]) == 3 and len(hp["std"]) == 3
    assert any(p.name.startswith("events.out.tfevents") for p in root.rglob("*"))  # TensorBoard logs


@pytest.mark.slow
def test_test_command_prints_per_class_table(synthetic_run, capsys):
    root, args = synthetic_run
    main(["test", *args, "--ckpt_path", str(root / "checkpoints" / "last.ckpt")])
    out = capsys.readouterr().out
    for name in get_dataset("synthetic", None, "val").classes:
        assert name in out
    assert "mIoU" in out and "pixel_acc" in out and "test results" in out
    main(["validate", *args, "--ckpt_path", str(root / "checkpoints" / "last.ckpt")])
    assert "val results" in capsys.readouterr().out


@pytest.mark.slow
def test_segment_export_embed_from_checkpoint(synthetic_run, tmp_path, capsys):
    root, _ = synthetic_run
    ckpt = str(root / "checkpoints" / "last.ckpt")
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    from scalecontrast.viz.masks import to_uint8_image

    ds = get_dataset("synthetic", None, "test", size=72, length=2)
    for i in range(2):
        Image.fromarray(to_uint8_image(ds[i]["image"])).save(images / f"scene{i}.png")
    out = tmp_path / "seg"
    assert main(["segment", "--ckpt_path", ckpt, "--input", str(images), "--output", str(out)]) == 0
    assert main(["segment", "--ckpt_path", ckpt, "--input", str(images / "scene0.png"),
                 "--output", str(tmp_path / "seg_tta"), "--tta", "true", "--scales", "[0.75, 1.0]"]) == 0
    for i in range(2):
        for kind in ("mask", "overlay", "labels"):
            assert (out / f"scene{i}_{kind}.png").is_file()
    labels = Image.open(out / "scene0_labels.png")
    assert labels.size == (72, 72)
    assert (tmp_path / "seg_tta" / "scene0_overlay.png").is_file()

    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "--ckpt_path", ckpt, "--output", str(onnx_path), "--height", "64",
                 "--width", "96"]) == 0
    assert onnx_path.is_file()
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out

    fig = tmp_path / "tsne.png"
    assert main(["embed", "--ckpt_path", ckpt, "--output", str(fig), "--num_images", "3",
                 "--data.eval_kwargs", json.dumps({"length": 3})]) == 0
    assert fig.is_file() and fig.stat().st_size > 10_000
    fig = tmp_path / "tsne_features.png"
    assert main(["embed", "--ckpt_path", ckpt, "--output", str(fig), "--num_images", "3", "--source", "features",
                 "--data.eval_kwargs", json.dumps({"length": 3})]) == 0
    assert "of features maps" in capsys.readouterr().out and fig.is_file()


def test_misspelled_option_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as err:
        main(["fit", "--model.lrr", "0.1"])
    assert err.value.code != 0
    assert "lrr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["segment", "--ckpt_pth", "x.ckpt", "--input", "a", "--output", "b"])
    assert "ckpt_pth" in capsys.readouterr().err


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("fit", "validate", "test", "segment", "export", "embed", "data camvid"):
        assert cmd in out


def test_data_command_rejects_unknown_dataset(tmp_path):
    with pytest.raises(SystemExit, match="only 'camvid'"):
        main(["data", "cityscapes", "--root", str(tmp_path)])


@pytest.mark.slow
@pytest.mark.skipif(not (CAMVID / "train").is_dir(), reason=f"CamVid not found at {CAMVID}")
def test_camvid_fit_test_segment(tmp_path, capsys):
    root = tmp_path / "run"
    configs = Path(__file__).resolve().parents[1] / "configs"
    config = configs / "camvid" / "fpn_lite0.yaml"
    args = ["--config", str(config), "--config", str(configs / "contrast" / "mscs.yaml"), *TINY_MODEL,
            "--data.root", str(CAMVID),
            "--data.train_limit", "4", "--data.eval_limit", "2", "--data.num_workers", "0",
            "--data.batch_size", "2", "--data.eval_batch_size", "1", "--data.crop_size", "[96, 128]",
            "--trainer.default_root_dir", str(root), *QUIET]
    main(["fit", *args, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2"])
    ckpt = root / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    capsys.readouterr()
    main(["test", *args, "--ckpt_path", str(ckpt)])
    out = capsys.readouterr().out
    for name in ("Sky", "Building", "Road", "Bicyclist", "mIoU", "pixel_acc"):
        assert name in out
    image = sorted((CAMVID / "test").iterdir())[0]
    assert main(["segment", "--ckpt_path", str(ckpt), "--input", str(image), "--output", str(tmp_path / "seg")]) == 0
    from PIL import Image

    assert Image.open(tmp_path / "seg" / f"{image.stem}_labels.png").size == Image.open(image).size
    fig = tmp_path / "tsne.png"
    assert main(["embed", "--config", str(config), "--ckpt_path", str(ckpt), "--output", str(fig),
                 "--data.root", str(CAMVID), "--num_images", "2", "--views", "20"]) == 0
    assert fig.is_file()


def test_layering():
    """cli uses engine, study and viz only; engine never imports cli, study or viz; study uses engine only;
    viz imports no other layer."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "scalecontrast"

    def imported(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return {n.split(".")[1] for n in names if n.startswith("scalecontrast.")} | (
            {"__init__"} if any(n == "scalecontrast" for n in names) else set())

    assert imported(src / "cli.py") <= {"engine", "study", "viz", "__init__", "__version__"}
    for path in (src / "engine").glob("*.py"):
        assert not imported(path) & {"cli", "study", "viz"}, path
    for path in (src / "study").glob("*.py"):
        assert imported(path) <= {"engine", "study"}, path
    for path in (src / "viz").glob("*.py"):
        assert imported(path) <= {"viz"}, path


def test_fit_checkpoints_the_last_step_when_it_is_not_a_multiple_of_the_interval(tmp_path, capsys):
    """max_steps 5, a checkpoint every 2 steps: last.ckpt holds step 5 (Lightning alone stops at 4), and
    the message names the checkpoint's own step."""
    main(["fit", *synthetic_args(tmp_path), "--trainer.max_steps", "5", "--trainer.limit_val_batches", "0",
          "--checkpoint.every_n_train_steps", "2"])
    ckpts = tmp_path / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 5
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == ["last.ckpt", "step0000005.ckpt"]
    assert "(step 5)" in capsys.readouterr().out
    # resuming the finished run trains nothing more and keeps step 5
    main(["fit", *synthetic_args(tmp_path), "--trainer.max_steps", "5", "--trainer.limit_val_batches", "0",
          "--checkpoint.every_n_train_steps", "2", "--ckpt_path", "last"])
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 5
