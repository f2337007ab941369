"""Any segmentation model through the engine and the CLI: segmentation_models_pytorch, torchvision,
Hugging Face transformers and a plain user module (the paper's claim that MS+CS is model agnostic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from scalecontrast.cli import main
from scalecontrast.engine import SegmentationModule, load_module

K = 5  # the synthetic data's classes
SMP_TAPS = ["encoder.layer1", "encoder.layer2", "encoder.layer3", "encoder.layer4"]
SMALL_CONTRAST = {"max_views": 50, "max_total": 400, "embed_dim": 32}


def labels(b: int = 2, h: int = 64, w: int = 64) -> torch.Tensor:
    y = torch.zeros(b, h, w, dtype=torch.long)
    y[:, h // 2 :] = 1
    y[:, :, w // 2 :] += 2
    y[0, :, -2:] = 255
    return y


def smp_unet() -> nn.Module:
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    return smp.Unet("resnet18", encoder_weights=None, classes=K, decoder_channels=(32, 16, 16, 8, 8))


def torchvision_deeplabv3() -> nn.Module:
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    return deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=K, aux_loss=True)


def torchvision_lraspp() -> nn.Module:
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=K)


def hf_segformer() -> nn.Module:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    cfg = SegformerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 1, 1],
                          decoder_hidden_size=32, num_labels=K)
    return SegformerForSemanticSegmentation(cfg)


class PlainNet(nn.Module):
    """A user's own model: a two-stage encoder and a classifier at stride 4 (tensor output)."""

    def __init__(self, num_classes: int = K) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.classifier = nn.Conv2d(32, num_classes, 1)

    def forward(self, x):
        return self.classifier(self.stage2(self.stage1(x)))


def plain_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from scalecontrast.models import model_logits

    logits = model_logits(model(x))[0]
    return torch.nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


CLIENTS = {
    "smp_unet": (smp_unet, SMP_TAPS),
    "torchvision_deeplabv3": (torchvision_deeplabv3, ["backbone.2", "backbone.4", "backbone.7", "backbone.16"]),
    "torchvision_lraspp": (torchvision_lraspp, ["backbone.2", "backbone.4", "backbone.16"]),
    "hf_segformer": (hf_segformer, [f"segformer.stages.{i}" for i in range(4)]),
    "plain": (PlainNet, ["stage1", "stage2"]),
}


@pytest.mark.parametrize("name", list(CLIENTS))
def test_training_step_and_eval_logits_equal_the_plain_model(name):
    build, taps = CLIENTS[name]
    module = SegmentationModule(model=build(), taps=taps, contrast=SMALL_CONTRAST)
    module.log = module.log_dict = lambda *a, **kw: None  # type: ignore[method-assign]
    assert module.num_classes == K and module.contrastive_head is not None
    assert len(module.contrastive_head.projectors) == len(taps)
    module.train()
    x = torch.rand(2, 3, 64, 64)
    loss = module.training_step({"image": x, "mask": labels()}, 0)
    assert torch.isfinite(loss)
    loss.backward()
    head_grads = [p.grad for p in module.contrastive_head.parameters()]
    assert all(g is not None for g in head_grads) and any(g.abs().sum() > 0 for g in head_grads)
    first = next(p for p in module.model.model.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0

    module.eval()
    with torch.no_grad():
        ours = module.logits(x)
        plain = plain_logits(module.model.model, module.normalize(x))
    torch.testing.assert_close(ours, plain)


def test_python_model_reloads_into_a_fresh_instance(tmp_path):
    import lightning as L

    from scalecontrast.engine import SegmentationDataModule

    dm = SegmentationDataModule("synthetic", batch_size=2, crop_size=[64, 64], dataset_kwargs={"size": 64},
                                train_kwargs={"length": 4}, eval_kwargs={"length": 2})
    module = SegmentationModule(model=PlainNet(), taps=["stage1", "stage2"], contrast=SMALL_CONTRAST)
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, dm)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["model"] is None  # no pickled instance
    with pytest.raises(ValueError, match=r"built in Python \(.*PlainNet\).*model=PlainNet"):
        load_module(ckpt)
    loaded = load_module(ckpt, model=PlainNet())
    x = torch.rand(1, 3, 64, 64)
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.logits(x), module.logits(x))
    assert loaded.class_names == module.class_names and len(loaded.class_names) == K
    # a module built from wrap_model(...) reloads into a plain instance (the taps are in the checkpoint)
    from scalecontrast.models import wrap_model

    wrapped = SegmentationModule(model=wrap_model(PlainNet(), ["stage2", "stage1"]), contrast=SMALL_CONTRAST)
    wrapped_ckpt = tmp_path / "w.ckpt"
    torch.save({"state_dict": wrapped.state_dict(), "hyper_parameters": dict(wrapped.hparams),
                "pytorch-lightning_version": "2"}, wrapped_ckpt)
    again = load_module(wrapped_ckpt, model=PlainNet())
    assert again.model.taps == ["stage1", "stage2"]
    again = load_module(wrapped_ckpt, model=wrap_model(PlainNet(), ["stage1", "stage2"]))
    assert again.contrastive_head is not None


def test_wrap_model_keeps_each_submodule_mode():
    from scalecontrast.models import wrap_model

    net = PlainNet().train()
    net.stage1.eval()  # e.g. a frozen encoder stage
    wrap_model(net, ["stage1", "stage2"])
    assert not net.stage1.training and net.stage1[1].training is False and net.stage2.training


