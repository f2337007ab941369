"""The output type shared by every model in :mod:`scalecontrast.models`."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class SegmentationOutput(NamedTuple):
    """What a scalecontrast model returns, the same in training and eval mode.

    Attributes:
        logits: ``(B, K, H, W)`` class scores at the input size.
        aux_logits: ``(B, K, H, W)`` auxiliary scores at the input size (UPerNet's FCN head, OCRNet's
            soft object regions, torchvision's ``"aux"``), or ``None`` for models without one.
        features: the maps offered to the contrastive head, ``(B, C_s, h_s, w_s)``, highest resolution
            first (``model.feature_channels`` gives the ``C_s``); empty for a model without taps.
    """

    logits: Tensor
    aux_logits: Tensor | None
    features: list[Tensor]
