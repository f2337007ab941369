"""Hugging Face-style model folders: config.json + model.safetensors + README.md written from a checkpoint or a
module, read back by ``scalecontrast.from_pretrained`` (safetensors only, class paths checked) and served by the
command line (segment, export, test)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from test_cli import synthetic_args

import scalecontrast
from scalecontrast.cli import main
from scalecontrast.data import get_dataset
from scalecontrast.engine import InferenceModel, SegmentationModule, UntrustedCheckpointError, load_module
from scalecontrast.engine.checkpoint import CheckpointError, CheckpointNotFoundError
from scalecontrast.engine.hub import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, save_pretrained

SMP_TAPS = ["encoder.layer1", "encoder.layer2", "encoder.layer3", "encoder.layer4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[str], Path]:
    root = tmp_path_factory.mktemp("hub_run")
    args = synthetic_args(root)
    main(["fit", *args, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0",
          "--checkpoint.every_n_train_steps", "2"])
    return root, args, root / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> Path:
    _, _, ckpt = run
    out = tmp_path_factory.mktemp("exported") / "fpn"
    assert main(["export", "--ckpt_path", str(ckpt), "--format", "hf", "--output", str(out),
                 "--scores", json.dumps({"test/mIoU": 0.5})]) == 0
    return out


def images(n: int = 2, h: int = 64, w: int = 96) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0))


def test_builtin_model_round_trip(run, exported):
    _, _, ckpt = run
    assert sorted(p.name for p in exported.iterdir()) == sorted([CARD_NAME, CONFIG_NAME, WEIGHTS_NAME])
    from safetensors import safe_open

    with safe_open(str(exported / WEIGHTS_NAME), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any("contrastive" in k or "projector" in k for k in keys)  # the model only
    config = json.loads((exported / CONFIG_NAME).read_text())
    classes = list(get_dataset("synthetic", None, "val").classes)
    assert config["architecture"]["head"] == "fpn" and config["architecture"]["backbone"] == "mobilenetv3_small_050"
    assert config["class_names"] == classes and len(config["palette"]) == len(classes)
    assert config["training"]["data"]["dataset"] == "synthetic" and config["training"]["global_step"] == 2
    assert config["training"]["contrast"]["max_total"] == 500
    assert config["scores"] == {"test/mIoU": 0.5}

    model = scalecontrast.from_pretrained(str(exported))
    assert not model.training and model.class_names == classes and model.config["num_classes"] == len(classes)
    reference = InferenceModel(load_module(ckpt)).eval()
    with torch.no_grad():
        assert torch.allclose(model(images()), reference(images()), atol=1e-5)

    card = (exported / CARD_NAME).read_text()
    assert card.startswith("---\nlibrary_name: scalecontrast")
    for text in ("fpn", "synthetic", classes[1], "2203.13409", "max_total=500", "test/mIoU", "from_pretrained"):
        assert text in card, text


def test_class_path_smp_model_round_trip(tmp_path):
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    init = {"encoder_name": "resnet18", "encoder_weights": None, "classes": 3, "decoder_channels": [16, 16, 8, 8, 8]}
    net = smp.Unet(**init)
    module = SegmentationModule(model=net, taps=SMP_TAPS, contrast={"weight": 0.1},
                                class_names=["sky", "road", "car"], palette=[[0, 0, 255], [128, 64, 128], [255, 0, 0]])
    module.eval()
    # a model built in Python needs its class path; an argument that fetches weights is set to fetch nothing
    with pytest.raises(ValueError, match="built in Python"):
        save_pretrained(module, tmp_path / "no")
    config = {"class_path": "segmentation_models_pytorch.Unet", "init_args": {**init, "encoder_weights": "imagenet"}}
    out = save_pretrained(module, tmp_path / "unet", model_config=config)
    stored = json.loads((out / CONFIG_NAME).read_text())
    assert stored["architecture"]["init_args"]["encoder_weights"] is None
    assert stored["training"]["init_args_replaced"] == {"encoder_weights": "imagenet"}
    assert stored["training"]["taps"] == SMP_TAPS

    model = scalecontrast.from_pretrained(out)
    assert type(model.model) is smp.Unet and model.class_names == ["sky", "road", "car"]
    with torch.no_grad():
        assert torch.allclose(model(images()), InferenceModel(module).eval()(images()), atol=1e-5)
    # the weights file loads into the plain class too
    from safetensors.torch import load_model

    plain = smp.Unet(**init)
    load_model(plain, str(out / WEIGHTS_NAME))
    with torch.no_grad():
        assert torch.allclose(plain.eval()(images()), net(images()), atol=1e-5)


def test_loading_never_unpickles(exported, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("unpickling during from_pretrained")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    model = scalecontrast.from_pretrained(exported)
    with torch.no_grad():
        assert model(images(1)).shape == (1, model.config["num_classes"], 64, 96)


def test_untrusted_class_path_is_refused(exported, tmp_path):
    pkg = tmp_path / "pythonpath"
    pkg.mkdir()
    marker = tmp_path / "MARKER"
    (pkg / "evilhub.py").write_text(f"open({str(marker)!r}, 'w').close()\nimport torch\nNet = torch.nn.Conv2d\n")
    folder = tmp_path / "evil"
    folder.mkdir()
    config = json.loads((exported / CONFIG_NAME).read_text())
    config["architecture"] = {"class_path": "evilhub.Net", "init_args": {}}
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    (folder / WEIGHTS_NAME).write_bytes((exported / WEIGHTS_NAME).read_bytes())
    with pytest.raises(UntrustedCheckpointError, match=r"evilhub\.Net.*config\.json|config\.json.*evilhub\.Net"):
        scalecontrast.from_pretrained(folder)
    with pytest.raises(SystemExit, match="evilhub.Net"):
        main(["segment", "--ckpt_path", str(folder), "--input", str(tmp_path), "--output", str(tmp_path / "o")])
    assert not marker.exists()


def test_clear_errors(exported, tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no such folder"):
        scalecontrast.from_pretrained(str(tmp_path / "missing"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CONFIG_NAME).write_text((exported / CONFIG_NAME).read_text())
    with pytest.raises(CheckpointNotFoundError, match="model.safetensors not found"):
        scalecontrast.from_pretrained(broken)
    config = json.loads((exported / CONFIG_NAME).read_text())
    config["architecture"]["kwargs"]["channels"] = 16  # the weights no longer fit
    (broken / CONFIG_NAME).write_text(json.dumps(config))
    (broken / WEIGHTS_NAME).write_bytes((exported / WEIGHTS_NAME).read_bytes())
    with pytest.raises(CheckpointError, match="model.safetensors do not fit"):
        scalecontrast.from_pretrained(broken)
    del config["architecture"]
    (broken / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json lacks the keys \['architecture'\]"):
        scalecontrast.from_pretrained(broken)


def test_segment_and_export_from_the_folder(exported, tmp_path, capsys):
    from PIL import Image

    from scalecontrast.viz.masks import to_uint8_image

    ds = get_dataset("synthetic", None, "test", size=72, length=1)
    Image.fromarray(to_uint8_image(ds[0]["image"])).save(tmp_path / "scene.png")
    out = tmp_path / "seg"
    assert main(["segment", "--ckpt_path", str(exported), "--input", str(tmp_path / "scene.png"),
                 "--output", str(out)]) == 0
    assert (out / "scene_overlay.png").is_file() and Image.open(out / "scene_labels.png").size == (72, 72)
    again = tmp_path / "again"  # a folder exports again (hf) as it is
    assert main(["export", "--ckpt_path", str(exported), "--format", "hf", "--output", str(again)]) == 0
    first, second = (json.loads((d / CONFIG_NAME).read_text()) for d in (exported, again))
    assert second["scores"] == {"test/mIoU": 0.5} and second["training"] == first["training"]
    a, b = scalecontrast.from_pretrained(exported), scalecontrast.from_pretrained(again)
    with torch.no_grad():
        assert torch.equal(a(images(1)), b(images(1)))


@pytest.mark.slow
def test_test_command_scores_the_folder_as_the_checkpoint(run, exported, capsys):
    _, args, ckpt = run
    capsys.readouterr()
    main(["test", *args, "--ckpt_path", str(ckpt)])
    from_ckpt = [line for line in capsys.readouterr().out.splitlines() if "mIoU" in line]
    main(["test", *args, "--ckpt_path", str(exported)])
    from_folder = [line for line in capsys.readouterr().out.splitlines() if "mIoU" in line]
    assert from_ckpt and from_ckpt == from_folder
    main(["test", *args, "--ckpt_path", "none"])  # the folder's weights were loaded: untrained scores differ
    untrained = [line for line in capsys.readouterr().out.splitlines() if "mIoU" in line]
    assert untrained and untrained != from_folder