@pytest.mark.slow
def test_class_path_model_fit_then_test_segment_export_from_the_checkpoint(tmp_path, capsys):
    """The YAML of docs/models.md: a model the project did not build, trained with MS+CS by `scalecontrast fit`."""
    config = {
        "seed_everything": 0,
        "trainer": {"max_steps": 3, "default_root_dir": str(tmp_path / "run"), "enable_progress_bar": False,
                    "enable_model_summary": False, "num_sanity_val_steps": 0, "check_val_every_n_epoch": None,
                    "val_check_interval": 3, "log_every_n_steps": 1},
        "model": {
            "model": {"class_path": "segmentation_models_pytorch.Unet",
                      "init_args": {"encoder_name": "resnet18", "encoder_weights": None, "classes": K,
                                    "decoder_channels": [32, 16, 16, 8, 8]}},
            "taps": SMP_TAPS,
            "contrast": SMALL_CONTRAST,
        },
        "data": {"dataset": "synthetic", "batch_size": 2, "crop_size": [64, 64], "eval_batch_size": 2,
                 "dataset_kwargs": {"size": 64}, "train_kwargs": {"length": 6}, "eval_kwargs": {"length": 2}},
    }
    cfg = tmp_path / "smp_unet.yaml"
    cfg.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(cfg)])
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    assert any(k.startswith("contrastive_head.projectors.3.") for k in state["state_dict"])
    assert state["hyper_parameters"]["model"]["class_path"] == "segmentation_models_pytorch.Unet"

    # the checkpoint alone: test (with the config's data), segment, export, embed
    capsys.readouterr()
    main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt)])
    assert "mIoU" in capsys.readouterr().out
    from scalecontrast.data.synthetic import write_synthetic

    images = write_synthetic(tmp_path / "images", "test", 2, 64) / "images"
    assert main(["segment", "--ckpt_path", str(ckpt), "--input", str(images), "--output", str(tmp_path / "seg")]) == 0
    assert len(list((tmp_path / "seg").glob("*_overlay.png"))) == 2
    onnx_path = tmp_path / "unet.onnx"
    assert main(["export", "--ckpt_path", str(ckpt), "--output", str(onnx_path), "--height", "64",
                 "--width", "96"]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out
    fig = tmp_path / "tsne.png"
    assert main(["embed", "--ckpt_path", str(ckpt), "--output", str(fig), "--num_images", "2",
                 "--data.eval_kwargs", json.dumps({"length": 2})]) == 0
    assert fig.is_file()
    # the exported graph is the plain model's: no projector, no tap
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    assert not any("projector" in init.name or "contrastive" in init.name for init in graph.initializer)
    loaded = load_module(ckpt)
    assert type(loaded.model.model).__module__.startswith("segmentation_models_pytorch")
    assert loaded.hparams["model"]["class_path"] == "segmentation_models_pytorch.Unet"  # saved again as is


def test_cli_num_classes_defaults_to_the_data(tmp_path):
    from scalecontrast.cli import run_lightning

    cli = run_lightning(["--model.head", "fpn", "--model.backbone", "mobilenetv3_small_050",
                         "--model.model_kwargs", json.dumps({"channels": 16, "seg_channels": 16}),
                         "--data.dataset", "synthetic", "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert cli.model.num_classes == K
    assert Path(tmp_path).is_dir()


TORCHVISION_YAML = """
model:
  model:
    class_path: torchvision.models.segmentation.deeplabv3_mobilenet_v3_large
    init_args: {weights: null, weights_backbone: null, num_classes: 5, aux_loss: true}
  taps: [backbone.2, backbone.4, backbone.7, backbone.16]
"""
HF_YAML = """
model:
  model:
    class_path: transformers.SegformerForSemanticSegmentation
    init_args:
      config:
        class_path: transformers.SegformerConfig
        init_args: {depths: [1, 1, 1, 1]}
        dict_kwargs: {num_labels: 5}
  taps: [segformer.stages.0, segformer.stages.1, segformer.stages.2, segformer.stages.3]
"""


@pytest.mark.parametrize(("text", "cls", "channels"), [
    (TORCHVISION_YAML, "DeepLabV3", [24, 40, 80, 960]),
    (HF_YAML, "SegformerForSemanticSegmentation", [32, 64, 160, 256]),
], ids=["torchvision", "transformers"])
def test_readme_class_path_configs_build(tmp_path, text, cls, channels):
    from scalecontrast.cli import run_lightning

    cfg = tmp_path / "model.yaml"
    cfg.write_text(text + "data:\n  dataset: synthetic\n")
    cli = run_lightning(["--config", str(cfg), "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert type(cli.model.model.model).__name__ == cls
    assert cli.model.model.feature_channels == channels and cli.model.num_classes == K
    assert cli.model.contrastive_head is not None


def test_channels_last_probe_uses_the_models_probe_size_and_dtype():
    from scalecontrast.models import wrap_model

    class NeedsBigInputs(PlainNet):
        def forward(self, x):
            if x.shape[-1] < 96:
                raise ValueError("inputs must be at least 96 pixels wide")
            return super().forward(x)

    module = SegmentationModule(model=wrap_model(NeedsBigInputs(), ["stage1"], probe_size=(96, 96)), contrast=None)
    assert module.channels_last
    double = SegmentationModule(model=wrap_model(PlainNet().double(), ["stage1"]), contrast=None)
    assert double.channels_last and next(double.model.parameters()).dtype == torch.float64
