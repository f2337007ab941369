"""MultiScaleContrastiveLoss options against the naive formulas (tests/naive.py) on the module's own samples."""

from __future__ import annotations

import pytest
import torch
from naive import naive_contrastive, naive_multiscale, naive_per_image

from scalecontrast.losses import MultiScaleContrastiveLoss, sample_anchors
from scalecontrast.losses.contrastive import contrast
from scalecontrast.losses.multiscale import _per_image


def _grad(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    value = fn(*leaves)
    grads = torch.autograd.grad(value, leaves, allow_unused=True)
    return value.detach(), grads


def _samples(loss_fn: MultiScaleContrastiveLoss, embeddings, labels, seed: int, **kw):
    """The samples the module draws with ``torch.Generator().manual_seed(seed)`` (every scale is sampled)."""
    g = torch.Generator().manual_seed(seed)
    sets = []
    for emb in embeddings:
        feats, labs, images = sample_anchors(
            emb, labels, ignore_index=loss_fn.ignore_index, min_views=loss_fn.min_views,
            max_views=loss_fn.max_views, max_total=loss_fn.max_total, generator=g, return_images=True, **kw)
        views = feats.shape[1]
        sets.append((feats.reshape(-1, emb.shape[1]), labs.repeat_interleave(views), images.repeat_interleave(views)))
    return sets


def _labels_with_a_fine_only_class(seed: int, batch: int = 2, size: int = 16) -> torch.Tensor:
    """Classes 0..3 at random, plus class 4 only on odd rows and columns: absent at every lower scale."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (batch, size, size), generator=g)
    labels[0, 1:8:2, 1:8:2] = 4  # 16 pixels of class 4 in image 0, never the top-left of a 2x2 cell
    labels[1, :2] = 255
    return labels


@pytest.mark.parametrize("reduction", ["all", "positive"])
@pytest.mark.parametrize("cross_image", [True, False])
def test_cross_scale_reduction_matches_naive_with_a_class_missing_at_low_res(reduction, cross_image):
    labels = _labels_with_a_fine_only_class(0)
    g = torch.Generator().manual_seed(1)
    embeddings = [torch.randn(2, 6, s, s, generator=g, dtype=torch.float64) for s in (16, 8, 4)]
    loss_fn = MultiScaleContrastiveLoss(min_views=3, max_views=12, cross_scale_weights=(1.0, 0.5),
                                        cross_scale_temperature=0.2, cross_scale_reduction=reduction,
                                        cross_image=cross_image)
    sets = _samples(loss_fn, embeddings, labels, seed=5)
    assert 4 in sets[0][1].tolist() and 4 not in sets[2][1].tolist() and 4 not in sets[1][1].tolist()

    def ours_fn(*e):
        return loss_fn(list(e), labels, generator=torch.Generator().manual_seed(5))

    def ref_fn(*e):
        return naive_multiscale(_samples(loss_fn, e, labels, seed=5), scale_weights=(1.0, 0.7, 0.4),
                                cross_weights=(1.0, 0.5), cross_temperature=0.2, reduction=reduction,
                                cross_image=cross_image)["loss"]

    ours, g_ours = _grad(ours_fn, *embeddings)
    ref, g_ref = _grad(ref_fn, *embeddings)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
    terms = loss_fn(embeddings, labels, generator=torch.Generator().manual_seed(5), return_terms=True)
    ref_terms = naive_multiscale(sets, scale_weights=(1.0, 0.7, 0.4), cross_weights=(1.0, 0.5),
                                 cross_temperature=0.2, reduction=reduction, cross_image=cross_image)
    for k in ("scale_0", "scale_1", "scale_2", "cross_high_low", "cross_high_mid"):
        torch.testing.assert_close(terms[k], ref_terms[k].detach(), rtol=1e-10, atol=1e-12)


def test_cross_scale_reductions_differ_by_the_share_of_anchors_with_a_positive():
    labels = _labels_with_a_fine_only_class(2)
    embeddings = [torch.randn(2, 6, s, s, dtype=torch.float64) for s in (16, 8)]
    terms = {}
    for reduction in ("all", "positive"):
        loss_fn = MultiScaleContrastiveLoss(scale_weights=(0.0, 0.0), min_views=3, cross_scale_reduction=reduction)
        terms[reduction] = loss_fn(embeddings, labels, generator=torch.Generator().manual_seed(0),
                                   return_terms=True)["cross_high_low"]
    high, low = _samples(loss_fn, embeddings, labels, seed=0)
    share = torch.isin(high[1], low[1]).double().mean()
    assert 0 < share < 1
    torch.testing.assert_close(terms["all"], terms["positive"] * share)
    with pytest.raises(ValueError, match="cross_scale_reduction"):
        MultiScaleContrastiveLoss(cross_scale_reduction="mean")


@pytest.mark.parametrize("same", [True, False])
def test_contrast_reduction_all_matches_naive(same):
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(30, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (30,), generator=g)
    others = torch.randn(25, 5, generator=g, dtype=torch.float64)
    other_labels = torch.randint(0, 3, (25,), generator=g)  # classes 3 and 4 have no positive
    if same:
        labels[0] = 7  # a singleton: no positive within the set

        def ours_fn(a):
            return contrast(a, labels, a, labels, temperature=0.2, self_index=torch.arange(30), reduction="all")

        def ref_fn(a):
            return naive_contrastive(a, labels, temperature=0.2, reduction="all")
        inputs = (feats,)
    else:
        def ours_fn(a, b):
            return contrast(a, labels, b, other_labels, temperature=0.2, reduction="all")

        def ref_fn(a, b):
            return naive_contrastive(a, labels, b, other_labels, temperature=0.2, reduction="all")
        inputs = (feats, others)
    ours, g_ours = _grad(ours_fn, *inputs)
    ref, g_ref = _grad(ref_fn, *inputs)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reduction", ["all", "positive"])
def test_per_image_reduction_matches_naive_with_unequal_images(reduction):
    g = torch.Generator().manual_seed(7)
    images = torch.tensor([0] * 6 + [1] * 4 + [2] * 5)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 0, 1, 1, 4, 4])
    feats = torch.randn(15, 6, generator=g, dtype=torch.float64)
    o_images = torch.tensor([0, 0, 0, 1, 1])
    o_labels = torch.tensor([0, 1, 5, 3, 3])
    others = torch.randn(5, 6, generator=g, dtype=torch.float64)

    def ours_fn(a, b):
        return _per_image(a, labels, images, b, o_labels, o_images, temperature=0.2, num_images=3,
                          reduction=reduction)

    def ref_fn(a, b):
        return naive_per_image(a, labels, images, b, o_labels, o_images, temperature=0.2, reduction=reduction)

    ours, g_ours = _grad(ours_fn, feats, others)
    ref, g_ref = _grad(ref_fn, feats, others)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


def test_hard_fraction_samples_as_sample_anchors_and_needs_predictions():
    labels = _labels_with_a_fine_only_class(3)
    g = torch.Generator().manual_seed(4)
    predictions = torch.where(torch.rand(labels.shape, generator=g) < 0.3, 0, labels)
    embeddings = [torch.randn(2, 6, s, s, generator=g, dtype=torch.float64) for s in (16, 8, 4)]
    loss_fn = MultiScaleContrastiveLoss(min_views=3, max_views=12, hard_fraction=0.5)
    ours = loss_fn(embeddings, labels, predictions=predictions, generator=torch.Generator().manual_seed(9))
    sets = _samples(loss_fn, embeddings, labels, seed=9, predictions=predictions, hard_fraction=0.5)
    ref = naive_multiscale(sets, scale_weights=(1.0, 0.7, 0.4))["loss"]
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    plain = MultiScaleContrastiveLoss(min_views=3, max_views=12)(
        embeddings, labels, generator=torch.Generator().manual_seed(9))
    assert not torch.isclose(ours, plain)
    with pytest.raises(ValueError, match="predictions"):
        loss_fn(embeddings, labels)
    with pytest.raises(ValueError, match="hard_fraction"):
        MultiScaleContrastiveLoss(hard_fraction=-0.1)
    # hard_fraction=0 ignores predictions
    zero = MultiScaleContrastiveLoss(min_views=3, max_views=12)(
        embeddings, labels, predictions=predictions, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(zero, plain, rtol=0, atol=0)
