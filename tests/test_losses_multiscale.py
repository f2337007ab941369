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


# ----------------------------------------------------------------------------- pixel memory


def test_pixel_memory_keeps_the_last_entries_of_each_class():
    from scalecontrast.losses.memory import PixelMemory

    memory = PixelMemory(num_classes=3, size=4)
    assert memory.dim == 0 and memory.contents()[2].sum() == 0
    pushed = {k: [] for k in range(3)}
    g = torch.Generator().manual_seed(0)
    for n in (3, 0, 6, 2, 9):
        feats = torch.randn(n, 5, generator=g, dtype=torch.float64)
        labels = torch.randint(0, 4, (n,), generator=g)  # label 3 is out of range: not stored
        memory.push(feats, labels)
        for f, y in zip(feats, labels.tolist()):
            if y < 3:
                pushed[y] = (pushed[y] + [torch.nn.functional.normalize(f, dim=0)])[-4:]
        feats_all, labels_all, filled = memory.contents()
        assert memory.count.tolist() == [len(pushed[k]) for k in range(3)]
        for k in range(3):
            stored = feats_all[filled & (labels_all == k)]
            expected = torch.stack(pushed[k]) if pushed[k] else stored
            # the same set of rows (ring order differs from push order)
            assert sorted(map(tuple, stored.tolist())) == sorted(map(tuple, expected.tolist()))
    assert memory.feats.dtype == torch.float64 and memory.dim == 5
    with pytest.raises(ValueError, match="5-d"):
        memory.push(torch.randn(2, 4), torch.zeros(2, dtype=torch.long))


def _memory_steps(loss_fn, n_steps: int, seed: int, dim: int = 6):
    g = torch.Generator().manual_seed(seed)
    steps = []
    for t in range(n_steps):
        labels = _labels_with_a_fine_only_class(seed + t)
        embeddings = [torch.randn(2, dim, s, s, generator=g, dtype=torch.float64) for s in (16, 8, 4)]
        steps.append((embeddings, labels, 100 + t))
    return steps


@pytest.mark.parametrize("chunk", [None, 6 * 50])
def test_memory_matches_naive_over_steps(monkeypatch, chunk):
    from scalecontrast.losses import contrastive as contrastive_module

    if chunk is not None:
        monkeypatch.setattr(contrastive_module, "CHUNK_ELEMENTS", chunk)
    size = 10
    loss_fn = MultiScaleContrastiveLoss(min_views=3, max_views=6, memory_size=size, num_classes=5,
                                        scale_weights=(1.0, 0.0, 0.4))
    queues = {s: {k: [] for k in range(5)} for s in (0, 2)}
    for step, (embeddings, labels, seed) in enumerate(_memory_steps(loss_fn, 4, seed=0)):
        def ours_fn(*e, labels=labels, seed=seed):
            return loss_fn(list(e), labels, generator=torch.Generator().manual_seed(seed))

        def ref_fn(*e, push=False, labels=labels, seed=seed):
            sets = _samples(loss_fn, e, labels, seed=seed)
            memory = [None] * 3
            for s, queue in queues.items():
                rows = [(f, k) for k in range(5) for f in queue[k]]
                if rows:
                    memory[s] = (torch.stack([f for f, _ in rows]), torch.tensor([k for _, k in rows]))
            if push:
                for s, queue in queues.items():
                    for f, y in zip(sets[s][0].detach(), sets[s][1].tolist()):
                        queue[y] = (queue[y] + [f])[-size:]
            return naive_multiscale(sets, scale_weights=(1.0, 0.0, 0.4), memory=memory)["loss"]

        ours, g_ours = _grad(ours_fn, *embeddings)
        ref, g_ref = _grad(ref_fn, *embeddings)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
        for a, b in zip(g_ours, g_ref):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
        ref_fn(*embeddings, push=True)
        counts = loss_fn.memory["0"].count.tolist()
        assert counts == [len(queues[0][k]) for k in range(5)]
        if step == 0:
            assert counts[4] > 0 and "1" not in loss_fn.memory  # no within-scale term at scale 1: no queue


def test_memory_state_dict_loads_strictly_into_a_fresh_loss():
    import io

    def make():
        return MultiScaleContrastiveLoss(min_views=3, max_views=6, memory_size=8, num_classes=5)

    filled = make()
    steps = _memory_steps(filled, 3, seed=1)
    for embeddings, labels, seed in steps[:2]:
        filled(embeddings, labels, generator=torch.Generator().manual_seed(seed))
    buffer = io.BytesIO()
    torch.save(filled.state_dict(), buffer)
    buffer.seek(0)
    fresh = make()
    fresh.load_state_dict(torch.load(buffer), strict=True)
    for key, value in filled.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    embeddings, labels, seed = steps[2]
    a = filled(embeddings, labels, generator=torch.Generator().manual_seed(seed))
    b = fresh(embeddings, labels, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)
    # a fresh loss without memory differs
    plain = MultiScaleContrastiveLoss(min_views=3, max_views=6)(embeddings, labels,
                                                                generator=torch.Generator().manual_seed(seed))
    assert not torch.isclose(a, plain)


def test_memory_options_and_modes():
    with pytest.raises(ValueError, match="num_classes"):
        MultiScaleContrastiveLoss(memory_size=10)
    with pytest.raises(ValueError, match="cross_image"):
        MultiScaleContrastiveLoss(memory_size=10, num_classes=3, cross_image=False)
    assert MultiScaleContrastiveLoss().state_dict() == {}  # no memory, no buffers (old checkpoints load)
    loss_fn = MultiScaleContrastiveLoss(min_views=3, memory_size=8, num_classes=5)
    embeddings, labels, seed = _memory_steps(loss_fn, 1, seed=2)[0]
    loss_fn.eval()
    loss_fn(embeddings, labels)
    assert loss_fn.memory["0"].dim == 0  # eval mode: nothing stored
    loss_fn.train()
    # the memory stores the projected rows
    proj = torch.nn.Linear(6, 3, bias=False).double()
    loss_fn(embeddings, labels, projections=[proj] * 3)
    assert loss_fn.memory["0"].dim == 3 and loss_fn.memory["0"].count.sum() > 0
    terms = loss_fn(embeddings, labels, projections=[proj] * 3, return_terms=True)
    assert {"memory_0", "memory_1", "memory_2", "pairs_0", "anchors_0"} <= set(terms)
    assert terms["memory_0"].item() == loss_fn.memory["0"].count.sum().item() > 0
    norms = loss_fn.memory["0"].feats.norm(dim=-1)
    filled = loss_fn.memory["0"].contents()[2].view(5, 8)
    torch.testing.assert_close(norms[filled], torch.ones_like(norms[filled]))
