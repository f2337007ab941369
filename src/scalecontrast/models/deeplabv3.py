"""DeepLabV3 (Chen et al. 2017): ASPP on a dilated ResNet (output stride 8)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import ConvBNReLU, embed_channels, embed_maps
from .output import SegmentationOutput


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: ``(B, C_in, h, w) -> (B, out, h, w)``.

    A 1x1 branch, one 3x3 branch per rate and an image-pooling branch, concatenated and projected.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: tuple[int, ...] = (12, 24, 36),
        dropout: float = 0.1,
    ):
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, out_channels, 1)]
            + [ConvBNReLU(in_channels, out_channels, 3, dilation=r) for r in rates]
        )
        self.pool = ConvBNReLU(in_channels, out_channels, 1)
        self.project = nn.Sequential(ConvBNReLU(out_channels * (len(rates) + 2), out_channels, 1), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Head(nn.Module):
    """ASPP -> 3x3 ConvBNReLU -> 1x1 classifier on the last feature map.

    Input: backbone features, highest resolution first (ResNet ``layer1..layer4``).
    Contrastive maps: the backbone features at ``embed_indices`` (default ``layer1, layer3, layer4``).

    Args:
        in_channels: channels of every backbone feature map.
        num_classes: K.
        channels: ASPP/decoder width (256).
        atrous_rates: (12, 24, 36) at output stride 8, (6, 12, 18) at 16.
        embed_indices: which backbone maps feed the projectors (``None``: ``(0, 2, 3)``).
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        *,
        channels: int = 256,
        atrous_rates: tuple[int, ...] = (12, 24, 36),
        dropout: float = 0.1,
        embed_indices: tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.aspp = ASPP(in_channels[-1], channels, atrous_rates, dropout)
        self.decoder = ConvBNReLU(channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.embed_indices = None if embed_indices is None else tuple(embed_indices)
        self.feature_channels = embed_channels(in_channels, self.embed_indices, [in_channels[i] for i in (0, 2, 3)])

    def forward(self, feats: list[Tensor]) -> SegmentationOutput:
        logits = self.classifier(self.decoder(self.aspp(feats[-1])))
        return SegmentationOutput(logits, None, embed_maps(feats, self.embed_indices, [feats[0], feats[2], feats[3]]))
