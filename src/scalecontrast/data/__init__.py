"""Data sets, joint image/mask transforms and the CamVid download.

>>> from scalecontrast.data import get_dataset, train_transforms
>>> ds = get_dataset("synthetic", None, "train", transform=train_transforms((96, 96)))
>>> item = ds[0]  # {"image": float32 (3, 96, 96), "mask": int64 (96, 96), "stem": str}

This package never imports ``scalecontrast.models``, ``losses``, ``engine`` or ``cli``.
"""

from .base import IGNORE_INDEX, SegmentationDataset, default_palette
from .download import prepare_camvid, verify_camvid
from .errors import DataError, MissingDataError
from .factory import DATASETS, get_dataset
from .synthetic import SyntheticShapes
from .transforms import (
    HALF_MEAN,
    HALF_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PadToSize,
    RandomCropBalanced,
    RandomRescale,
    ResizeImage,
    eval_transforms,
    train_transforms,
)

__all__ = [
    "DATASETS",
    "DataError",
    "HALF_MEAN",
    "HALF_STD",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MissingDataError",
    "PadToSize",
    "RandomCropBalanced",
    "RandomRescale",
    "ResizeImage",
    "SegmentationDataset",
    "SyntheticShapes",
    "default_palette",
    "eval_transforms",
    "get_dataset",
    "prepare_camvid",
    "train_transforms",
    "verify_camvid",
]
