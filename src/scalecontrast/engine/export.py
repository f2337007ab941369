"""Inference from a checkpoint alone: loading, a normalise-and-predict module, ONNX export."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scalecontrast.engine.module import SegmentationModule

__all__ = ["CheckpointError", "CheckpointNotFoundError", "load_module", "read_checkpoint", "InferenceModel",
           "export_onnx", "check_onnx"]


class CheckpointError(ValueError):
    """A checkpoint file that cannot serve: missing, empty, truncated, not a PyTorch file, or not one
    written by ``fit``. The message names the file and what is wrong with it."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path names no file."""


def _load_file(path: Path, map_location: Any, weights_only: bool) -> Any:
    import zipfile

    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}" + (" (a folder)" if path.is_dir() else ""))
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes; a write that never "
                              "finished?)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): truncated (the end of the zip "
                              "archive is missing: a copy or write that stopped early?)")
    if head[:2] != b"PK" and head[:1] != b"\x80":
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): truncated or not a PyTorch checkpoint "
                              f"(it starts with {head!r}, not a torch.save archive)")
    try:
        return torch.load(str(path), map_location=map_location, weights_only=weights_only)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        text = f"{type(err).__name__}: {err}".strip()
        first = text.splitlines()[0][:200]
        if "Unsupported global" in text or "Unsupported operand" in text:
            raise CheckpointError(
                f"cannot read checkpoint {path}: it holds objects that torch.load(weights_only=True) refuses to "
                f"unpickle (not a checkpoint written by `fit`?): {first}") from err
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): damaged, truncated or not a PyTorch "
                              f"checkpoint; torch.load said {first}") from err


