"""ADE20K SceneParsing (150 classes).

``root/ADEChallengeData2016/images/{training,validation}/*.jpg`` with
``annotations/{training,validation}/*.png`` (``root`` may also be the ``ADEChallengeData2016``
folder itself). Raw 0 (other) becomes 255, raw k becomes k-1.
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

__all__ = ["ADE20K", "ADE20K_CLASSES"]

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair",
    "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box",
    "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet",
    "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower",
    "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle",
    "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower",
    "radiator", "glass", "clock", "flag",
)  # fmt: skip
SPLITS = {"train": "training", "val": "validation"}


def ade20k_lut():
    """Raw 0 -> 255, raw k (1..150) -> k-1."""
    return make_lut({0: IGNORE_INDEX, **{k: k - 1 for k in range(1, 151)}, IGNORE_INDEX: IGNORE_INDEX})


class ADE20K(SegmentationDataset):
    """ADE20K SceneParsing (20210 train, 2000 val images).

    Args:
        root: folder holding ``ADEChallengeData2016/`` (or that folder itself).
        split: ``"train"`` or ``"val"`` (``"training"``/``"validation"`` are accepted too).
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
        folder = SPLITS.get(split, split)
        if folder not in SPLITS.values():
            raise ValueError(f"ade20k: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        root = require_dir(root, "ade20k")
        base = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
        img_dir, ann_dir = base / "images" / folder, base / "annotations" / folder
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise MissingDataError(f"ade20k: folder not found: {d}")
        samples = pair_by_stem(
            list_images(img_dir), list_images(ann_dir, (".png",)), where=f"ade20k {split} ({img_dir})"
        )
        super().__init__(
            samples,
            classes=ADE20K_CLASSES,
            lut=ade20k_lut(),
            transform=transform,
            check=check,
            where=f"ade20k {split} at {base}",
        )
        self.root, self.split = base, split
