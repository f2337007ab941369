"""Segmentation models with multi-scale contrastive embeddings.

- :func:`create_model`: the paper's families (DeepLabV3, HRNetV2, OCRNet, UPerNet) and a light FPN on
  timm backbones.
- :func:`wrap_model`: projector embeddings for any existing segmentation model, by forward hooks.
- :class:`SegmentationOutput`: ``(logits, aux_logits, embeddings)`` returned by both.
"""

from __future__ import annotations

from .backbone import Backbone
from .deeplabv3 import ASPP, DeepLabV3Head
from .factory import HEADS, create_model, list_heads
from .fpn import FPNHead
from .hrnet import HRNetHead
from .layers import ConvBNReLU, HeadOutput, Projector, adaptive_avg_pool2d
from .ocrnet import OCRHead
from .output import SegmentationOutput
from .segmentation_model import SegmentationModel
from .upernet import FCNHead, PyramidPooling, UPerNetHead
from .weights import lite0_checkpoint_path, lite0_state_dict
from .wrap import ContrastiveWrapper, wrap_model

__all__ = [
    "ASPP",
    "HEADS",
    "Backbone",
    "ContrastiveWrapper",
    "ConvBNReLU",
    "DeepLabV3Head",
    "FCNHead",
    "FPNHead",
    "HRNetHead",
    "HeadOutput",
    "OCRHead",
    "Projector",
    "PyramidPooling",
    "SegmentationModel",
    "SegmentationOutput",
    "UPerNetHead",
    "adaptive_avg_pool2d",
    "create_model",
    "list_heads",
    "lite0_checkpoint_path",
    "lite0_state_dict",
    "wrap_model",
]
