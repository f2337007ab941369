"""Exact, memory-bounded supervised contrastive loss (DESIGN.md, method steps 3 and 5).

For L2-normalised anchors ``z_i`` with labels ``y_i``, a contrast set ``{z_j}``, and
``s_ij = z_i . z_j / tau``::

    L = mean_i  -1/|P(i)| sum_{j in P(i)} ( s_ij - log( exp(s_ij) + sum_{k in Neg(i)} exp(s_ik) ) )

P(i) are the contrast entries with the anchor's label (itself excluded in the within-set
case), Neg(i) those with another label. With ``LN_i = log sum_{k in Neg(i)} exp(s_ik)`` each
term equals ``softplus(LN_i - s_ij)``, so

    dL/ds_ij = -sigmoid(LN_i - s_ij) / (M |P(i)|)             for j in P(i)
    dL/ds_ik =  A_i exp(s_ik - LN_i) / M,  A_i = sum_j sigmoid(LN_i - s_ij) / |P(i)|   for k in Neg(i)

where M is the number of anchors that have a positive (the others are left out of the mean;
``reduction="all"`` makes M all anchors, those without a positive counting 0).
The contrast set is sorted by label, so an anchor's positives form one contiguous block.
Anchors are processed per label in chunks of rows; each chunk's ``(rows, N)`` similarity
block is built once and the gradient is formed in the same pass, which costs exactly three
``N x N x C`` matrix products in all and never holds an ``N x N`` tensor.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
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
) -> Tensor:
    """Core of :func:`contrastive_loss` without argument checks.

    ``self_index`` (``(N,)``, optional) gives, for each anchor, its own position in the
    contrast set; that entry is excluded from the anchor's positives and negatives.
    ``reduction``: ``"positive"`` averages over the anchors that have a positive; ``"all"``
    over all ``N`` anchors, an anchor without a positive counting 0 (the official cross-scale
    reduction).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if reduction not in ("positive", "all"):
        raise ValueError(f"reduction must be 'positive' or 'all', got {reduction!r}")
    dtype = torch.promote_types(feats.dtype, torch.float32)
    with torch.autocast(device_type=feats.device.type, enabled=False):
        anchors = F.normalize(feats.to(dtype), dim=1)
        others = anchors if contrast_feats is feats else F.normalize(contrast_feats.to(dtype), dim=1)
        return _ChunkedContrast.apply(
            anchors, others, labels.long(), contrast_labels.long(), self_index, float(temperature),
            reduction == "all",
        )


