"""Eval-mode models export to ONNX with dynamic batch/height/width and match PyTorch at other sizes."""

from __future__ import annotations

import warnings

import pytest
import torch

from scalecontrast.models import create_model


@pytest.mark.slow
@pytest.mark.parametrize(
    ("head", "backbone", "opts"),
    [
        ("upernet", "resnet18", {"channels": 32, "aux_channels": 16}),  # pyramid pooling at any size
        ("fpn", "tf_efficientnet_lite0", {"channels": 32, "seg_channels": 16}),  # TF "SAME" padding
    ],
    ids=["upernet-resnet18", "fpn-lite0"],
)
def test_onnx_dynamic_size(tmp_path, head, backbone, opts):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = create_model(head, backbone, 5, **opts).eval()
    path = tmp_path / "model.onnx"
    dims = {
        0: torch.export.Dim("batch", min=1, max=64),
        2: torch.export.Dim("height", min=32, max=4096),
        3: torch.export.Dim("width", min=32, max=4096),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 3, 64, 96),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"x": dims},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 96, 160), (3, 3, 128, 64), (1, 3, 100, 70)]:
        x = torch.randn(*shape)
        (got,) = session.run(["logits"], {"image": x.numpy()})  # the first output; aux and features follow
        with torch.no_grad():
            want = model(x).logits
        assert got.shape == tuple(want.shape) == (shape[0], 5, *shape[2:])
        torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)
