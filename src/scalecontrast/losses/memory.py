"""Per-class pixel memory: a ring buffer of the last sampled embeddings of each class (ContrastiveSeg-style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PixelMemory"]


class PixelMemory(nn.Module):
    """Per class, the last ``size`` embeddings pushed (L2-normalised, detached), in buffers.

    Buffers (all in ``state_dict``, so checkpoints keep the memory): ``feats (K, size, D)``,
    ``count (K,)`` (filled slots per class) and ``head (K,)`` (next slot to write). The embedding
    size ``D`` is taken at the first :meth:`push`; until then ``feats`` is ``(K, size, 0)``, and
    loading a filled memory's state dict into such a fresh one adopts its ``D`` and dtype, so
    strict loading (e.g. a Lightning resume) works. Memory: ``K * size * D`` floats.

    Args:
        num_classes: ``K``; pushed entries with a label outside ``[0, K)`` are not stored.
        size: entries per class.
    """

    def __init__(self, num_classes: int, size: int) -> None:
        super().__init__()
        if num_classes < 1 or size < 1:
            raise ValueError(f"num_classes and size must be >= 1, got {num_classes} and {size}")
        self.num_classes = int(num_classes)
        self.size = int(size)
        self.register_buffer("feats", torch.zeros(num_classes, size, 0))
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("head", torch.zeros(num_classes, dtype=torch.long))

    @property
    def dim(self) -> int:
        """``D``, or 0 before the first push."""
        return self.feats.shape[-1]

    def contents(self) -> tuple[Tensor, Tensor, Tensor]:
        """``feats (K*size, D)``, ``labels (K*size,)`` and ``filled (K*size,)`` (bool) of every slot."""
        k, m = self.num_classes, self.size
        device = self.feats.device
        labels = torch.arange(k, device=device).repeat_interleave(m)
        filled = (torch.arange(m, device=device) < self.count[:, None]).reshape(-1)
        return self.feats.reshape(k * m, -1), labels, filled

    @torch.no_grad()
    def push(self, feats: Tensor, labels: Tensor) -> None:
        """Store ``feats (n, D)`` with ``labels (n,)``; per class the last ``size`` of them (in order) are kept.

        Vectorised and free of host syncs: every slot takes either its old entry or one of the new ones.
        """
        n = feats.shape[0]
        if self.dim == 0:
            self.feats = feats.new_zeros(self.num_classes, self.size, feats.shape[1],
                                         dtype=torch.promote_types(feats.dtype, torch.float32))
        if feats.shape[1] != self.dim:
            raise ValueError(f"the memory holds {self.dim}-d embeddings, got {tuple(feats.shape)}")
        if feats.device != self.feats.device:  # a loss module that was never moved: follow the embeddings
            self.feats, self.count, self.head = (t.to(feats.device) for t in (self.feats, self.count, self.head))
        if n == 0:
            return
        k, m = self.num_classes, self.size
        device = feats.device
        labels = labels.to(device).long()
        labels = torch.where((labels >= 0) & (labels < k), labels, k)  # k: not stored
        order = torch.sort(labels, stable=True).indices
        new = F.normalize(feats.detach()[order].to(self.feats.dtype), dim=1)  # (n, D), grouped by class
        per_class = torch.bincount(labels, minlength=k + 1)[:k]  # (K,)
        starts = torch.cumsum(per_class, 0) - per_class
        written = per_class.clamp(max=m)  # the last `written` of each class are kept
        # slot j of class c is new when its offset from the head is below `written`; it then holds
        # the class's entry number per_class - written + offset (in push order)
        offset = (torch.arange(m, device=device) - self.head[:, None]) % m  # (K, m)
        is_new = offset < written[:, None]
        source = (starts + per_class - written)[:, None] + offset
        source = torch.where(is_new, source, 0).clamp(max=n - 1).reshape(-1)
        flat = self.feats.view(k * m, -1)
        flat.copy_(torch.where(is_new.reshape(-1, 1), new[source], flat))
        self.count.copy_((self.count + per_class).clamp(max=m))
        self.head.copy_((self.head + written) % m)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        key = prefix + "feats"
        incoming = state_dict.get(key)
        if incoming is not None and self.dim == 0 and incoming.shape[:2] == self.feats.shape[:2]:
            self.feats = torch.zeros(incoming.shape, dtype=incoming.dtype, device=self.feats.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, size={self.size}, dim={self.dim}"
