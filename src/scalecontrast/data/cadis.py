"""CaDIS: cataract surgery frames (Grammatikopoulou et al. 2021) with experiments 1, 2 and 3.

``root/VideoNN/Images/VideoN_frameNNNNNN.png`` and ``root/VideoNN/Labels/<same name>.png``; labels hold
raw ids 0..35 (single channel, or RGB with the id in every channel). Videos are split into train
{1,3,4,6,8,9,10,11,13,14,15,17,18,19,20,21,23,24,25}, val {5,7,16} and test {2,12,22}.
"""

from __future__ import annotations

import re
import warnings
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

__all__ = ["CaDIS", "CADIS_RAW_CLASSES", "CADIS_SPLITS", "cadis_experiment", "cadis_groups"]

CADIS_RAW_CLASSES = (
    "Pupil", "Surgical Tape", "Hand", "Eye Retractors", "Iris", "Skin", "Cornea",
    "Hydrodissection Cannula", "Viscoelastic Cannula", "Capsulorhexis Cystotome", "Rycroft Cannula",
    "Bonn Forceps", "Primary Knife", "Phacoemulsifier Handpiece", "Lens Injector", "I/A Handpiece",
    "Secondary Knife", "Micromanipulator", "I/A Handpiece Handle", "Capsulorhexis Forceps",
    "Rycroft Cannula Handle", "Phacoemulsifier Handpiece Handle", "Capsulorhexis Cystotome Handle",
    "Secondary Knife Handle", "Lens Injector Handle", "Suture Needle", "Needle Holder",
    "Charleux Cannula", "Primary Knife Handle", "Vitrectomy Handpiece", "Mendez Ring", "Marker",
    "Hydrodissection Cannula Handle", "Troutman Forceps", "Cotton", "Iris Hooks",
)  # fmt: skip
CADIS_SPLITS = {
    "train": (1, 3, 4, 6, 8, 9, 10, 11, 13, 14, 15, 17, 18, 19, 20, 21, 23, 24, 25),
    "val": (5, 7, 16),
    "test": (2, 12, 22),
}
_ANATOMY = CADIS_RAW_CLASSES[:7]
_EXP2_GROUPS = (
    ("Cannula", (7, 8, 10, 20, 27, 32)),
    ("Capsulorhexis Cystotome", (9, 22)),
    ("Tissue Forceps", (11, 33)),
    ("Primary Knife", (12, 28)),
    ("Phaco Handpiece", (13, 21)),
    ("Lens Injector", (14, 24)),
    ("I/A Handpiece", (15, 18)),
    ("Secondary Knife", (16, 23)),
    ("Micromanipulator", (17,)),
    ("Capsulorhexis Forceps", (19,)),
)


def cadis_groups(num_classes: int) -> dict[str, list[int]]:
    """Class groups scored separately on CaDIS (Grammatikopoulou et al.; Pissas et al. report them):
    anatomy = Pupil, Iris, Skin, Cornea; others = Surgical Tape, Hand, Eye Retractors;
    instruments = every class from 7 on, for an experiment with ``num_classes`` classes."""
    return {"anatomy": [0, 4, 5, 6], "others": [1, 2, 3], "instruments": list(range(7, num_classes))}


def cadis_experiment(experiment: int) -> tuple[tuple[str, ...], dict[int, int]]:
    """Class names and the raw id -> class mapping of experiment 1 (8 classes), 2 (17) or 3 (25)."""
    mapping = {i: i for i in range(7)}
    if experiment == 1:
        mapping.update({i: 7 for i in range(7, 36)})
        classes = (*_ANATOMY, "Instrument")
    elif experiment == 2:
        for k, (_, ids) in enumerate(_EXP2_GROUPS, start=7):
            mapping.update({i: k for i in ids})
        mapping.update({i: IGNORE_INDEX for i in (25, 26, 29, 30, 31, 34, 35)})
        classes = (*_ANATOMY, *(name for name, _ in _EXP2_GROUPS))
    elif experiment == 3:
        mapping.update({i: i for i in range(7, 25)})
        mapping.update({i: IGNORE_INDEX for i in range(25, 36)})
        classes = CADIS_RAW_CLASSES[:25]
    else:
        raise ValueError(f"cadis: experiment must be 1, 2 or 3, got {experiment}")
    mapping[IGNORE_INDEX] = IGNORE_INDEX
    return classes, mapping


_VIDEO = re.compile(r"^Video(\d+)$")


class CaDIS(SegmentationDataset):
    """CaDIS (25 videos, 4670 frames; 540x960).

    Args:
        root: folder holding ``Video01/`` ... ``Video25/``.
        split: ``"train"``, ``"val"`` or ``"test"`` (the official video split).
        experiment: 1 (8 classes, no ignore), 2 (17 classes) or 3 (25 classes).
        transform, check: see :class:`~scalecontrast.data.base.SegmentationDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        experiment: int = 2,
        transform: Transform | None = None,
        check: str = "header",
    ) -> None:
        if split not in CADIS_SPLITS:
            raise ValueError(f"cadis: unknown split {split!r}; valid splits: {', '.join(CADIS_SPLITS)}")
        classes, mapping = cadis_experiment(experiment)
        root = require_dir(root, "cadis")
        videos = {int(m.group(1)): p for p in root.iterdir() if p.is_dir() and (m := _VIDEO.match(p.name))}
        wanted = [videos[v] for v in CADIS_SPLITS[split] if v in videos]
        if not wanted:
            raise MissingDataError(
                f"cadis {split}: none of the videos {list(CADIS_SPLITS[split])} found in {root} "
                "(expected folders Video01 ... Video25)"
            )
        absent = [v for v in CADIS_SPLITS[split] if v not in videos]
        if absent:
            warnings.warn(f"cadis {split}: videos {absent} not found in {root}; using the others", stacklevel=2)
        samples = []
        for vdir in wanted:
            img_dir, lab_dir = vdir / "Images", vdir / "Labels"
            for d in (img_dir, lab_dir):
                if not d.is_dir():
                    raise MissingDataError(f"cadis: folder not found: {d}")
            samples += pair_by_stem(list_images(img_dir), list_images(lab_dir, (".png",)), where=f"cadis {vdir.name}")
        super().__init__(
            samples,
            classes=classes,
            lut=make_lut(mapping),
            transform=transform,
            check=check,
            rgb_masks=True,
            where=f"cadis {split} (experiment {experiment}) at {root}",
        )
        self.root, self.split, self.experiment = root, split, experiment
        self.class_groups = cadis_groups(len(classes))
        self.videos = [p.name for p in wanted]