def read_checkpoint(ckpt_path: str | Path, map_location: str | torch.device = "cpu", *,
                    weights_only: bool = False, resume: bool = False) -> dict[str, Any]:
    """The checkpoint dict of ``ckpt_path``, or one :class:`CheckpointError` naming the file and what is
    wrong: missing, empty, truncated, not a PyTorch file, not written by ``fit`` (no ``state_dict`` /
    ``hyper_parameters`` / ``pytorch-lightning_version``) or, with ``resume``, holding no training state."""
    path = Path(ckpt_path)
    ckpt = _load_file(path, map_location, weights_only)
    expected = ("state_dict", "hyper_parameters", "pytorch-lightning_version")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in expected):
        keys = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        missing = [k for k in expected if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointError(f"{path} is not a scalecontrast checkpoint written by `fit` (it has {keys}; "
                              f"missing {missing})")
    if resume:
        missing = [k for k in ("optimizer_states", "loops", "global_step") if k not in ckpt]
        if missing:
            raise CheckpointError(f"{path} cannot resume a run: it holds no training state (missing {missing}); "
                                  "it was saved with weights only")
    return ckpt


def load_module(
    ckpt_path: str | Path,
    *,
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
) -> SegmentationModule:
    """A :class:`SegmentationModule` rebuilt from a checkpoint, in eval mode.

    ``model=None`` rebuilds the model from the checkpoint: built-in heads (``head`` + ``backbone``) and
    models given by class path (the command line's ``model: {class_path, init_args}``); backbone weights
    of built-in heads are not fetched again (``pretrained=False``), while a class-path model is built
    with its saved init args as they are (e.g. smp's ``encoder_weights: imagenet`` downloads again; pass
    a fresh instance built without them to avoid that). For a model built in Python, pass a fresh instance
    (``model=MyNet(...)``, the same architecture) and the checkpoint's weights are loaded into it.
    """
    path = Path(ckpt_path)
    ckpt = read_checkpoint(path, map_location)
    hp = dict(ckpt["hyper_parameters"])
    hp.pop("_instantiator", None)
    hp.pop("_class_path", None)
    hp["pretrained"] = False
    hp["init_weights"] = None  # the checkpoint's weights replace them anyway
    hp["compile"] = False  # inference from a checkpoint never compiles
    if model is not None:
        from scalecontrast.models import SegmentationModel, WrappedModel

        for key in ("head", "backbone", "model_kwargs"):
            hp[key] = None  # the instance replaces whatever built the model
        if isinstance(model, SegmentationModel | WrappedModel):
            hp["taps"] = None  # it returns its features already
        hp["model"] = model
        module = SegmentationModule(**hp)
    elif isinstance(hp.get("model"), dict) and "class_path" in hp["model"]:
        from lightning.pytorch.cli import instantiate_module

        config = hp["model"]
        module = instantiate_module(SegmentationModule, hp)
        module.hparams["model"] = config  # a checkpoint saved from this module rebuilds the same way
    elif hp.get("model") is None and hp.get("head") is None:
        cls = (ckpt.get("scalecontrast") or {}).get("model_class", "the model class")
        raise ValueError(f"{path} holds a model built in Python ({cls}): pass a fresh instance, "
                         f"load_module({str(path)!r}, model={cls.rsplit('.', 1)[-1]}(...))")
    else:
        module = SegmentationModule(**hp)
    try:
        module.load_state_dict(ckpt["state_dict"], strict=strict)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit the model rebuilt from it: {err}") from err
    return module.to(map_location).eval()


class InferenceModel(nn.Module):
    """``image (B, 3, H, W)`` RGB in [0, 1] -> logits ``(B, K, H, W)``: normalisation and the
    segmentation model only (no contrastive head; a wrapped model's own forward, without the taps)."""

    def __init__(self, module: SegmentationModule) -> None:
        super().__init__()
        from scalecontrast.models import WrappedModel

        model = module.model.model if isinstance(module.model, WrappedModel) else module.model
        self.model = copy.deepcopy(model)  # eval()/cpu() below must not touch the caller's model
        self.register_buffer("mean", module.pixel_mean.detach().clone())
        self.register_buffer("std", module.pixel_std.detach().clone())

    def forward(self, image: Tensor) -> Tensor:
        from scalecontrast.models import model_logits
        from scalecontrast.models.layers import resize

        logits = model_logits(self.model((image - self.mean) / self.std))[0]
        return resize(logits, image.shape[-2:])


def export_onnx(
    module: SegmentationModule,
    path: str | Path,
    *,
    sample_size: Sequence[int] = (256, 320),
    opset: int = 18,
    dynamo: bool | None = None,
) -> Path:
    """Write the inference graph of ``module`` to ``path`` with dynamic batch, height and width.

    Input ``image`` float32 ``(B, 3, H, W)`` in [0, 1]; output ``logits`` ``(B, K, H, W)``.
    The TorchDynamo exporter is tried first, then the TorchScript one (``dynamo`` forces one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = InferenceModel(module).eval().cpu()
    x = torch.rand(1, 3, int(sample_size[0]), int(sample_size[1]))
    errors = []
    for use_dynamo in ([dynamo] if dynamo is not None else [True, False]):
        try:
            if use_dynamo:
                dim = torch.export.Dim
                shapes = {"image": {0: dim("batch", min=1, max=1024), 2: dim("height", min=32, max=8192),
                                    3: dim("width", min=32, max=8192)}}
                prog = torch.onnx.export(net, (x,), None, input_names=["image"], output_names=["logits"],
                                         dynamic_shapes=shapes, opset_version=opset, dynamo=True,
                                         verbose=False)
                prog.save(str(path))
                if not _has_dynamic_hw(path):
                    raise RuntimeError("the exporter specialised height/width to the example size")
            else:
                axes = {"image": {0: "batch", 2: "height", 3: "width"},
                        "logits": {0: "batch", 2: "height", 3: "width"}}
                torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["logits"],
                                  dynamic_axes=axes, opset_version=min(opset, 17), dynamo=False)
            return path
        except Exception as err:  # noqa: BLE001 - fall back to the other exporter, report both
            errors.append(f"{'dynamo' if use_dynamo else 'torchscript'}: {type(err).__name__}: {err}")
    raise RuntimeError("ONNX export failed:\n" + "\n".join(e[:2000] for e in errors))


def _has_dynamic_hw(path: str | Path) -> bool:
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return len(dims) == 4 and all(d.dim_param and not d.dim_value for d in dims[2:])


@torch.no_grad()
def check_onnx(
    path: str | Path,
    module: SegmentationModule,
    sizes: Sequence[Sequence[int]] = ((256, 320), (200, 288)),
    *,
    atol: float = 1e-3,
    rtol: float = 1e-3,
) -> float:
    """Run the ONNX file with onnxruntime and PyTorch on random images of ``sizes``; returns the
    largest absolute difference of the logits and raises if it exceeds the tolerance."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    net = InferenceModel(module).eval().cpu()
    worst = 0.0
    gen = torch.Generator().manual_seed(0)
    for h, w in sizes:
        x = torch.rand(1, 3, int(h), int(w), generator=gen)
        ref = net(x).numpy()
        out = sess.run(["logits"], {"image": x.numpy()})[0]
        if out.shape != ref.shape:
            raise AssertionError(f"ONNX output shape {out.shape} != PyTorch {ref.shape} for input {h}x{w}")
        diff = float(np.abs(out - ref).max())
        worst = max(worst, diff)
        if not np.allclose(out, ref, atol=atol, rtol=rtol):
            raise AssertionError(f"ONNX and PyTorch differ by up to {diff:.3g} at input {h}x{w}")
    return worst
