"""The contrastive head: one projector per scale + the multi-scale / cross-scale loss.

Training-time only: it sits beside a segmentation model (never inside one, never in an export)
and takes the model's feature maps, ``model(x).features``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from scalecontrast.losses.multiscale import MultiScaleContrastiveLoss

__all__ = ["ContrastiveHead", "Projector"]


class Projector(nn.Sequential):
    """The paper's projection head: Conv1x1(C, C, no bias) -> ReLU -> BN -> Conv1x1(C, embed_dim).

    ``(B, C, h, w) -> (B, embed_dim, h, w)``.
    """

    def __init__(self, in_channels: int, embed_dim: int = 256) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, embed_dim, 1),
        )

    def trunk(self, x: Tensor) -> Tensor:
        """Everything but the last 1x1 conv: ``(B, C, h, w) -> (B, C, h, w)``."""
        for layer in list(self)[:-1]:
            x = layer(x)
        return x

    def project_rows(self, rows: Tensor) -> Tensor:
        """The last 1x1 conv on pixel rows: ``(N, C) -> (N, embed_dim)``; ``self(x)`` equals
        ``project_rows`` applied to every pixel of ``trunk(x)``."""
        last = self[-1]
        return F.linear(rows, last.weight.flatten(1).to(rows.dtype),
                        None if last.bias is None else last.bias.to(rows.dtype))


class ContrastiveHead(nn.Module):
    """Per-scale projectors and :class:`MultiScaleContrastiveLoss`, built from a model's
    ``feature_channels``.

    ``head(features, labels)`` projects every map's pixels through its projector's
    Conv-ReLU-BN trunk, samples anchors class-balanced, and runs the projector's last 1x1 conv on
    the sampled pixels only (the same values and gradients as projecting every pixel, for a
    fraction of the cost), then returns the loss.

    Args:
        in_channels: ``C_s`` of each feature map, highest resolution first
            (``ContrastiveHead(model.feature_channels)``).
        embed_dim: the projectors' output channels (256 in the paper).
        **options: keyword arguments of :class:`MultiScaleContrastiveLoss` (``temperature``,
            ``scale_weights``, ``cross_scale``, ``max_views`` ...).

    Shapes:
        features: ``S`` maps ``(B, C_s, h_s, w_s)``; labels ``(B, H, W)`` (255 = ignore) at any
        resolution; predictions (optional, for hard-anchor sampling) like labels.
    """

    def __init__(self, in_channels: Sequence[int], *, embed_dim: int = 256, **options: Any) -> None:
        super().__init__()
        channels = [int(c) for c in in_channels]
        if not channels or any(c <= 0 for c in channels):
            raise ValueError(f"in_channels must be a non-empty list of positive channel counts, got {in_channels}")
        if embed_dim <= 0:
            raise ValueError(f"embed_dim must be > 0, got {embed_dim}")
        self.in_channels = channels
        self.embed_dim = int(embed_dim)
        self.projectors = nn.ModuleList(Projector(c, self.embed_dim) for c in channels)
        self.loss = MultiScaleContrastiveLoss(**options)

    @property
    def num_scales(self) -> int:
        return len(self.projectors)

    def _check(self, features: Sequence[Tensor]) -> None:
        if isinstance(features, Tensor) or len(features) != len(self.projectors):
            got = "a tensor" if isinstance(features, Tensor) else f"{len(features)} maps"
            raise ValueError(f"ContrastiveHead was built for {len(self.projectors)} feature maps "
                             f"(channels {self.in_channels}) but got {got}")
        got_c = [int(f.shape[1]) if f.ndim == 4 else None for f in features]
        if got_c != self.in_channels:
            raise ValueError(f"feature maps must have channels {self.in_channels} (B, C, h, w); got "
                             f"{[tuple(f.shape) for f in features]}")

    def forward(
        self,
        features: Sequence[Tensor],
        labels: Tensor,
        *,
        predictions: Tensor | None = None,
        return_terms: bool = False,
        **kwargs: Any,
    ) -> Tensor | dict[str, Tensor]:
        """The contrastive loss of ``features`` (a scalar, or the dict of terms with
        ``return_terms=True``; see :meth:`MultiScaleContrastiveLoss.forward`)."""
        self._check(features)
        maps = [p.trunk(f) for p, f in zip(self.projectors, features, strict=True)]
        if predictions is not None:
            kwargs["predictions"] = predictions
        return self.loss(maps, labels, projections=[p.project_rows for p in self.projectors],
                         return_terms=return_terms, **kwargs)

    def project(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Every pixel projected: ``[(B, embed_dim, h_s, w_s)]`` (for figures; in eval mode the
        projectors' BN uses its running statistics)."""
        self._check(features)
        return [p(f) for p, f in zip(self.projectors, features, strict=True)]
