"""The output type shared by every model in :mod:`scalecontrast.models`."""

from __future__ import annotations

from collections.abc import Callable
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
        projections: ``None``, or (models with ``project_sampled=True``) one callable per scale
            mapping rows ``(N, C_s) -> (N, embed_dim)``: then ``embeddings`` hold the projectors'
            maps *before* their last (pointwise) layer, and the loss applies ``projections[s]`` to the
            sampled pixels only, which gives the same values without projecting every pixel.
    """

    logits: Tensor
    aux_logits: Tensor | None
    embeddings: list[Tensor]
    projections: list[Callable[[Tensor], Tensor]] | None = None
