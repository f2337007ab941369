"""Training engine: Lightning module and data module, metrics, inference, optimisers.

Uses :mod:`scalecontrast.losses`, :mod:`scalecontrast.models` and :mod:`scalecontrast.data`;
never imported by them.
"""

from scalecontrast.data.io import read_image  # images as the engine reads them: any bit depth, upright
from scalecontrast.engine.checkpoint import (
    TRUSTED_PACKAGES,
    CheckpointError,
    UntrustedCheckpointError,
    load_module,
    read_checkpoint,
)
from scalecontrast.engine.datamodule import SegmentationDataModule
from scalecontrast.engine.export import InferenceModel, export_onnx
from scalecontrast.engine.hub import from_pretrained, load_for_inference, pretrained_module, save_pretrained
from scalecontrast.engine.inference import predict, sliding_window
from scalecontrast.engine.metrics import (
    SegmentationMetrics,
    cadis_groups,
    format_scores,
    scores_from_confusion,
)
from scalecontrast.engine.module import SegmentationModule
from scalecontrast.engine.optim import WarmupPolyLR, param_groups

__all__ = [
    "CheckpointError",
    "InferenceModel",
    "SegmentationDataModule",
    "SegmentationMetrics",
    "SegmentationModule",
    "TRUSTED_PACKAGES",
    "UntrustedCheckpointError",
    "WarmupPolyLR",
    "cadis_groups",
    "export_onnx",
    "format_scores",
    "from_pretrained",
    "load_for_inference",
    "load_module",
    "param_groups",
    "pretrained_module",
    "read_checkpoint",
    "read_image",
    "save_pretrained",
    "predict",
    "scores_from_confusion",
    "sliding_window",
]
