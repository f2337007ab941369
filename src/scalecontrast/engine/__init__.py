"""Training engine: Lightning module and data module, metrics, inference, optimisers.

Uses :mod:`scalecontrast.losses`, :mod:`scalecontrast.models` and :mod:`scalecontrast.data`;
never imported by them.
"""

from scalecontrast.engine.datamodule import SegmentationDataModule
from scalecontrast.engine.export import (
    CheckpointError,
    InferenceModel,
    export_onnx,
    load_module,
    read_checkpoint,
)
from scalecontrast.engine.inference import predict, resize_logits, sliding_window
from scalecontrast.engine.metrics import (
    SegmentationMetrics,
    cadis_groups,
    format_scores,
    scores_from_confusion,
)
from scalecontrast.engine.module import SegmentationModule
from scalecontrast.engine.optim import build_optimizer, lr_lambda, param_groups

__all__ = [
    "CheckpointError",
    "InferenceModel",
    "SegmentationDataModule",
    "SegmentationMetrics",
    "SegmentationModule",
    "build_optimizer",
    "cadis_groups",
    "export_onnx",
    "format_scores",
    "load_module",
    "lr_lambda",
    "param_groups",
    "read_checkpoint",
    "predict",
    "resize_logits",
    "scores_from_confusion",
    "sliding_window",
]
