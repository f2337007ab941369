"""ContrastiveHead: projectors + loss beside the model; the last 1x1 conv on the sampled pixels only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scalecontrast.losses import ContrastiveHead, MultiScaleContrastiveLoss


def _inputs(seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (2, 16, 16), generator=g)
    labels[0, :3] = 255
    feats = [torch.randn(2, c, s, s, generator=g, dtype=torch.float64) for c, s in ((3, 16), (5, 8), (7, 4))]
    return feats, labels


def test_head_equals_the_loss_of_fully_projected_maps_fp64():
    feats, labels = _inputs()
    torch.manual_seed(0)
    head = ContrastiveHead([3, 5, 7], embed_dim=8, min_views=2, max_views=6, max_total=40).double()
    loss_fn = MultiScaleContrastiveLoss(min_views=2, max_views=6, max_total=40)
    head.eval()  # BN on running statistics so both paths see the same trunk outputs
    params = list(head.parameters())

    def run(sampled: bool):
        x = [f.clone().requires_grad_() for f in feats]
        torch.manual_seed(0)
        loss = head(x, labels) if sampled else loss_fn(head.project(x), labels)
        return loss, torch.autograd.grad(loss, x + params)

    (lazy, g_lazy), (full, g_full) = run(True), run(False)
    torch.testing.assert_close(lazy, full, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_lazy, g_full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_head_shapes_terms_and_errors():
    feats, labels = _inputs()
    head = ContrastiveHead([3, 5, 7], embed_dim=8, min_views=2).double()
    assert [tuple(e.shape) for e in head.project(feats)] == [(2, 8, 16, 16), (2, 8, 8, 8), (2, 8, 4, 4)]
    terms = head(feats, labels, return_terms=True)
    assert {"loss", "scale_0", "scale_1", "scale_2", "cross_high_low", "cross_high_mid"} <= set(terms)
    # an all-ignore batch is a zero loss that still reaches every projector parameter
    zero = head(feats, torch.full((2, 16, 16), 255))
    grads = torch.autograd.grad(zero, list(head.parameters()), allow_unused=True)
    assert float(zero.detach()) == 0 and all(g is not None and not g.any() for g in grads)
    with pytest.raises(ValueError, match="built for 3 feature maps"):
        head(feats[:2], labels)
    with pytest.raises(ValueError, match=r"channels \[3, 5, 7\]"):
        head([feats[0], feats[2], feats[1]], labels)
    with pytest.raises(ValueError, match="in_channels"):
        ContrastiveHead([])
    with pytest.raises(TypeError):
        ContrastiveHead([3], temperatur=0.2)  # a misspelled loss option is not swallowed


def test_head_is_not_part_of_the_model():
    from scalecontrast import ContrastiveHead as top_level
    from scalecontrast import create_model

    assert top_level is ContrastiveHead
    model = create_model("fpn", "resnet18", 3, channels=16, seg_channels=8)
    head = ContrastiveHead(model.feature_channels)
    assert not set(map(id, head.parameters())) & set(map(id, model.parameters()))
    assert all(isinstance(p[-1], nn.Conv2d) and p[-1].out_channels == 256 for p in head.projectors)
