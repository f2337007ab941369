"""Class-balanced anchor sampling of pixel embeddings (docs/method.md, "Class-balanced anchor sampling")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["downsample_labels", "sample_anchors"]


def downsample_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of integer labels, exactly as PyTorch's ``nearest`` mode.

    Args:
        labels: ``(B, H, W)`` integer labels.
        size: target ``(h, w)``.

    Returns:
        ``(B, h, w)`` int64 labels (the top-left pixel of each cell for integer factors).
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must have shape (B, H, W), got {tuple(labels.shape)}")
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    # float32 holds every integer below 2**24 exactly, far above any label value.
    resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest")
    return resized[:, 0].long()


def sample_anchors(
    embeddings: Tensor,
    labels: Tensor,
    *,
    ignore_index: int = 255,
    min_views: int = 5,
    max_views: int = 2500,
    max_total: int = 10000,
    predictions: Tensor | None = None,
    hard_fraction: float = 0.0,
    generator: torch.Generator | None = None,
    return_images: bool = False,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """Sample the same number of pixel embeddings for every valid (image, class) pair.

    A pair (image ``b``, class ``k``) is valid when at least ``min_views`` pixels of the
    downsampled label map carry class ``k`` (``ignore_index`` never counts). Every valid pair
    gets ``V = min(smallest valid count, max_views, max_total // n_pairs)`` views, drawn
    uniformly without replacement. When there are more valid pairs than ``max_total``,
    ``max_total`` pairs are kept at random with one view each. Fully vectorised: no Python
    loop over pairs.

    Hard anchors (``hard_fraction > 0``, with ``predictions``): each pair's ``V`` views hold
    ``round(hard_fraction * V)`` mispredicted pixels (prediction != label) when the pair has that
    many, the rest correctly predicted; a shortfall of either kind is filled from the other. Both
    kinds are drawn uniformly without replacement; a pair's hard views come first. With
    ``hard_fraction=0`` the predictions are not used and the draws equal the plain sampler's.

    Args:
        embeddings: ``(B, C, h, w)`` feature map of one scale.
        labels: ``(B, H, W)`` integer labels at any resolution; resized to ``(h, w)`` by
            nearest-neighbour when the sizes differ.
        predictions: ``(B, H', W')`` predicted class per pixel (e.g. ``logits.argmax(1)``) at
            any resolution, resized like ``labels``; required when ``hard_fraction > 0``.
        hard_fraction: share of mispredicted views per pair, in ``[0, 1]``.
        generator: optional ``torch.Generator`` for reproducible draws (on the embeddings'
            device, or on the CPU).
        return_images: also return each pair's image index.

    Returns:
        ``feats (T, V, C)`` and ``labels (T,)`` (int64), pairs ordered by image then class, plus
        ``images (T,)`` (int64) with ``return_images``. With no valid pair, ``(0, 0, C)`` and ``(0,)``.
    """
    if embeddings.ndim != 4:
        raise ValueError(f"embeddings must have shape (B, C, h, w), got {tuple(embeddings.shape)}")
    if labels.ndim != 3 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must have shape (B, H, W) with the batch size of embeddings "
            f"{tuple(embeddings.shape)}, got {tuple(labels.shape)}"
        )
    if min_views < 1 or max_views < 1 or max_total < 1:
        raise ValueError(
            f"min_views, max_views and max_total must be >= 1, got {min_views}, {max_views}, {max_total}"
        )
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
    hard_mining = hard_fraction > 0
    if hard_mining and predictions is None:
        raise ValueError("hard_fraction > 0 needs predictions (B, H, W), e.g. logits.argmax(1)")
    if hard_mining and (predictions.ndim != 3 or predictions.shape[0] != embeddings.shape[0]):
        raise ValueError(
            f"predictions must have shape (B, H, W) with the batch size of embeddings "
            f"{tuple(embeddings.shape)}, got {tuple(predictions.shape)}"
        )
    batch, channels, height, width = embeddings.shape
    device = embeddings.device
    hw = height * width
    lab = downsample_labels(labels.to(device), (height, width)).reshape(-1)  # (B*h*w,)
    valid = (lab != ignore_index) & (lab >= 0)

    # first host sync: the number of classes (labels may take any value besides ignore_index)
    num_classes = int(torch.where(valid, lab, -1).max().item()) + 1 if lab.numel() else 0
    none = torch.zeros(0, dtype=torch.long, device=device)
    empty = (embeddings.new_zeros(0, 0, channels), none) + ((none,) if return_images else ())
    if num_classes <= 0:
        return empty

    image = torch.arange(batch, device=device).repeat_interleave(hw)
    n_keys = batch * num_classes
    key = torch.where(valid, image * num_classes + lab, n_keys)  # sentinel n_keys for ignore
    counts = torch.bincount(key, minlength=n_keys + 1)[:n_keys]
    pair_ok = counts >= min_views
    stats = torch.stack([pair_ok.sum(), torch.where(pair_ok, counts, counts.new_tensor(2**62)).min()])
    n_pairs, smallest = (int(v) for v in stats.tolist())  # second host sync: the output shape
    if n_pairs == 0:
        return empty
    views = min(smallest, max_views, max_total // n_pairs)
    if views == 0:  # more pairs than max_total: keep max_total of them, one view each
        views = 1
        keep = torch.nonzero(pair_ok).squeeze(1)
        drop = keep[_randperm(n_pairs, generator, device)[max_total:]]
        pair_ok = pair_ok.clone()
        pair_ok[drop] = False
        n_pairs = max_total

    key = torch.where(pair_ok[key.clamp(max=n_keys - 1)] & (key < n_keys), key, n_keys)
    if hard_mining:
        pred = downsample_labels(predictions.to(device), (height, width)).reshape(-1)
        chosen = _draw_hard_and_easy(key, pred != lab, n_keys, views, hard_fraction, generator, device)
    else:
        chosen = _draw(key, n_keys, torch.full((n_keys + 1,), views, device=device), generator, device)

    feats = embeddings.flatten(2)[chosen // hw, :, chosen % hw]  # (T*V, C)
    pair_index = torch.nonzero(pair_ok).squeeze(1)
    out = (feats.reshape(n_pairs, views, channels), pair_index % num_classes)
    return (out + (pair_index // num_classes,)) if return_images else out


def _draw(key: Tensor, n_groups: int, quota: Tensor, generator: torch.Generator | None,
          device: torch.device) -> Tensor:
    """Pixel ids: ``quota[g]`` drawn uniformly without replacement from each group ``g`` of ``key``.

    ``key (P,)`` holds each pixel's group in ``[0, n_groups]`` (``n_groups``: never drawn);
    ``quota (n_groups + 1,)``. The result is grouped by group id (random order within a group).
    """
    shuffled = _randperm(key.numel(), generator, device)
    by_key = torch.sort(key[shuffled], stable=True)
    pixels = shuffled[by_key.indices]  # pixel ids grouped by key, random order within a group
    sorted_key = by_key.values
    group_counts = torch.bincount(key, minlength=n_groups + 1)[:n_groups]
    starts = torch.cumsum(group_counts, 0) - group_counts
    starts = torch.cat([starts, starts.new_zeros(1)])
    rank = torch.arange(key.numel(), device=device) - starts[sorted_key]
    return pixels[(sorted_key < n_groups) & (rank < quota[sorted_key])]  # (sum quota,)


def _draw_hard_and_easy(key: Tensor, hard: Tensor, n_keys: int, views: int, hard_fraction: float,
                        generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``views`` pixels per selected pair of ``key (P,)``: ``round(hard_fraction * views)`` with
    ``hard (P,)`` set when available, the rest without; a shortfall of one kind filled by the other."""
    sub = torch.where(key < n_keys, key * 2 + (~hard).long(), 2 * n_keys)  # (pair, hard 0 / easy 1)
    per_kind = torch.bincount(sub, minlength=2 * n_keys + 1)[: 2 * n_keys].view(n_keys, 2)
    n_hard, n_easy = per_kind[:, 0], per_kind[:, 1]
    wanted = round(hard_fraction * views)
    take_hard = torch.minimum(torch.clamp(views - n_easy, min=wanted), n_hard)  # (n_keys,)
    quota = torch.stack([take_hard, views - take_hard], 1).reshape(-1)
    quota = torch.cat([quota, quota.new_zeros(1)])
    return _draw(sub, 2 * n_keys, quota, generator, device)


def _randperm(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randperm(n, generator=generator, device=gen_device).to(device)
