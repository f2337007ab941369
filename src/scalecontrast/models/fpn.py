"""A light FPN head (Kirillov et al. 2019, panoptic-FPN style) for small backbones."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import ConvBNReLU, embed_channels, embed_maps, resize
from .output import SegmentationOutput


class FPNHead(nn.Module):
    """Lateral 1x1 convs + top-down sum, then per level 3x3 ConvBNReLU at stride 4, summed and classified.

    Designed for small encoders such as ``tf_efficientnet_lite0`` (strides 4..32).

    Args:
        in_channels: backbone channels, highest resolution first.
        num_classes: K.
        channels: pyramid width (128); seg_channels: width of the merged map (64).
        embed_indices: the backbone maps offered to the contrastive head; ``None`` (default): the pyramid
            levels P2..P5.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        *,
        channels: int = 128,
        seg_channels: int = 64,
        dropout: float = 0.1,
        embed_indices: tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(ConvBNReLU(channels, seg_channels, 3) for _ in in_channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(seg_channels, num_classes, 1)
        self.embed_indices = None if embed_indices is None else tuple(embed_indices)
        self.feature_channels = embed_channels(in_channels, self.embed_indices, [channels] * len(in_channels))

    def forward(self, feats: list[Tensor]) -> SegmentationOutput:
        pyramid = [lat(f) for lat, f in zip(self.laterals, feats)]
        for i in range(len(pyramid) - 1, 0, -1):  # top-down pathway
            pyramid[i - 1] = pyramid[i - 1] + resize(pyramid[i], pyramid[i - 1].shape[-2:])
        size = pyramid[0].shape[-2:]
        merged = self.smooth[0](pyramid[0])
        for conv, p in zip(self.smooth[1:], pyramid[1:]):
            merged = merged + resize(conv(p), size)
        logits = self.classifier(self.dropout(merged))
        return SegmentationOutput(logits, None, embed_maps(feats, self.embed_indices, pyramid))
