"""The contrastive losses against the naive formulas of docs/method.md, plus sampler properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from naive import dense_contrastive, naive_contrastive, naive_per_image

from scalecontrast.losses import MultiScaleContrastiveLoss, contrastive_loss, sample_anchors
from scalecontrast.losses import contrastive as contrastive_module


def _random_set(n: int, c: int, k: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, c, generator=g, dtype=dtype)
    labels = torch.randint(0, k, (n,), generator=g)
    return feats, labels


def _grad(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    value = fn(*leaves)
    grads = torch.autograd.grad(value, leaves, allow_unused=True)
    return value.detach(), grads


@pytest.mark.parametrize("temperature", [0.1, 0.5, 0.01])
@pytest.mark.parametrize("seed", [0, 1])
def test_within_set_matches_naive(temperature, seed):
    feats, labels = _random_set(40, 8, 4, seed)
    ours, (g_ours,) = _grad(lambda f: contrastive_loss(f, labels, temperature=temperature), feats)
    ref, (g_ref,) = _grad(lambda f: naive_contrastive(f, labels, temperature=temperature), feats)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("temperature", [0.1, 0.07, 0.02])
def test_cross_set_matches_naive(temperature):
    feats, labels = _random_set(30, 6, 5, 2)
    other, other_labels = _random_set(45, 6, 4, 3)  # class 4 has no positive in the contrast set
    ours, g_ours = _grad(
        lambda a, b: contrastive_loss(
            a, labels, contrast_feats=b, contrast_labels=other_labels, temperature=temperature
        ),
        feats,
        other,
    )
    ref, g_ref = _grad(
        lambda a, b: naive_contrastive(a, labels, b, other_labels, temperature=temperature), feats, other
    )
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_many_chunks_match_naive(monkeypatch):
    monkeypatch.setattr(contrastive_module, "CHUNK_ELEMENTS", 64)  # 1-2 rows per chunk
    feats, labels = _random_set(50, 4, 3, 4)
    ours, (g_ours,) = _grad(lambda f: contrastive_loss(f, labels), feats)
    ref, (g_ref,) = _grad(lambda f: naive_contrastive(f, labels), feats)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("temperature", [0.1, 0.01])
@pytest.mark.parametrize("reduction", ["positive", "all"])
@pytest.mark.parametrize("same", [True, False])
def test_chunks_spanning_labels_match_naive(monkeypatch, temperature, reduction, same):
    monkeypatch.setattr(contrastive_module, "CHUNK_ELEMENTS", 7 * 60)  # 7 rows of 60 columns per chunk
    g = torch.Generator().manual_seed(8)
    feats = torch.randn(60, 5, generator=g, dtype=torch.float64)
    labels = torch.cat([torch.randint(0, 6, (50,), generator=g), torch.tensor([9] * 9 + [11])])
    if same:  # singletons (label 11) have no positive; unequal class sizes pad the positive blocks
        inputs, others, o_labels, self_index = (feats,), None, None, torch.arange(60)
    else:
        others = torch.randn(60, 5, generator=g, dtype=torch.float64)
        o_labels = torch.randint(0, 4, (60,), generator=g)  # labels 4, 5, 9, 11: no positive
        inputs, self_index = (feats, others), None

    def ours_fn(a, b=None):
        b = a if b is None else b
        return contrastive_module.contrast(a, labels, b, labels if o_labels is None else o_labels,
                                           temperature=temperature, self_index=self_index, reduction=reduction)

    def ref_fn(a, b=None):
        return naive_contrastive(a, labels, b, o_labels, temperature=temperature, reduction=reduction)

    ours, g_ours = _grad(ours_fn, *inputs)
    ref, g_ref = _grad(ref_fn, *inputs)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("temperature", [0.1, 0.01, 0.004])
def test_fp32_with_duplicated_positives_stays_close_to_fp64(temperature):
    # each anchor has an identical twin (s_ij = 1/tau, far above its negatives) and ordinary positives
    feats, labels = _random_set(40, 8, 4, 9)
    feats, labels = torch.cat([feats, feats[:10]]), torch.cat([labels, labels[:10]])
    ours, (g_ours,) = _grad(lambda f: contrastive_loss(f, labels, temperature=temperature), feats.float())
    ref, (g_ref,) = _grad(lambda f: naive_contrastive(f, labels, temperature=temperature), feats)
    assert torch.isfinite(g_ours).all()
    torch.testing.assert_close(ours.double(), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_ours.double(), g_ref, rtol=1e-3, atol=1e-4 * g_ref.abs().max().item())


def test_gradcheck():
    feats, labels = _random_set(12, 3, 3, 5)
    feats.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: contrastive_loss(f, labels, temperature=0.3), (feats,))


def test_dense_baseline_agrees():
    feats, labels = _random_set(64, 16, 5, 6, dtype=torch.float32)
    torch.testing.assert_close(contrastive_loss(feats, labels), dense_contrastive(feats, labels))


def test_degenerate_sets_give_finite_values_with_graph():
    feats = torch.randn(6, 4, requires_grad=True)
    # every anchor alone in its class: no positive anywhere -> zero that keeps the graph
    loss = contrastive_loss(feats, torch.arange(6))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(feats.grad, torch.zeros_like(feats))
    # one class only: positives but no negatives -> every term is s - log(exp(s)) = 0
    loss = contrastive_loss(feats, torch.zeros(6, dtype=torch.long))
    assert torch.isfinite(loss) and abs(loss.item()) < 1e-6
    # empty set
    empty = torch.zeros(0, 4, requires_grad=True)
    loss = contrastive_loss(empty, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0


def test_mismatched_inputs_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        contrastive_loss(torch.randn(5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="same embedding size"):
        contrastive_loss(
            torch.randn(5, 3), torch.zeros(5, dtype=torch.long),
            contrast_feats=torch.randn(4, 2), contrast_labels=torch.zeros(4, dtype=torch.long),
        )
    with pytest.raises(ValueError, match="together"):
        contrastive_loss(torch.randn(5, 3), torch.zeros(5, dtype=torch.long), contrast_feats=torch.randn(4, 3))
    loss_fn = MultiScaleContrastiveLoss()
    with pytest.raises(ValueError, match=r"\(2, 8, 4, 4\)"):
        loss_fn([torch.randn(2, 8, 4, 4), torch.randn(3, 8, 2, 2)], torch.zeros(2, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="scale_weights"):
        MultiScaleContrastiveLoss(scale_weights=(1.0,))(
            [torch.randn(2, 8, 4, 4)] * 2, torch.zeros(2, 8, 8, dtype=torch.long)
        )


def test_bf16_autocast_large_embeddings():
    feats, labels = _random_set(200, 32, 4, 7, dtype=torch.float32)
    big = (feats * 1e4).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        projected = big @ torch.eye(32)  # runs in bf16 under autocast
        assert projected.dtype == torch.bfloat16
        loss = contrastive_loss(projected, labels, temperature=0.01)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(big.grad).all()
    ref = naive_contrastive(projected.detach().double(), labels, temperature=0.01)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- sampler


def _position_embeddings(batch: int, h: int, w: int) -> torch.Tensor:
    """(B, 2, h, w) whose channels are the image index and the flat pixel index."""
    image = torch.arange(batch, dtype=torch.float64).view(batch, 1, 1).expand(batch, h, w)
    pixel = torch.arange(h * w, dtype=torch.float64).view(1, h, w).expand(batch, h, w)
    return torch.stack([image, pixel], 1)


def test_sampler_properties():
    g = torch.Generator().manual_seed(0)
    batch, h, w = 3, 12, 10
    labels = torch.randint(0, 6, (batch, h, w), generator=g)
    labels[labels == 5] = 255
    labels[0, :6] = 3  # one large class
    labels[2] = torch.where(labels[2] == 4, 1, labels[2])
    min_views, max_views = 5, 7
    feats, pair_labels = sample_anchors(
        _position_embeddings(batch, h, w), labels, min_views=min_views, max_views=max_views, generator=g
    )
    counts = {
        (b, k): int((labels[b] == k).sum()) for b in range(batch) for k in range(5) if (labels[b] == k).sum()
    }
    valid = sorted(p for p, c in counts.items() if c >= min_views)
    expected_views = min(min(counts[p] for p in valid), max_views, 10000 // len(valid))
    assert feats.shape == (len(valid), expected_views, 2)
    assert pair_labels.tolist() == [k for _, k in valid]
    flat = labels.reshape(batch, -1)
    for (b, k), views in zip(valid, feats):
        assert (views[:, 0] == b).all()
        pixels = views[:, 1].long()
        assert len(set(pixels.tolist())) == len(pixels)  # without replacement
        assert (flat[b, pixels] == k).all()  # every view belongs to its anchor's class; never ignore


def test_sampler_is_reproducible_and_caps_total():
    labels = torch.randint(0, 4, (2, 32, 32), generator=torch.Generator().manual_seed(0))
    emb = _position_embeddings(2, 32, 32)
    a = sample_anchors(emb, labels, generator=torch.Generator().manual_seed(3), max_total=40)
    b = sample_anchors(emb, labels, generator=torch.Generator().manual_seed(3), max_total=40)
    assert torch.equal(a[0], b[0])
    assert a[0].shape == (8, 5, 2)  # 8 pairs, V = 40 // 8
    many = sample_anchors(emb, labels, max_total=5, min_views=1)
    assert many[0].shape == (5, 1, 2)  # more pairs than max_total: 5 pairs kept, one view each


def test_sampler_downsamples_labels_by_nearest():
    labels = torch.arange(16).view(1, 4, 4) % 3
    emb = torch.randn(1, 2, 2, 2)
    feats, pair_labels = sample_anchors(emb, labels, min_views=1)
    nearest = F.interpolate(labels[:, None].float(), size=(2, 2), mode="nearest").long().flatten()
    assert pair_labels.tolist() == sorted(set(nearest.tolist()))
    assert labels[0, ::2, ::2].flatten().tolist() == nearest.tolist()  # the top-left pixel of each cell


def test_sampler_keeps_highest_class_without_ignore():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 4:] = 2  # classes 0 and 2, no ignore pixel at all
    _, pair_labels = sample_anchors(torch.randn(1, 3, 8, 8), labels)
    assert pair_labels.tolist() == [0, 2]


def test_sampler_degenerate_batches():
    emb = torch.randn(2, 3, 8, 8, requires_grad=True)
    feats, labs = sample_anchors(emb, torch.full((2, 8, 8), 255))
    assert feats.shape == (0, 0, 3) and labs.shape == (0,)
    feats, labs = sample_anchors(emb, torch.zeros(2, 8, 8, dtype=torch.long))
    assert feats.shape == (2, 64, 3) and labs.tolist() == [0, 0]
    one = torch.full((2, 8, 8), 255)
    one[0, 0, 0] = 1
    feats, labs = sample_anchors(emb, one, min_views=1)
    assert feats.shape == (1, 1, 3)


def _hard_mining_case():
    """Three pairs with V = 10 views: plenty of both kinds, too few hard, too few easy."""
    labels = torch.full((2, 12, 10), 255)
    labels[0, :4] = 0  # 40 pixels, 10 mispredicted
    labels[0, 4:6] = 1  # 20 pixels, 2 mispredicted
    labels[1, :2] = 2  # 20 pixels, 19 mispredicted
    predictions = labels.clone()
    predictions[0, 0] = 5
    predictions[0, 4, :2] = 0
    predictions[1, :2] = 7
    predictions[1, 1, 9] = 2
    return labels, predictions


def _hard_counts(feats, labels, predictions):
    flat = predictions.reshape(2, -1)
    counts = []
    for views in feats:
        b, pixels = int(views[0, 0]), views[:, 1].long()
        assert len(set(pixels.tolist())) == len(pixels)
        counts.append(int((flat[b, pixels] != labels.reshape(2, -1)[b, pixels]).sum()))
    return counts


@pytest.mark.parametrize(("fraction", "expected"), [(0.3, [3, 2, 9]), (0.5, [5, 2, 9]), (0.04, [0, 0, 9]),
                                                    (0.06, [1, 1, 9]), (1.0, [10, 2, 10])])
def test_hard_anchor_quota_and_fill_up(fraction, expected):
    labels, predictions = _hard_mining_case()
    emb = _position_embeddings(2, 12, 10)
    # labels at 2x and predictions at 4x the map's resolution: both resized by nearest
    big_labels = labels.repeat_interleave(2, 1).repeat_interleave(2, 2)
    big_predictions = predictions.repeat_interleave(4, 1).repeat_interleave(4, 2)
    feats, pair_labels = sample_anchors(emb, big_labels, max_views=10, predictions=big_predictions,
                                        hard_fraction=fraction, generator=torch.Generator().manual_seed(0))
    assert feats.shape == (3, 10, 2) and pair_labels.tolist() == [0, 1, 2]
    flat = labels.reshape(2, -1)
    for (b, k), views in zip([(0, 0), (0, 1), (1, 2)], feats):
        assert (views[:, 0] == b).all() and (flat[b, views[:, 1].long()] == k).all()
    # round(fraction * V) hard views, a shortfall of hard (pair 2) or easy (pair 3: 1 easy pixel) filled up
    assert _hard_counts(feats, labels, predictions) == expected


def test_hard_anchors_are_reproducible_and_off_at_zero():
    labels, predictions = _hard_mining_case()
    emb = _position_embeddings(2, 12, 10)

    def draw(seed, **kw):
        return sample_anchors(emb, labels, max_views=10, generator=torch.Generator().manual_seed(seed), **kw)[0]

    assert torch.equal(draw(1, predictions=predictions, hard_fraction=0.3),
                       draw(1, predictions=predictions, hard_fraction=0.3))
    assert not torch.equal(draw(1, predictions=predictions, hard_fraction=0.3),
                           draw(2, predictions=predictions, hard_fraction=0.3))
    # hard_fraction=0: exactly the plain sampler's draws, whatever the predictions
    for seed in range(3):
        assert torch.equal(draw(seed, predictions=predictions, hard_fraction=0.0), draw(seed))
    # every pixel of a kind is eventually drawn (uniform within a kind, not a fixed subset)
    seen = set()
    for seed in range(30):
        views = draw(seed, predictions=predictions, hard_fraction=0.3)[0]
        seen |= set(views[:, 1].long().tolist())
    assert seen == set(range(40))
    with pytest.raises(ValueError, match="predictions"):
        sample_anchors(emb, labels, hard_fraction=0.5)
    with pytest.raises(ValueError, match="hard_fraction"):
        sample_anchors(emb, labels, predictions=predictions, hard_fraction=1.5)


# ----------------------------------------------------------------------------- multi-scale


def _balanced_labels(batch: int, size: int, coarse: int, seed: int) -> torch.Tensor:
    """Labels constant on a coarse grid, every class equally frequent in every image."""
    g = torch.Generator().manual_seed(seed)
    cells = coarse * coarse
    base = torch.arange(cells) % 4
    grids = torch.stack([base[torch.randperm(cells, generator=g)].view(coarse, coarse) for _ in range(batch)])
    factor = size // coarse
    return grids.repeat_interleave(factor, 1).repeat_interleave(factor, 2)


def _all_pixels(emb: torch.Tensor, labels: torch.Tensor):
    h, w = emb.shape[-2:]
    lab = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest").long().flatten()
    return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]), lab


@pytest.mark.parametrize("detach", [False, True])
def test_multiscale_total_matches_naive_when_every_pixel_is_sampled(detach):
    g = torch.Generator().manual_seed(0)
    labels = _balanced_labels(2, 8, 2, seed=1)
    embeddings = [torch.randn(2, 6, s, s, generator=g, dtype=torch.float64) for s in (8, 4, 2)]
    loss_fn = MultiScaleContrastiveLoss(
        min_views=1, cross_scale_temperature=0.2, cross_scale_weights=(1.0, 0.5), detach_low_res=detach
    )

    def naive(*embs):
        sets = [_all_pixels(e, labels) for e in embs]
        weights = (1.0, 0.7, 0.4)
        ms = sum(w * naive_contrastive(*sets[s], temperature=0.1) for s, w in enumerate(weights))
        low = [(f.detach() if detach else f, y) for f, y in sets]
        cs = naive_contrastive(*sets[0], *low[2], temperature=0.2) + 0.5 * naive_contrastive(
            *sets[0], *low[1], temperature=0.2
        )
        return ms + cs

    ours, g_ours = _grad(lambda *e: loss_fn(list(e), labels), *embeddings)
    ref, g_ref = _grad(naive, *embeddings)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


def test_per_image_contrast_matches_naive_when_every_pixel_is_sampled():
    g = torch.Generator().manual_seed(3)
    labels = _balanced_labels(3, 8, 2, seed=4)
    embeddings = [torch.randn(3, 5, s, s, generator=g, dtype=torch.float64) for s in (8, 4, 2)]
    loss_fn = MultiScaleContrastiveLoss(min_views=1, cross_image=False, cross_scale_weights=(1.0, 0.5))

    def naive(*embs):
        # every image holds the same number of anchors, so the weighted mean is the plain mean
        per_image = []
        for b in range(labels.shape[0]):
            sets = [_all_pixels(e[b : b + 1], labels[b : b + 1]) for e in embs]
            ms = sum(w * naive_contrastive(*sets[s], temperature=0.1) for s, w in enumerate((1.0, 0.7, 0.4)))
            cs = naive_contrastive(*sets[0], *sets[2], temperature=0.1) + 0.5 * naive_contrastive(
                *sets[0], *sets[1], temperature=0.1
            )
            per_image.append(ms + cs)
        return sum(per_image) / len(per_image)

    ours, g_ours = _grad(lambda *e: loss_fn(list(e), labels), *embeddings)
    ref, g_ref = _grad(naive, *embeddings)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
    # ... and differs from contrasting across the batch
    batch = MultiScaleContrastiveLoss(min_views=1, cross_scale_weights=(1.0, 0.5))(embeddings, labels)
    assert not torch.isclose(batch, ours)
    with pytest.raises(ValueError, match="cross_image"):
        MultiScaleContrastiveLoss(cross_image=False, gather_distributed=True)


@pytest.mark.parametrize("same", [True, False])
def test_per_image_term_matches_naive_with_unequal_images(same):
    from scalecontrast.losses.multiscale import _per_image

    g = torch.Generator().manual_seed(7)
    images = torch.tensor([0] * 6 + [1] * 4 + [2] * 5)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 0, 1, 1, 4, 4])  # image 1 shows one class
    feats = torch.randn(15, 6, generator=g, dtype=torch.float64, requires_grad=True)
    if same:
        others, o_labels, o_images = feats, labels, images
    else:  # image 0's class 2 has no positive at low resolution; image 2 has no low-resolution pixel
        o_images = torch.tensor([0, 0, 0, 1, 1])
        o_labels = torch.tensor([0, 1, 5, 3, 3])
        others = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    args = (feats, labels, images, others, o_labels, o_images)
    ours = _per_image(*args, temperature=0.2, num_images=3)
    ref = naive_per_image(*args, temperature=0.2, same_set=same)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    inputs = [feats] if same else [feats, others]
    for a, b in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(ref, inputs)):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
    # a batch where no anchor has a negative in its own image gives a zero that keeps the graph
    flat = _per_image(feats, torch.zeros(15, dtype=torch.long), images, feats, torch.zeros(15, dtype=torch.long),
                      images, temperature=0.2, num_images=3)
    assert flat.item() == 0.0 and flat.requires_grad


def test_sampler_returns_image_index():
    labels = torch.zeros(3, 4, 4, dtype=torch.long)
    labels[1, :2] = 1
    labels[2] = 255
    feats, labs, images = sample_anchors(torch.randn(3, 2, 4, 4), labels, min_views=1, return_images=True)
    assert labs.tolist() == [0, 0, 1] and images.tolist() == [0, 1, 1]
    feats, labs, images = sample_anchors(torch.randn(3, 2, 4, 4), torch.full((3, 4, 4), 255), return_images=True)
    assert feats.shape == (0, 0, 2) and labs.shape == images.shape == (0,)


def test_projecting_only_sampled_rows_equals_projecting_every_pixel():
    from scalecontrast.losses import Projector

    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 4, (2, 16, 16), generator=g)
    labels[0, :3] = 255
    projectors = [Projector(c, 8).double() for c in (3, 5, 7)]
    trunks = [torch.randn(2, c, s, s, generator=g, dtype=torch.float64) for c, s in ((3, 16), (5, 8), (7, 4))]
    loss_fn = MultiScaleContrastiveLoss(min_views=2, max_views=6, max_total=40)
    params = [p for proj in projectors for p in proj[-1].parameters()]

    def run(lazy: bool):
        x = [t.clone().requires_grad_() for t in trunks]
        torch.manual_seed(0)
        if lazy:
            loss = loss_fn(x, labels, projections=[p.project_rows for p in projectors])
        else:
            loss = loss_fn([p[-1](t) for p, t in zip(projectors, x)], labels)
        grads = torch.autograd.grad(loss, x + params)
        return loss, grads

    (lazy, g_lazy), (full, g_full) = run(True), run(False)
    torch.testing.assert_close(lazy, full, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_lazy, g_full):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # an all-ignore batch still reaches the projections (zero gradients, not None)
    zero = loss_fn(trunks, torch.full((2, 16, 16), 255), projections=[p.project_rows for p in projectors])
    assert all(g is not None and not g.any() for g in torch.autograd.grad(zero, params))
    with pytest.raises(ValueError, match="projections"):
        loss_fn(trunks, labels, projections=[projectors[0].project_rows])


def test_return_terms_and_weights():
    labels = _balanced_labels(2, 16, 4, seed=2)
    embeddings = [torch.randn(2, 6, s, s) for s in (16, 8, 4, 2)]
    loss_fn = MultiScaleContrastiveLoss(min_views=1)
    terms = loss_fn(embeddings, labels, return_terms=True)
    counts = {f"{k}_{s}" for k in ("pairs", "anchors") for s in range(4)}
    assert set(terms) == {"loss", "scale_0", "scale_1", "scale_2", "scale_3", "cross_high_low", "cross_high_mid",
                          *counts}
    for s, size in enumerate((16, 8, 4, 2)):
        small = F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest").long()
        pair_counts = [int((small[b] == k).sum()) for b in range(2) for k in range(4) if (small[b] == k).any()]
        views = min(min(pair_counts), 2500, 10000 // len(pair_counts))
        assert terms[f"pairs_{s}"].item() == len(pair_counts)
        assert terms[f"anchors_{s}"].item() == len(pair_counts) * views
    assert all(not terms[k].requires_grad and terms[k].dtype == torch.float32 for k in counts)
    weighted = sum(w * terms[f"scale_{s}"] for s, w in enumerate((1.0, 0.7, 0.4, 0.1)))
    total = weighted + terms["cross_high_low"] + terms["cross_high_mid"]
    torch.testing.assert_close(terms["loss"].detach(), total)
    # single scale (the deepest), no cross-scale: only that map is sampled
    single = MultiScaleContrastiveLoss(scale_weights=(0, 0, 0, 1), cross_scale=False, min_views=1)
    terms = single(embeddings, labels, return_terms=True)
    assert set(terms) == {"loss", "scale_3", "pairs_3", "anchors_3"}
    # the cross-scale temperature is honoured
    hot = MultiScaleContrastiveLoss(min_views=1, scale_weights=(0, 0, 0, 0), cross_scale_temperature=0.5)
    cold = MultiScaleContrastiveLoss(min_views=1, scale_weights=(0, 0, 0, 0), cross_scale_temperature=0.05)
    assert not torch.isclose(hot(embeddings, labels), cold(embeddings, labels))


def test_multiscale_all_ignore_keeps_graph():
    embeddings = [torch.randn(2, 4, s, s, requires_grad=True) for s in (8, 4, 2)]
    loss = MultiScaleContrastiveLoss()(embeddings, torch.full((2, 16, 16), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert all(e.grad is not None and not e.grad.any() for e in embeddings)


def test_segmentation_loss_ce_and_aux():
    from scalecontrast.losses import SegmentationLoss

    logits = torch.randn(2, 3, 4, 4)
    aux = torch.randn(2, 3, 2, 2)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, 0] = 255
    out = SegmentationLoss(aux_weight=0.4)(logits, labels, aux)
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    up_aux = F.interpolate(aux, size=(8, 8), mode="bilinear", align_corners=False)
    ce = F.cross_entropy(up, labels, ignore_index=255)
    torch.testing.assert_close(out["ce"], ce)
    torch.testing.assert_close(out["loss"], ce + 0.4 * F.cross_entropy(up_aux, labels, ignore_index=255))
    assert set(SegmentationLoss()(logits, labels)) == {"loss", "ce"}


def test_fp16_embeddings_with_a_large_sum_stay_finite():
    embeddings = [torch.ones(2, 8, s, s, dtype=torch.float16, requires_grad=True) * 40 for s in (64, 32, 16)]
    labels = torch.randint(0, 3, (2, 64, 64), generator=torch.Generator().manual_seed(0))
    loss = MultiScaleContrastiveLoss()(embeddings, labels)
    assert torch.isfinite(loss)
    assert torch.isfinite(MultiScaleContrastiveLoss()(embeddings, torch.full((2, 64, 64), 255)))


def test_no_active_term_is_an_error():
    # a 3-map model with the 4-scale single-scale weights: the deepest weight is cut off
    embeddings = [torch.randn(2, 4, s, s) for s in (8, 4, 2)]
    with pytest.raises(ValueError, match="no contrastive term is active"):
        MultiScaleContrastiveLoss(scale_weights=(0, 0, 0, 1), cross_scale=False)(embeddings, torch.zeros(2, 8, 8))



def test_losses_import_no_other_layer():
    """losses is torch only: it never imports models, data, engine, viz or cli (absolute or relative)."""
    import ast
    from pathlib import Path

    import scalecontrast.losses as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert node.level <= 1, f"{path.name} imports from outside losses: {'.' * node.level}{module}"
                assert node.level == 1 or not module.startswith("scalecontrast.") or module.startswith(
                    "scalecontrast.losses"), f"{path.name} imports {module}"
            elif isinstance(node, ast.Import):
                assert all(not a.name.startswith("scalecontrast.") or a.name.startswith("scalecontrast.losses")
                           for a in node.names), path.name


@pytest.mark.parametrize("same", [True, False])
def test_contrast_mask_leaves_entries_out(monkeypatch, same):
    monkeypatch.setattr(contrastive_module, "CHUNK_ELEMENTS", 5 * 40)
    feats, labels = _random_set(30, 6, 4, 11)
    extra, extra_labels = _random_set(25, 6, 5, 12)
    mask = torch.rand(25, generator=torch.Generator().manual_seed(0)) < 0.5
    self_index = torch.arange(30) if same else None

    # within-set: the contrast set is the anchors + masked extras; cross-set: the masked extras only
    def ours_fn(a, b):
        if not same:
            return contrastive_module.contrast(a, labels, b, extra_labels, temperature=0.1, contrast_mask=mask)
        return contrastive_module.contrast(
            a, labels, torch.cat([a, b]), torch.cat([labels, extra_labels]), temperature=0.1,
            self_index=self_index, contrast_mask=torch.cat([torch.ones(30, dtype=torch.bool), mask]))

    def ref_fn(a, b):
        if not same:
            return naive_contrastive(a, labels, b[mask], extra_labels[mask], temperature=0.1)
        return naive_contrastive(a, labels, torch.cat([a, b[mask]]), torch.cat([labels, extra_labels[mask]]),
                                 temperature=0.1, self_index=self_index)

    ours, g_ours = _grad(ours_fn, feats, extra)
    ref, g_ref = _grad(ref_fn, feats, extra)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert not g_ours[1][~mask].any()
