"""The output type shared by every model in :mod:`scalecontrast.models`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from torch import Tensor


class SegmentationOutput(NamedTuple):
    """What a scalecontrast model returns.

    Attributes:
        logits: ``(B, K, H, W)`` class scores at the input size.
        aux_logits: ``(B, K, H, W)`` auxiliary scores at the input size (UPerNet's FCN head, OCRNet's
            soft object regions) in training mode; ``None`` in eval mode or for heads without one.
        embeddings: projector outputs ``(B, embed_dim, h_s, w_s)``, highest resolution first; empty in
            eval mode and when the model was built with ``contrastive=False``.
        projector_maps: (models with ``project_sampled=True``, training mode; else empty) the
            projectors' maps *before* their last, pointwise layer, ``(B, C_s, h_s, w_s)``; ``embeddings``
            is then empty.
        projections: ``None``, or with ``projector_maps`` one callable per scale mapping pixel rows
            ``(N, C_s) -> (N, embed_dim)`` (the projectors' last layer). Pass both to the loss,
            ``loss(out.projector_maps, labels, projections=out.projections)``: it projects only the
            pixels it samples, which gives the same values as ``loss(embeddings, labels)``.
    """

    logits: Tensor
    aux_logits: Tensor | None
    embeddings: list[Tensor]
    projector_maps: Sequence[Tensor] = ()
    projections: Sequence[Callable[[Tensor], Tensor]] | None = None

    def contrastive_inputs(self) -> tuple[list[Tensor], Sequence[Callable[[Tensor], Tensor]] | None]:
        """``(maps, projections)`` to pass to the contrastive loss, whichever form the model returned."""
        if self.projections is not None:
            return list(self.projector_maps), self.projections
        return list(self.embeddings), None
