"""Losses: anchor sampling, the contrastive terms and the segmentation loss (torch only)."""

from scalecontrast.losses.contrastive import contrastive_loss
from scalecontrast.losses.memory import PixelMemory
from scalecontrast.losses.multiscale import MultiScaleContrastiveLoss
from scalecontrast.losses.sampling import downsample_labels, sample_anchors
from scalecontrast.losses.segmentation import SegmentationLoss

__all__ = [
    "MultiScaleContrastiveLoss",
    "PixelMemory",
    "SegmentationLoss",
    "contrastive_loss",
    "downsample_labels",
    "sample_anchors",
]
