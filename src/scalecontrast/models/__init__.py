"""Segmentation models that offer multi-scale feature maps to the contrastive head.

- :func:`create_model`: the paper's families (DeepLabV3, HRNetV2, OCRNet, UPerNet) and a light FPN on
  timm backbones.
- :func:`wrap_model`: any existing segmentation model, with the outputs of named submodules as features
  (forward hooks).
- :class:`SegmentationOutput`: ``(logits, aux_logits, features)`` returned by both.

No model holds projectors: they belong to :class:`scalecontrast.losses.ContrastiveHead`.
"""

from __future__ import annotations

from .backbone import Backbone
from .deeplabv3 import ASPP, DeepLabV3Head
from .factory import HEADS, create_model, list_heads
from .fpn import FPNHead
from .hrnet import HRNetHead
from .layers import ConvBNReLU, adaptive_avg_pool2d
from .ocrnet import OCRHead
from .output import SegmentationOutput
from .segmentation_model import SegmentationModel
from .upernet import FCNHead, PyramidPooling, UPerNetHead
from .weights import lite0_checkpoint_path, lite0_state_dict, load_weights
from .wrap import WrappedModel, model_logits, wrap_model

__all__ = [
    "ASPP",
    "HEADS",
    "Backbone",
    "WrappedModel",
    "load_weights",
    "ConvBNReLU",
    "DeepLabV3Head",
    "FCNHead",
    "FPNHead",
    "HRNetHead",
    "OCRHead",
    "PyramidPooling",
    "SegmentationModel",
    "SegmentationOutput",
    "UPerNetHead",
    "adaptive_avg_pool2d",
    "create_model",
    "list_heads",
    "model_logits",
    "lite0_checkpoint_path",
    "lite0_state_dict",
    "wrap_model",
]
