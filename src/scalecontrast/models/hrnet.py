"""HRNetV2 segmentation head (Wang et al. 2020): all branches upsampled, concatenated, classified."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import ConvBNReLU, embed_channels, embed_maps, resize
from .output import SegmentationOutput


def concat_branches(feats: list[Tensor]) -> Tensor:
    """Upsample every branch to the first one's size and concatenate: ``(B, sum C_i, h_0, w_0)``."""
    size = feats[0].shape[-2:]
    return torch.cat([feats[0]] + [resize(f, size) for f in feats[1:]], dim=1)


class HRNetHead(nn.Module):
    """HRNetV2 head: concat(branches) -> Conv1x1-BN-ReLU -> Conv1x1 to K classes (stride 4).

    Contrastive maps: the four branch outputs themselves (strides 4, 8, 16, 32), or those at ``embed_indices``.
    """

    def __init__(self, in_channels: list[int], num_classes: int, *, embed_indices: tuple[int, ...] | None = None):
        super().__init__()
        total = sum(in_channels)
        self.fuse = ConvBNReLU(total, total, 1)
        self.classifier = nn.Conv2d(total, num_classes, 1)
        self.embed_indices = None if embed_indices is None else tuple(embed_indices)
        self.feature_channels = embed_channels(in_channels, self.embed_indices, in_channels)

    def forward(self, feats: list[Tensor]) -> SegmentationOutput:
        logits = self.classifier(self.fuse(concat_branches(feats)))
        return SegmentationOutput(logits, None, embed_maps(feats, self.embed_indices, feats))