class _ChunkedContrast(torch.autograd.Function):
    """Loss value and gradient in one chunked pass; backward only scales the saved gradient."""

    @staticmethod
    def forward(ctx, za: Tensor, zb: Tensor, ya: Tensor, yb: Tensor, self_index, tau: float,
                over_all: bool) -> Tensor:
        need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        loss, grad_a, grad_b = _loss_and_grads(za, ya, zb, yb, self_index, tau, need_a, need_b, over_all)
        ctx.save_for_backward(grad_a, grad_b)
        ctx.has = (need_a, need_b)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        grad_a, grad_b = ctx.saved_tensors
        need_a, need_b = ctx.has
        return (
            grad_a * grad_out if need_a else None,
            grad_b * grad_out if need_b else None,
            None,
            None,
            None,
            None,
            None,
        )


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
) -> tuple[Tensor, Tensor, Tensor]:
    """Loss and its gradients w.r.t. the normalised ``za (N, C)`` and ``zb (M, C)``.

    The mean runs over the anchors with a positive, or over all ``N`` anchors with ``over_all``.
    """
    n_a, n_b = za.shape[0], zb.shape[0]
    need_grad = need_a or need_b
    grad_a = torch.zeros_like(za) if need_a else za.new_zeros(0)
    grad_b = torch.zeros_like(zb) if need_b else zb.new_zeros(0)
    zero = za.new_zeros(())
    if n_a == 0 or n_b == 0:
        return zero, grad_a, grad_b

    # Sort both sets by label: the positives of an anchor are then one block of columns.
    ya_sorted, order_a = torch.sort(ya, stable=True)
    yb_sorted, order_b = torch.sort(yb, stable=True)
    zb_s = zb[order_b]
    label_a, count_a = torch.unique_consecutive(ya_sorted, return_counts=True)
    block_start = torch.searchsorted(yb_sorted, label_a, side="left")
    block_end = torch.searchsorted(yb_sorted, label_a, side="right")
    if self_index is not None:
        rank_b = torch.empty_like(order_b)
        rank_b[order_b] = torch.arange(n_b, device=zb.device)
        self_pos = rank_b[self_index[order_a]]  # column of each sorted anchor in sorted zb
    plan = torch.stack([count_a, block_start, block_end]).tolist()  # one host sync: the chunk plan
    has_self = 1 if self_index is not None else 0
    n_anchors = sum(c for c, s, e in zip(*plan) if e - s - has_self > 0)
    if n_anchors == 0:
        return zero, grad_a, grad_b
    if over_all:
        n_anchors = n_a

    inv_tau = 1.0 / tau
    static_shift = tau >= _STATIC_SHIFT_MIN_TEMPERATURE
    max_rows = max(1, CHUNK_ELEMENTS // n_b)
    grad_a_s = torch.zeros_like(za) if need_a else None
    grad_b_s = torch.zeros_like(zb) if need_b else None
    total = za.new_zeros(())
    row = 0
    for count, start, end in zip(*plan):
        n_pos = end - start - has_self
        if n_pos <= 0:
            row += count
            continue
        n_chunks = math.ceil(count / max_rows)
        size = math.ceil(count / n_chunks)
        for lo in range(row, row + count, size):
            hi = min(lo + size, row + count)
            rows = order_a[lo:hi]
            q = za[rows] * inv_tau  # (c, C)
            sim = q @ zb_s.T  # (c, M): s_ij
            pos = sim[:, start:end].clone()  # (c, P) positives (and self)
            if static_shift:  # |s| <= 1/tau <= 40: exp(s) is finite and normal in fp32, no shift needed
                shift = None
            else:
                shift = _negative_max(sim, start, end)[:, None]
                sim.sub_(shift)
            exp_sim = sim.exp_()
            exp_sim[:, start:end] = 0  # keep only the negatives
            neg_sum = exp_sim.sum(1, keepdim=True)  # (c, 1) sum_k exp(s_ik - shift)
            log_neg = torch.log(neg_sum)  # LN_i (minus the shift); -inf when there is no negative
            if shift is not None:
                log_neg = log_neg + shift
            margin = log_neg - pos  # (c, P)
            if has_self:
                self_col = (self_pos[lo:hi] - start)[:, None]
                margin.scatter_(1, self_col, float("-inf"))  # softplus/sigmoid(-inf) = 0
            total = total + F.softplus(margin).sum() / n_pos
            if not need_grad:
                continue
            # dL/ds on the positives, and the row factor of the negatives' gradient: the
            # negatives' block of dL/ds is coef * exp_sim, applied to the small factors of the
            # matrix products so that no extra pass over the (c, M) block is needed.
            grad_pos = torch.sigmoid(margin).div_(-(n_pos * n_anchors))  # (c, P)
            coef = -grad_pos.sum(1, keepdim=True) / neg_sum.clamp_min(torch.finfo(sim.dtype).tiny)
            if need_a:
                grad_rows = (exp_sim @ zb_s).mul_(coef)
                grad_rows.addmm_(grad_pos, zb_s[start:end])
                grad_a_s[lo:hi] = grad_rows.mul_(inv_tau)
            if need_b:
                grad_b_s.addmm_(exp_sim.T, q * coef)
                grad_b_s[start:end].addmm_(grad_pos.T, q)
        row += count

    if need_a:
        grad_a[order_a] = grad_a_s
    if need_b:
        grad_b[order_b] = grad_b_s
    return total / n_anchors, grad_a, grad_b


def _negative_max(sim: Tensor, start: int, end: int) -> Tensor:
    """Row maximum of ``sim (c, M)`` outside the column block ``[start, end)``; 0 when empty."""
    parts = [p.amax(1) for p in (sim[:, :start], sim[:, end:]) if p.shape[1] > 0]
    if not parts:
        return sim.new_zeros(sim.shape[0])
    return torch.stack(parts).amax(0)


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
