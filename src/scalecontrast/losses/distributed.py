"""All-gather of sampled embeddings across processes, gradient kept on the local part."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gather_with_local_grad"]


def gather_with_local_grad(feats: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int]:
    """Concatenate every rank's ``feats (n_r, C)`` and ``labels (n_r,)`` in rank order.

    Ranks may hold different ``n_r``. The other ranks' entries are constants; this rank's
    entries are ``feats`` itself, so the gradient flows to the local part.

    Returns:
        ``(feats_all (sum n_r, C), labels_all (sum n_r,), offset)`` where ``offset`` is the
        position of this rank's first entry. Without an initialised process group (or with one
        process) the inputs come back unchanged with offset 0.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return feats, labels, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([feats.shape[0]], device=feats.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    pad = longest - feats.shape[0]
    feats_pad = F.pad(feats.detach(), (0, 0, 0, pad))
    labels_pad = F.pad(labels, (0, pad), value=-1)
    all_feats = [torch.empty_like(feats_pad) for _ in range(world)]
    all_labels = [torch.empty_like(labels_pad) for _ in range(world)]
    dist.all_gather(all_feats, feats_pad.contiguous())
    dist.all_gather(all_labels, labels_pad.contiguous())
    feats_parts = [feats if r == rank else all_feats[r][: counts[r]] for r in range(world)]
    labels_parts = [all_labels[r][: counts[r]] for r in range(world)]
    return torch.cat(feats_parts), torch.cat(labels_parts), sum(counts[:rank])
