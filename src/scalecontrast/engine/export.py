"""Inference from a checkpoint alone: loading, a normalise-and-predict module, ONNX export."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from scalecontrast.engine.module import SegmentationModule

__all__ = ["load_module", "InferenceModel", "export_onnx", "check_onnx"]


def load_module(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> SegmentationModule:
    """A :class:`SegmentationModule` rebuilt from a checkpoint's hyper-parameters and weights, in
    eval mode. Backbone weights are not fetched again (``pretrained=False``)."""
    module = SegmentationModule.load_from_checkpoint(str(ckpt_path), map_location=map_location,
                                                     pretrained=False, weights_only=False)
    return module.eval()


class InferenceModel(nn.Module):
    """``image (B, 3, H, W)`` RGB in [0, 1] -> logits ``(B, K, H, W)``: normalisation and the
    segmentation model only (no projectors, no auxiliary head)."""

    def __init__(self, module: SegmentationModule) -> None:
        super().__init__()
        self.model = copy.deepcopy(module.model)  # eval()/cpu() below must not touch the caller's model
        self.register_buffer("mean", module.pixel_mean.detach().clone())
        self.register_buffer("std", module.pixel_std.detach().clone())

    def forward(self, image: Tensor) -> Tensor:
        # scalecontrast models return logits at the input size already
        return self.model((image - self.mean) / self.std).logits


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
