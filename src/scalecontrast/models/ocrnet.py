"""OCRNet (Yuan et al. 2020): object-contextual representations on HRNet or a dilated ResNet."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .hrnet import concat_branches
from .layers import ConvBNReLU, embed_channels, embed_maps, resize
from .output import SegmentationOutput


class SpatialGather(nn.Module):
    """Object region representations: ``feats (B, C, h, w), probs (B, K, h, w) -> (B, C, K, 1)``."""

    def forward(self, feats: Tensor, probs: Tensor) -> Tensor:
        b, c = feats.shape[:2]
        k = probs.shape[1]
        weights = probs.reshape(b, k, -1).softmax(dim=-1)  # (B, K, hw), over pixels
        context = torch.bmm(weights, feats.reshape(b, c, -1).transpose(1, 2))  # (B, K, C)
        return context.transpose(1, 2).unsqueeze(-1)


class ObjectAttention(nn.Module):
    """Pixel-region relation and object-contextual representation.

    ``feats (B, C, h, w), regions (B, C, K, 1) -> (B, C, h, w)``.
    """

    def __init__(self, channels: int, key_channels: int):
        super().__init__()
        self.key_channels = key_channels
        self.query = nn.Sequential(ConvBNReLU(channels, key_channels), ConvBNReLU(key_channels, key_channels))
        self.key = nn.Sequential(ConvBNReLU(channels, key_channels), ConvBNReLU(key_channels, key_channels))
        self.value = ConvBNReLU(channels, key_channels)
        self.out = ConvBNReLU(key_channels, channels)

    def forward(self, feats: Tensor, regions: Tensor) -> Tensor:
        b, _, h, w = feats.shape
        q = self.query(feats).flatten(2).transpose(1, 2)  # (B, hw, Ck)
        k = self.key(regions).flatten(2)  # (B, Ck, K)
        v = self.value(regions).flatten(2).transpose(1, 2)  # (B, K, Ck)
        attn = (torch.bmm(q, k) * self.key_channels**-0.5).softmax(dim=-1)  # (B, hw, K)
        context = torch.bmm(attn, v).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return self.out(context)


class OCRHead(nn.Module):
    """Soft object regions (aux logits) -> region representations -> object context -> classifier.

    On HRNet (``in_channels`` of four branches, ``backbone_kind="hrnet"``): both the regions and the
    OCR module read the concatenated, upsampled branches (stride 4); contrastive maps are the four
    branches (before the OCR module). On a dilated ResNet: regions from ``layer3``
    (3x3 conv, 512 channels), OCR on ``layer4``; contrastive maps are ``layer1`` and ``layer4``.

    Args:
        in_channels: backbone channels, highest resolution first.
        num_classes: K.
        backbone_kind: ``"hrnet"`` or ``"resnet"`` (any four-stage dilated CNN).
        channels: OCR width (512); key_channels: attention width (256).
        embed_indices: backbone maps for the projectors (default as above).
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        *,
        backbone_kind: str = "hrnet",
        channels: int = 512,
        key_channels: int = 256,
        dropout: float = 0.05,
        embed_indices: tuple[int, ...] | None = None,
    ):
        super().__init__()
        if backbone_kind not in ("hrnet", "resnet"):
            raise ValueError(f"backbone_kind must be 'hrnet' or 'resnet', got {backbone_kind!r}")
        self.concat = backbone_kind == "hrnet"
        if self.concat:
            ocr_in = region_in = sum(in_channels)
            self.regions = nn.Sequential(ConvBNReLU(region_in, region_in, 1), nn.Conv2d(region_in, num_classes, 1))
            default_embed = tuple(range(len(in_channels)))
        else:
            ocr_in, region_in = in_channels[-1], in_channels[-2]
            self.regions = nn.Sequential(
                ConvBNReLU(region_in, channels, 3), nn.Dropout(dropout), nn.Conv2d(channels, num_classes, 1)
            )
            default_embed = (0, len(in_channels) - 1)
        self.reduce = ConvBNReLU(ocr_in, channels, 3)
        self.gather = SpatialGather()
        self.attention = ObjectAttention(channels, key_channels)
        self.fuse = nn.Sequential(ConvBNReLU(2 * channels, channels, 1), nn.Dropout(dropout))
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.embed_indices = None if embed_indices is None else tuple(embed_indices)
        self.default_embed = default_embed
        self.feature_channels = embed_channels(in_channels, self.embed_indices, [in_channels[i] for i in default_embed])

    def forward(self, feats: list[Tensor]) -> SegmentationOutput:
        if self.concat:
            x = concat_branches(feats)
            region_logits = self.regions(x)
        else:
            x = feats[-1]
            region_logits = self.regions(feats[-2])
        x = self.reduce(x)
        probs = region_logits if self.concat else resize(region_logits, x.shape[-2:])  # layer3 may be coarser
        context = self.attention(x, self.gather(x, probs))
        logits = self.classifier(self.fuse(torch.cat([context, x], dim=1)))
        own = [feats[i] for i in self.default_embed]
        return SegmentationOutput(logits, region_logits, embed_maps(feats, self.embed_indices, own))
