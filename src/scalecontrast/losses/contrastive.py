"""Exact, memory-bounded supervised contrastive loss (docs/method.md, "Within-scale loss" and "Cross-scale loss").

For L2-normalised anchors ``z_i`` with labels ``y_i``, a contrast set ``{z_j}``, and
``s_ij = z_i . z_j / tau``::

    L = mean_i  -1/|P(i)| sum_{j in P(i)} ( s_ij - log( exp(s_ij) + sum_{k in Neg(i)} exp(s_ik) ) )

P(i) are the contrast entries with the anchor's label (itself excluded in the within-set
case), Neg(i) those with another label. With ``LN_i = log sum_{k in Neg(i)} exp(s_ik)`` each
term equals ``softplus(LN_i - s_ij)``, so

    dL/ds_ij = -sigmoid(LN_i - s_ij) / (R |P(i)|)             for j in P(i)
    dL/ds_ik =  A_i exp(s_ik - LN_i) / R,  A_i = sum_j sigmoid(LN_i - s_ij) / |P(i)|   for k in Neg(i)

where R is the number of anchors that have a positive (the others are left out of the mean;
``reduction="all"`` makes R all N anchors, those without a positive counting 0).
The contrast set is sorted by label, so an anchor's positives form one contiguous block.
The anchors that have a positive are sorted by label and processed in chunks of rows that may
span several labels; each chunk's ``(rows, M)`` similarity block is built once and the gradient
is formed in the same pass, which costs exactly three ``N x M x C`` matrix products in all and
never holds an ``N x M`` tensor (a chunk holds at most ``CHUNK_ELEMENTS`` similarities).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["contrastive_loss"]

# Elements of one chunk's similarity block (fp32: 16 MiB). Large enough for efficient
# matrix products, small enough to stay far below the dense N x N footprint.
CHUNK_ELEMENTS = 1 << 22
# For unit vectors |s| <= 1/tau, so with tau >= 0.025 every exp(s) lies in [e^-40, e^40]: finite and
# normal in fp32 (and sums of up to ~1e20 of them too), no shift needed. Below, each row is shifted
# by its own maximum over the negatives (the usual log-sum-exp stabilisation).
_STATIC_SHIFT_MIN_TEMPERATURE = 0.025
_LOG2E = 1.0 / math.log(2.0)
_LN2 = math.log(2.0)


def contrastive_loss(
    feats: Tensor,
    labels: Tensor,
    *,
    temperature: float = 0.1,
    contrast_feats: Tensor | None = None,
    contrast_labels: Tensor | None = None,
) -> Tensor:
    """Supervised contrastive loss with a positive-plus-negatives denominator.

    Args:
        feats: ``(N, C)`` anchor embeddings (L2-normalised inside), any float dtype.
        labels: ``(N,)`` integer labels.
        temperature: ``tau``.
        contrast_feats: ``(M, C)`` contrast set for the cross-set loss; ``None`` contrasts
            ``feats`` with itself (each anchor excluded from its own positives).
        contrast_labels: ``(M,)`` labels of the contrast set; required with ``contrast_feats``.

    Returns:
        Scalar loss (fp32 or fp64), the mean over anchors that have at least one positive;
        a zero that keeps the graph when no anchor has one.
    """
    _check_pair(feats, labels, "feats", "labels")
    if (contrast_feats is None) != (contrast_labels is None):
        raise ValueError("contrast_feats and contrast_labels must be given together")
    if contrast_feats is None:
        return contrast(feats, labels, feats, labels, temperature=temperature, self_index=_arange(labels))
    _check_pair(contrast_feats, contrast_labels, "contrast_feats", "contrast_labels")
    if contrast_feats.shape[1] != feats.shape[1]:
        raise ValueError(
            f"feats {tuple(feats.shape)} and contrast_feats {tuple(contrast_feats.shape)} "
            "must have the same embedding size"
        )
    return contrast(feats, labels, contrast_feats, contrast_labels, temperature=temperature)


def contrast(
    feats: Tensor,
    labels: Tensor,
    contrast_feats: Tensor,
    contrast_labels: Tensor,
    *,
    temperature: float,
    self_index: Tensor | None = None,
    reduction: Literal["positive", "all"] = "positive",
    contrast_mask: Tensor | None = None,
) -> Tensor:
    """Core of :func:`contrastive_loss` without argument checks.

    ``self_index`` (``(N,)``, optional) gives, for each anchor, its own position in the
    contrast set; that entry is excluded from the anchor's positives and negatives.
    ``reduction``: ``"positive"`` averages over the anchors that have a positive; ``"all"``
    over all ``N`` anchors, an anchor without a positive counting 0 (the official cross-scale
    reduction). ``contrast_mask`` (``(M,)`` bool, optional) leaves the contrast entries where it is
    False out entirely (e.g. the unfilled slots of a pixel memory), at no extra host sync.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if reduction not in ("positive", "all"):
        raise ValueError(f"reduction must be 'positive' or 'all', got {reduction!r}")
    dtype = torch.promote_types(feats.dtype, torch.float32)
    same = contrast_feats is feats and self_index is not None and contrast_mask is None
    with torch.autocast(device_type=feats.device.type, enabled=False):
        return _ChunkedContrast.apply(
            feats.to(dtype), None if same else contrast_feats.to(dtype), labels.long(), contrast_labels.long(),
            self_index, float(temperature), reduction == "all", contrast_mask,
        )


