"""PASCAL-Context (59 classes, or 60 with background).

``root/VOCdevkit/VOC2010/JPEGImages/<stem>.jpg``, ``SegmentationClassContext/<stem>.png`` (values
0..59, 0 = background) and ``ImageSets/SegmentationContext/{train,val}.txt`` (``root`` may also be the
``VOC2010`` folder). ``num_classes=59`` maps 0 -> 255 and k -> k-1; ``num_classes=60`` keeps 0 as
background.
"""

from __future__ import annotations

from pathlib import Path

from .base import IGNORE_INDEX, Sample, SegmentationDataset, Transform, make_lut, require_dir
from .errors import DataError, MissingDataError, preview

__all__ = ["PascalContext", "PASCAL_CONTEXT_CLASSES"]

PASCAL_CONTEXT_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup",
    "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse",
    "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate", "platform",
    "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky", "snow", "sofa",
    "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
)  # fmt: skip


def pascal_context_lut(num_classes: int):
    if num_classes == 59:
        return make_lut({0: IGNORE_INDEX, **{k: k - 1 for k in range(1, 60)}, IGNORE_INDEX: IGNORE_INDEX})
    return make_lut({**{k: k for k in range(60)}, IGNORE_INDEX: IGNORE_INDEX})


class PascalContext(SegmentationDataset):
    """PASCAL-Context (4996 train, 5104 val images).

    Args:
        root: folder holding ``VOCdevkit/VOC2010`` (or the ``VOC2010`` folder itself).
        split: a list name in ``ImageSets/SegmentationContext`` (``"train"``, ``"val"``).
        num_classes: 59 (default, background ignored) or 60 (background is class 0).
        transform, check: see :class:`~scalecontrast.data.base.SegmentationDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        num_classes: int = 59,
        transform: Transform | None = None,
        check: str = "header",
    ) -> None:
        if num_classes not in (59, 60):
            raise ValueError(f"pascal_context: num_classes must be 59 or 60, got {num_classes}")
        root = require_dir(root, "pascal_context")
        voc = root / "VOCdevkit" / "VOC2010"
        base = voc if voc.is_dir() else root
        list_file = base / "ImageSets" / "SegmentationContext" / f"{split}.txt"
        if not list_file.is_file():
            raise MissingDataError(f"pascal_context: split list not found: {list_file}")
        stems = [s.strip() for s in list_file.read_text().split() if s.strip()]
        if not stems:
            raise DataError(f"pascal_context: split list {list_file} is empty")
        samples, no_image, no_mask = [], [], []
        for stem in stems:
            img = base / "JPEGImages" / f"{stem}.jpg"
            mask = base / "SegmentationClassContext" / f"{stem}.png"
            if not img.is_file():
                no_image.append(stem)
            elif not mask.is_file():
                no_mask.append(stem)
            else:
                samples.append(Sample(img, mask, stem))
        if no_image:
            raise MissingDataError(
                f"pascal_context {split}: {len(no_image)} listed image(s) not found in "
                f"{base / 'JPEGImages'}: {preview(no_image)}"
            )
        if no_mask:
            raise DataError(f"pascal_context {split}: {len(no_mask)} image(s) without a mask: {preview(no_mask)}")
        classes = PASCAL_CONTEXT_CLASSES if num_classes == 59 else ("background", *PASCAL_CONTEXT_CLASSES)
        super().__init__(
            samples,
            classes=classes,
            lut=pascal_context_lut(num_classes),
            transform=transform,
            check=check,
            where=f"pascal_context {split} at {base}",
        )
        self.root, self.split = base, split
