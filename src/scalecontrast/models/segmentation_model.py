"""Backbone + decode head = one segmentation model (no projectors: see ``ContrastiveHead``)."""

from __future__ import annotations

from torch import Tensor, nn

from .backbone import Backbone
from .layers import pad_to_multiple, resize, unpad
from .output import SegmentationOutput


class SegmentationModel(nn.Module):
    """A timm backbone and a decode head.

    ``forward(x)``: ``(B, 3, H, W)`` normalised with ``mean``/``std`` -> :class:`SegmentationOutput`
    with logits (and aux logits, for heads that have them) at ``(H, W)`` and the head's feature maps
    for the contrastive head, the same in training and eval mode. Exports to ONNX as is (an
    exporter keeps only what the logits need). Any ``H, W``: an input whose sides are not multiples of
    ``backbone.size_multiple`` (HRNet: 32) is zero-padded at the bottom and right (zero = the mean
    colour after normalisation); the logits are upsampled at the padded size and cropped back to
    ``(H, W)``, and each feature map is cropped to the ``ceil(h_s * H / H_padded)`` rows (likewise
    columns) that see the image, so labels downsampled to it stay aligned. No padding on multiples.

    Args:
        backbone: the encoder.
        head: a module mapping the backbone's feature list to a :class:`~.output.SegmentationOutput` (logits at
            the head's resolution) and
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
        padded = pad_to_multiple(x, getattr(self.backbone, "size_multiple", 1))
        out = self.head(self.backbone(padded))
        padded_size = padded.shape[-2:]

        def crop(t: Tensor) -> Tensor:  # a map of the padded input -> the part that sees the image
            return t if padded is x else unpad(t, size, padded_size)

        logits = crop(resize(out.logits, padded_size))
        aux = crop(resize(out.aux_logits, padded_size)) if out.aux_logits is not None else None
        return SegmentationOutput(logits, aux, [crop(f) for f in out.features])