class _ChunkedContrast(torch.autograd.Function):
    """L2 normalisation, loss value and gradient in one chunked pass; backward only scales the
    saved gradient. ``xb=None``: the contrast set is ``xa`` itself (one combined gradient)."""

    @staticmethod
    def forward(ctx, xa: Tensor, xb: Tensor | None, ya: Tensor, yb: Tensor, self_index, tau: float,
                over_all: bool, mask_b: Tensor | None) -> Tensor:
        need_a = ctx.needs_input_grad[0]
        need_b = xb is not None and ctx.needs_input_grad[1]
        za, norm_a = _normalize(xa)
        zb, norm_b = (za, norm_a) if xb is None else _normalize(xb)
        loss, grad_a, grad_b = _loss_and_grads(za, ya, zb, yb, self_index, tau, need_a, need_b, over_all, mask_b,
                                               same=xb is None)
        # the gradient w.r.t. the raw inputs, through the normalisation, is formed here already
        grad_a = _normalize_backward(grad_a, za, norm_a) if need_a else None
        grad_b = _normalize_backward(grad_b, zb, norm_b) if need_b else None
        ctx.save_for_backward(grad_a, grad_b)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        grad_a, grad_b = ctx.saved_tensors
        return (
            grad_a * grad_out if grad_a is not None else None,
            grad_b * grad_out if grad_b is not None else None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


_NORM_EPS = 1e-12  # as F.normalize


def _normalize(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x / max(||x||, eps)`` row-wise (as ``F.normalize``) and the clamped norms ``(N, 1)``."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(_NORM_EPS)
    return x / norm, norm


def _normalize_backward(grad: Tensor, z: Tensor, norm: Tensor) -> Tensor:
    """Gradient w.r.t. ``x`` from the gradient w.r.t. ``z = x / max(||x||, eps)`` (in place on ``grad``)."""
    dot = (grad * z).sum(1, keepdim=True)
    dot = torch.where(norm > _NORM_EPS, dot, 0.0)  # a clamped norm is a constant
    return grad.addcmul_(z, dot, value=-1.0).div_(norm)


def _loss_and_grads(
    za: Tensor,
    ya: Tensor,
    zb: Tensor,
    yb: Tensor,
    self_index: Tensor | None,
    tau: float,
    need_a: bool,
    need_b: bool,
    over_all: bool = False,
    mask_b: Tensor | None = None,
    same: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Loss and its gradients w.r.t. the normalised ``za (N, C)`` and ``zb (M, C)``.

    The mean runs over the anchors with a positive, or over all ``N`` anchors with ``over_all``.
    Contrast entries where ``mask_b (M,)`` is False are left out. ``same``: ``zb`` is ``za`` (and
    ``yb`` is ``ya``, ``self_index`` is ``arange(N)``); the one gradient, w.r.t. both roles, comes
    back as the first. One host sync
    (the number of anchors with a positive, each chunk's widest positive block and the number of
    contrast entries).
    """
    n_a, n_b, dim = za.shape[0], zb.shape[0], za.shape[1]
    need_b = need_b and not same
    zero = za.new_zeros(())
    if n_a == 0 or n_b == 0:
        return zero, za.new_zeros(za.shape) if need_a else None, zb.new_zeros(zb.shape) if need_b else None

    # Sort the contrast set by label: the positives of an anchor are then one block of columns
    # [start, start + block). Anchors with a positive come first, in label order; the others have
    # a loss and a gradient of 0 and are never computed.
    if mask_b is not None:  # masked entries sort last, behind every label
        yb = torch.where(mask_b, yb, torch.iinfo(yb.dtype).max)
    yb_sorted, order_b = torch.sort(yb, stable=True)
    has_self = 1 if self_index is not None else 0
    start = torch.searchsorted(yb_sorted, ya, side="left")
    block = torch.searchsorted(yb_sorted, ya, side="right") - start  # (N,) incl. the anchor itself
    keep = block > has_self
    by_label = order_b if same else torch.sort(ya, stable=True).indices
    order_a = by_label[torch.sort((~keep[by_label]).to(torch.uint8), stable=True).indices]
    # Chunks of `size` rows in this order (sized for all N anchors and all M entries, before the
    # sync); the widest positive block of each chunk sizes its (rows, P) positive tensors.
    n_chunks = math.ceil(n_a / max(1, CHUNK_ELEMENTS // n_b))
    size = math.ceil(n_a / n_chunks)
    widths = torch.where(keep, block, 0)[order_a]
    widths = torch.cat([widths, widths.new_zeros(n_chunks * size - n_a)]).view(n_chunks, size).amax(1)
    plan = [keep.sum()[None], widths] + ([mask_b.sum()[None]] if mask_b is not None else [])
    plan = torch.cat(plan).tolist()  # the host sync
    n_kept, widths = plan[0], plan[1 : n_chunks + 1]
    n_used = plan[-1] if mask_b is not None else n_b
    if n_kept == 0:
        return zero, za.new_zeros(za.shape) if need_a else None, zb.new_zeros(zb.shape) if need_b else None
    n_mean = n_a if over_all else n_kept

    rows_a = order_a[:n_kept]  # anchors with a positive, sorted by label
    start, block = start[rows_a], block[rows_a]  # (R,)
    inv_pos = (block - has_self).to(za.dtype).reciprocal_()[:, None]  # (R, 1) 1 / |P(i)|
    # With a set contrasted with itself and every anchor kept, the anchors' order is the contrast
    # set's (by_label is order_b): anchor row r is contrast column r, no permutation needed.
    aligned = same and n_kept == n_a
    if has_self or same or need_b:  # position of each contrast entry in the sorted set (n_used: left out)
        rank_b = _inverse(order_b).clamp_(max=n_used)
    order_b = order_b[:n_used]
    if aligned:
        own_col = torch.arange(n_kept, device=za.device)  # (R,) each anchor's own column
    elif same:
        own_col = rank_b[rows_a]
    if has_self:
        self_col = own_col if same else rank_b[self_index[rows_a]]
        self_slot = (self_col - start)[:, None]  # (R, 1) the anchor's own slot in its block
    inv_tau = 1.0 / tau
    # Similarities are formed in base 2, s_ij log2(e), since exp2 is several times faster than exp
    # on CPUs (torch's vectorised exp2 is as accurate: ~1 ulp).
    q_scale = inv_tau * _LOG2E
    zb_s = zb.index_select(0, order_b)  # (M', C) sorted by label
    qa = zb_s * q_scale if aligned else za.index_select(0, rows_a).mul_(q_scale)  # (R, C) z / tau * log2(e)
    static_shift = tau >= _STATIC_SHIFT_MIN_TEMPERATURE
    tiny = torch.finfo(za.dtype).tiny
    slots_all = torch.arange(max(widths), device=za.device)
    # Gradients in sorted order, plus a zero row for the entries that take no part: the contrast
    # set's (also the anchors' when `same`) in grad_s, the anchors' in grad_r.
    grad_s = grad_r = None
    if (same and need_a) or need_b:
        grad_s = zb.new_empty(n_used + 1 if n_used < n_b else n_b, dim)
        if n_used < n_b:
            grad_s[n_used] = 0
    if need_a and not same:
        grad_r = za.new_empty(n_kept + 1 if n_kept < n_a else n_a, dim)
        if n_kept < n_a:
            grad_r[n_kept] = 0
    total = za.new_zeros(())
    for chunk, lo in enumerate(range(0, n_kept, size)):
        hi = min(lo + size, n_kept)
        slots = slots_all[: widths[chunk]]
        q = qa[lo:hi]  # (c, C)
        blk = block[lo:hi, None]  # (c, 1)
        slot = torch.minimum(slots, blk - 1)  # (c, P): slots past a block repeat its last one
        cols = slot + start[lo:hi, None]  # (c, P) columns of the positives
        sim = q @ zb_s.T  # (c, M): s_ij log2(e)
        pos = sim.gather(1, cols)  # (c, P) positives (and self), base 2
        sim.scatter_(1, cols, float("-inf"))  # keep only the negatives
        if static_shift:  # |s| <= 1/tau <= 40: exp(s) = 2^(s log2 e) is finite and normal in fp32, no shift
            shift = None
        else:
            shift = sim.amax(1, keepdim=True)
            shift = torch.where(torch.isfinite(shift), shift, 0.0)
            sim.sub_(shift)
        exp_sim = sim.exp2_()  # (c, M) exp(s_ik - shift) on the negatives, 0 on the positives
        neg_sum = exp_sim.sum(1, keepdim=True)  # (c, 1)
        margin = torch.log(neg_sum)  # LN_i (minus the shift); -inf when there is no negative
        if shift is not None:
            margin = margin.add_(shift, alpha=_LN2)
        margin = torch.sub(margin, pos, alpha=_LN2)  # (c, P) LN_i - s_ij
        margin.masked_fill_(slots >= blk, float("-inf"))  # softplus/sigmoid(-inf) = 0
        if has_self:
            margin.scatter_(1, self_slot[lo:hi], float("-inf"))
        sig = torch.sigmoid(margin)  # (c, P), 0 on padding and self
        # softplus(m) = relu(m) - log(sigmoid(|m|)), sigmoid(|m|) = max(sig, 1 - sig): finite for
        # any m (F.softplus is scalar code on CPU)
        soft = torch.maximum(sig, 1.0 - sig).log_()
        soft = margin.clamp_min_(0.0).sub_(soft)  # margin is relu(m) from here on
        total = total + (soft.sum(1, keepdim=True) * inv_pos[lo:hi]).sum()
        if grad_s is None and grad_r is None:
            continue
        # dL/ds_ij = -sig_ij / (|P(i)| R) on the positives and coef_i exp_ik on the negatives,
        # coef_i = sum_j sig_ij / (|P(i)| R neg_sum_i). The positives' entries are written into the
        # exp block divided by coef_i (= -neg_sum_i sig_ij / sum_j sig_ij, bounded by neg_sum_i),
        # so that each gradient is one matrix product with that block, scaled by coef.
        sig_sum = sig.sum(1, keepdim=True)
        coef = (sig_sum * inv_pos[lo:hi]).div_(neg_sum.clamp_min(tiny)).mul_(1.0 / n_mean)  # (c, 1)
        sig.mul_(neg_sum.neg().div_(torch.where(sig_sum > 0, sig_sum, 1.0)))
        exp_sim.scatter_(1, cols, sig.gather(1, slot))
        if grad_s is not None:  # w.r.t. the contrast set: sum over this chunk's anchors
            if chunk == 0:
                torch.mm(exp_sim.T, q.mul_(coef * _LN2), out=grad_s[:n_used])  # q is not used again
            else:
                grad_s[:n_used].addmm_(exp_sim.T, q.mul_(coef * _LN2))
        if need_a:  # w.r.t. this chunk's anchors
            rows = exp_sim @ zb_s
            scale = coef * inv_tau
            if aligned:
                grad_s[lo:hi].addcmul_(rows, scale)
            elif same:
                grad_s.index_add_(0, own_col[lo:hi], rows.mul_(scale))
            else:
                torch.mul(rows, scale, out=grad_r[lo:hi])

    grad_a = grad_b = None
    if need_a:
        grad_a = grad_s.index_select(0, rank_b) if same else grad_r.index_select(
            0, _inverse(order_a).clamp_(max=n_kept))
    if need_b:
        grad_b = grad_s.index_select(0, rank_b)
    return total / n_mean, grad_a, grad_b


def _inverse(order: Tensor) -> Tensor:
    """The inverse of the permutation ``order (n,)``: ``inv[order[r]] = r``."""
    return torch.empty_like(order).scatter_(0, order, torch.arange(order.shape[0], device=order.device))


def _arange(labels: Tensor) -> Tensor:
    return torch.arange(labels.shape[0], device=labels.device)


def _check_pair(feats: Tensor, labels: Tensor, feats_name: str, labels_name: str) -> None:
    if feats.ndim != 2:
        raise ValueError(f"{feats_name} must have shape (N, C), got {tuple(feats.shape)}")
    if labels.ndim != 1 or labels.shape[0] != feats.shape[0]:
        raise ValueError(
            f"{labels_name} must have shape (N,) matching {feats_name} {tuple(feats.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    if not feats.is_floating_point():
        raise ValueError(f"{feats_name} must be a floating-point tensor, got {feats.dtype}")
