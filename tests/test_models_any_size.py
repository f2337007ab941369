"""Every head takes any input size: inputs padded to the backbone's multiple, outputs cropped back."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scalecontrast.models import create_model

K = 5
TINY_SWIN = {"embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 3, 6)}
HRNET_OCR = {"channels": 32, "key_channels": 16}


def build(head: str, backbone: str, opts: dict):
    if backbone.startswith("swin"):
        opts = {**opts, "backbone_kwargs": TINY_SWIN}
    torch.manual_seed(0)
    return create_model(head, backbone, K, **opts)


def test_pad_to_multiple_and_unpad():
    from scalecontrast.models.layers import pad_to_multiple, unpad

    x = torch.randn(1, 3, 64, 96)
    assert pad_to_multiple(x, 32) is x and pad_to_multiple(x, 1) is x  # no-op on multiples
    y = torch.randn(2, 3, 65, 97)
    p = pad_to_multiple(y, 32)
    assert p.shape == (2, 3, 96, 128)
    assert torch.equal(p[..., :65, :97], y) and p[..., 65:, :].abs().sum() == 0 and p[..., 97:].abs().sum() == 0
    assert unpad(p, (65, 97), (96, 128)).shape == y.shape
    assert unpad(torch.zeros(1, 1, 24, 32), (65, 97), (96, 128)).shape[-2:] == (17, 25)  # ceil(65/4), ceil(97/4)


@pytest.mark.parametrize(("head", "opts"), [("hrnet", {}), ("ocrnet", HRNET_OCR)], ids=["hrnet", "ocrnet"])
def test_hrnet_heads_any_size(head, opts):
    model = build(head, "hrnet_w18_small", opts).eval()
    with torch.no_grad():
        for size in [(520, 520), (360, 480), (375, 500), (512, 683)]:
            assert model(torch.randn(1, 3, *size)).logits.shape == (1, K, *size), size
        # Same numbers as running the padded image and cropping.
        x = torch.randn(1, 3, 75, 100)
        want = model(F.pad(x, (0, 28, 0, 21))).logits[..., :75, :100]
        torch.testing.assert_close(model(x).logits, want)
    assert model.backbone.size_multiple == 32
    model.train()
    x = torch.randn(1, 3, 75, 100)
    out = model(x)
    assert out.logits.shape == (1, K, 75, 100)
    assert out.aux_logits is None or out.aux_logits.shape == (1, K, 75, 100)
    # Maps cropped to the cells that see the image: labels downsampled to them stay aligned.
    want = [(math.ceil(75 / s), math.ceil(100 / s)) for s in (4, 8, 16, 32)]
    assert [tuple(e.shape[-2:]) for e in out.features] == want
    (out.logits.mean() + sum(e.mean() for e in out.features)).backward()


# (head, backbone, small head options)
OTHERS = [
    ("deeplabv3", "resnet18", {"channels": 16}),
    ("ocrnet", "resnet18", {"channels": 16, "key_channels": 8}),
    ("upernet", "swin_tiny_patch4_window7_224", {"channels": 16, "aux_channels": 8}),
    ("upernet", "resnet18", {"channels": 16, "aux_channels": 8}),
    ("upernet", "convnext_atto", {"channels": 16, "aux_channels": 8}),
    ("fpn", "tf_efficientnet_lite0", {"channels": 16, "seg_channels": 8}),
]


@pytest.mark.parametrize(("head", "backbone", "opts"), OTHERS, ids=lambda v: v if isinstance(v, str) else "")
def test_every_head_odd_size(head, backbone, opts):
    model = build(head, backbone, opts).train()
    size = (65, 99)
    out = model(torch.randn(2, 3, *size))  # batch 2: BatchNorm on UPerNet's 1x1 pooled branch
    assert out.logits.shape == (2, K, *size)
    assert out.aux_logits is None or out.aux_logits.shape == (2, K, *size)
    assert tuple(out.features[0].shape[-2:]) == (17, 25)  # ceil(size / 4)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 38, 45)).logits.shape == (1, K, 38, 45)
