"""UPerNet (Xiao et al. 2018): pyramid pooling + FPN, with an auxiliary FCN head (mmseg recipe)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import ConvBNReLU, adaptive_avg_pool2d, embed_channels, embed_maps, resize
from .output import SegmentationOutput


class PyramidPooling(nn.Module):
    """PSP module: ``(B, C, h, w) -> (B, C + len(scales) * channels, h, w)`` (input kept)."""

    def __init__(self, in_channels: int, channels: int, scales: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.scales = tuple(scales)
        self.convs = nn.ModuleList(ConvBNReLU(in_channels, channels, 1) for _ in self.scales)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [resize(conv(adaptive_avg_pool2d(x, s)), size) for s, conv in zip(self.scales, self.convs)]
        return torch.cat([x, *pooled], dim=1)


class FCNHead(nn.Module):
    """Auxiliary head: ``num_convs`` 3x3 ConvBNReLU -> dropout -> 1x1 classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 256,
        num_convs: int = 1,
        dropout: float = 0.1,
    ):
        super().__init__()
        convs = [ConvBNReLU(in_channels if i == 0 else channels, channels, 3) for i in range(num_convs)]
        self.convs = nn.Sequential(*convs, nn.Dropout(dropout))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.convs(x))


class UPerNetHead(nn.Module):
    """UPerNet decode head as in mmsegmentation's ``UPerHead`` plus its ``FCNHead`` auxiliary head.

    PPM on the last stage; lateral 1x1 convs on the others; top-down sum; 3x3 FPN convs; the four
    levels upsampled to stride 4, concatenated, fused by a 3x3 conv and classified. The auxiliary FCN
    head reads ``aux_index`` (the third stage) and its logits are ``aux_logits``.

    Contrastive maps: the FPN outputs P2..P5 (the paper's, ``channels`` each), or the backbone maps at
    ``embed_indices``.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        *,
        channels: int = 512,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        dropout: float = 0.1,
        aux: bool = True,
        aux_index: int = 2,
        aux_channels: int = 256,
        embed_indices: tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.ppm = PyramidPooling(in_channels[-1], channels, pool_scales)
        self.ppm_bottleneck = ConvBNReLU(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.laterals = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fuse = ConvBNReLU(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.aux_index = aux_index
        self.aux_head = FCNHead(in_channels[aux_index], num_classes, channels=aux_channels) if aux else None
        self.embed_indices = None if embed_indices is None else tuple(embed_indices)
        self.feature_channels = embed_channels(in_channels, self.embed_indices, [channels] * len(in_channels))

    def forward(self, feats: list[Tensor]) -> SegmentationOutput:
        tops = [lat(f) for lat, f in zip(self.laterals, feats)]
        tops.append(self.ppm_bottleneck(self.ppm(feats[-1])))
        for i in range(len(tops) - 1, 0, -1):  # top-down pathway
            tops[i - 1] = tops[i - 1] + resize(tops[i], tops[i - 1].shape[-2:])
        pyramid = [conv(t) for conv, t in zip(self.fpn_convs, tops)] + [tops[-1]]
        size = pyramid[0].shape[-2:]
        fused = self.fuse(torch.cat([pyramid[0]] + [resize(p, size) for p in pyramid[1:]], dim=1))
        logits = self.classifier(self.dropout(fused))
        aux = self.aux_head(feats[self.aux_index]) if self.aux_head is not None else None
        return SegmentationOutput(logits, aux, embed_maps(feats, self.embed_indices, pyramid))
