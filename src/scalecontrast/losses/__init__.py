"""Losses: anchor sampling, the contrastive terms, the contrastive head (projectors) and the
segmentation loss (torch only)."""

from scalecontrast.losses.contrastive import contrastive_loss
from scalecontrast.losses.head import ContrastiveHead, Projector
from scalecontrast.losses.memory import PixelMemory
from scalecontrast.losses.multiscale import MultiScaleContrastiveLoss
from scalecontrast.losses.sampling import downsample_labels, sample_anchors
from scalecontrast.losses.segmentation import SegmentationLoss

__all__ = [
    "ContrastiveHead",
    "Projector",
    "MultiScaleContrastiveLoss",
    "PixelMemory",
    "SegmentationLoss",
    "contrastive_loss",
    "downsample_labels",
    "sample_anchors",
]
