"""Backbone + decode head = one segmentation model (no projectors: see ``ContrastiveHead``)."""

from __future__ import annotations

from torch import Tensor, nn

from .backbone import Backbone
from .layers import resize
from .output import SegmentationOutput


class SegmentationModel(nn.Module):
    """A timm backbone and a decode head.

    ``forward(x)``: ``(B, 3, H, W)`` normalised with ``mean``/``std`` -> :class:`SegmentationOutput`
    with logits (and aux logits, for heads that have them) at ``(H, W)`` and the head's feature maps
    for the contrastive head, the same in training and eval mode. Exports to ONNX as is (an
    exporter keeps only what the logits need).

    Args:
        backbone: the encoder.
        head: a module mapping the backbone's feature list to a :class:`~.layers.HeadOutput` and
            exposing ``feature_channels`` (channels of the maps it offers to the contrastive head).
        num_classes: K, the head's number of output channels.
    """

    def __init__(self, backbone: Backbone, head: nn.Module, *, num_classes: int) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.head = head
        self.mean: tuple[float, ...] = backbone.mean
        self.std: tuple[float, ...] = backbone.std

    @property
    def feature_channels(self) -> list[int]:
        """``C_s`` of ``forward(x).features``, highest resolution first."""
        return list(self.head.feature_channels)

    def forward(self, x: Tensor) -> SegmentationOutput:
        size = x.shape[-2:]
        out = self.head(self.backbone(x))
        logits = resize(out.logits, size)
        aux = resize(out.aux_logits, size) if out.aux_logits is not None else None
        return SegmentationOutput(logits, aux, list(out.features))
