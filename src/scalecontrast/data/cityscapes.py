"""Cityscapes (fine annotations, 19 evaluation classes).

``root/leftImg8bit/{split}/{city}/<stem>_leftImg8bit.png`` with
``root/gtFine/{split}/{city}/<stem>_gtFine_labelIds.png``. Label ids
7,8,11,12,13,17,19,20,21,22,23,24,25,26,27,28,31,32,33 become train ids 0..18; every other id
(0..33, and 255) becomes 255.
"""

from __future__ import annotations

from pathlib import Path

from .base import IGNORE_INDEX, Sample, SegmentationDataset, Transform, make_lut, require_dir
from .errors import DataError, MissingDataError, preview

__all__ = ["Cityscapes", "CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "CITYSCAPES_LABEL_IDS"]

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"
SPLITS = ("train", "val", "test")


def cityscapes_lut():
    """Label id -> train id (ids 0..33 valid; non-evaluated ids and 255 -> 255)."""
    mapping = {i: IGNORE_INDEX for i in range(34)}
    mapping.update({lid: k for k, lid in enumerate(CITYSCAPES_LABEL_IDS)})
    mapping[IGNORE_INDEX] = IGNORE_INDEX
    return make_lut(mapping)


def cityscapes_samples(root: Path, split: str) -> list[Sample]:
    img_root, gt_root = root / "leftImg8bit" / split, root / "gtFine" / split
    for d in (img_root, gt_root):
        if not d.is_dir():
            raise MissingDataError(f"cityscapes: folder not found: {d}")
    samples, missing = [], []
    for img in sorted(img_root.glob(f"*/*{IMAGE_SUFFIX}")):
        stem = img.name[: -len(IMAGE_SUFFIX)]
        mask = gt_root / img.parent.name / f"{stem}{MASK_SUFFIX}"
        if mask.is_file():
            samples.append(Sample(img, mask, stem))
        else:
            missing.append(f"{img.parent.name}/{stem}")
    if missing:
        raise DataError(f"cityscapes {split}: {len(missing)} image(s) without a mask: {preview(missing)}")
    if not samples:
        raise MissingDataError(f"cityscapes: no '*{IMAGE_SUFFIX}' images in {img_root}/<city>/")
    return samples


class Cityscapes(SegmentationDataset):
    """Cityscapes fine (2975 train, 500 val, 1525 test; 1024x2048), 19 classes.

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform, check: see :class:`~scalecontrast.data.base.SegmentationDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Transform | None = None,
        check: str = "header",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"cityscapes: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        root = require_dir(root, "cityscapes")
        super().__init__(
            cityscapes_samples(root, split),
            classes=CITYSCAPES_CLASSES,
            palette=CITYSCAPES_PALETTE,
            lut=cityscapes_lut(),
            transform=transform,
            check=check,
            where=f"cityscapes {split} at {root}",
        )
        self.root, self.split = root, split
