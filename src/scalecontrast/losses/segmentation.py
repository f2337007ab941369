"""Segmentation loss: cross-entropy, optionally with an auxiliary head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SegmentationLoss"]


class SegmentationLoss(nn.Module):
    """``CE(logits) + aux_weight * CE(aux_logits)``, logits resized to the label size.

    Args:
        aux_weight: weight of the auxiliary term (0.4 for OCRNet and UPerNet).
        ignore_index: label that contributes nothing.
        class_weights: optional per-class weights ``(K,)``.
    """

    def __init__(
        self,
        aux_weight: float = 0.4,
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.aux_weight = aux_weight
        self.ignore_index = ignore_index
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weight, persistent=False)

    def ce(self, logits: Tensor, labels: Tensor) -> Tensor:
        """``logits (B, K, h, w)``, ``labels (B, H, W)`` -> scalar mean CE over non-ignored pixels."""
        if logits.shape[-2:] != labels.shape[-2:]:
            logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        labels = labels.long()
        per_pixel = F.cross_entropy(logits.float(), labels, weight=self.class_weights,
                                    ignore_index=self.ignore_index, reduction="none")
        # The mean over labelled pixels (weighted as PyTorch's "mean"), as a sum over a clamped count:
        # a batch with no labelled pixel gives 0 with a graph (and zero gradients), not 0/0 = NaN.
        valid = labels != self.ignore_index
        if self.class_weights is not None:
            denom = (self.class_weights.to(per_pixel.dtype)[labels.clamp(0, len(self.class_weights) - 1)]
                     * valid).sum()
        else:
            denom = valid.sum().to(per_pixel.dtype)
        return per_pixel.sum() / denom.clamp_min(torch.finfo(per_pixel.dtype).tiny)

    def forward(self, logits: Tensor, labels: Tensor, aux_logits: Tensor | None = None) -> dict[str, Tensor]:
        """Returns ``{"loss", "ce"}`` plus ``"aux_ce"`` when ``aux_logits`` is given."""
        ce = self.ce(logits, labels)
        out = {"ce": ce, "loss": ce}
        if aux_logits is not None and self.aux_weight:
            aux = self.ce(aux_logits, labels)
            out["aux_ce"] = aux
            out["loss"] = ce + self.aux_weight * aux
        return out
