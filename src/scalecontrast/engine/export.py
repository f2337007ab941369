"""A normalise-and-predict module and its ONNX export."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from scalecontrast.engine.module import SegmentationModule

__all__ = ["InferenceModel", "OnnxCheck", "check_onnx", "check_runs_at", "export_onnx", "input_dims"]


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


@torch.no_grad()
def check_runs_at(module: SegmentationModule, size: Sequence[int]) -> None:
    """Raise ``ValueError`` naming the size when the inference graph cannot run on one ``(3, h, w)`` image
    (a model that needs a larger input): an export traced there would fail with the model's own error."""
    h, w = int(size[0]), int(size[1])
    try:
        InferenceModel(module).eval()(torch.rand(1, 3, h, w))
    except Exception as err:  # noqa: BLE001 - any model's own error for a size it cannot take
        said = str(err).splitlines()[0][:200] if str(err) else ""
        raise ValueError(f"the model cannot run on a {h}x{w} image ({type(err).__name__}: {said})") from None


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


class OnnxCheck(NamedTuple):
    """What :func:`check_onnx` found: the largest logits difference where the graph ran, and whether it
    ran at batch 2 (``dynamic_batch``) and at every size tried (``dynamic_size``)."""

    max_diff: float
    dynamic_batch: bool
    dynamic_size: bool
    failures: list[str]


def input_dims(path: str | Path) -> list[int | str]:
    """The ONNX graph's input dimensions: an int where fixed, the symbol's name where dynamic."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]


@torch.no_grad()
def check_onnx(
    path: str | Path,
    module: SegmentationModule,
    sizes: Sequence[Sequence[int]] = ((256, 320), (200, 288)),
    *,
    batches: Sequence[int] = (1, 2),
    atol: float = 1e-3,
    rtol: float = 1e-3,
) -> OnnxCheck:
    """Run the ONNX file with onnxruntime and PyTorch on random images of every batch size in ``batches``
    at every size in ``sizes``. A run that onnxruntime refuses (a dimension fixed in the graph) is
    recorded in the result; logits that differ beyond the tolerance raise ``AssertionError``."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    net = InferenceModel(module).eval().cpu()
    worst = 0.0
    failures: list[str] = []
    ok_batch, ok_size = True, True
    gen = torch.Generator().manual_seed(0)
    for h, w in sizes:
        for b in batches:
            x = torch.rand(int(b), 3, int(h), int(w), generator=gen)
            ref = net(x).numpy()
            try:
                out = sess.run(["logits"], {"image": x.numpy()})[0]
            except Exception as err:  # noqa: BLE001 - onnxruntime's errors for a fixed dimension vary
                failures.append(f"batch {b} at {h}x{w}: {str(err).splitlines()[0][:160]}")
                if b != batches[0]:
                    ok_batch = False
                if (h, w) != tuple(sizes[0]):
                    ok_size = False
                continue
            if out.shape != ref.shape:
                raise AssertionError(f"ONNX output shape {out.shape} != PyTorch {ref.shape} for input {b}x3x{h}x{w}")
            diff = float(np.abs(out - ref).max())
            worst = max(worst, diff)
            if not np.allclose(out, ref, atol=atol, rtol=rtol):
                raise AssertionError(f"ONNX and PyTorch differ by up to {diff:.3g} at input {b}x3x{h}x{w}")
    return OnnxCheck(worst, ok_batch, ok_size, failures)
