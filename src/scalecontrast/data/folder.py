"""A generic folder layout for users' own data.

::

    root/classes.txt                      one class name per line (line i = class i)
    root/palette.txt                      optional: "R G B" per line, one per class
    root/{split}/images/<stem>.(jpg|png)
    root/{split}/masks/<stem>.png         class index per pixel, 255 = ignore
"""

from __future__ import annotations

from pathlib import Path

from .base import SegmentationDataset, Transform, list_images, pair_by_stem, require_dir
from .errors import DataError, MissingDataError

__all__ = ["FolderDataset", "read_classes", "read_palette"]


def read_classes(path: Path) -> list[str]:
    """Class names from ``classes.txt`` (blank lines ignored)."""
    if not path.is_file():
        raise MissingDataError(f"folder: class list not found: {path} (one class name per line)")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DataError(f"folder: class list {path} is empty")
    if len(names) > 255:
        raise DataError(f"folder: {path} lists {len(names)} classes; at most 255 (255 is the ignore label)")
    return names


def read_palette(path: Path, n: int) -> list[tuple[int, int, int]] | None:
    """Optional ``palette.txt``: ``R G B`` (or ``R,G,B``) per line, one line per class."""
    if not path.is_file():
        return None
    rows = [line.replace(",", " ").split() for line in path.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r]
    try:
        colours = [(int(r), int(g), int(b)) for r, g, b in rows]
    except ValueError as err:
        raise DataError(f"folder: {path} must hold 'R G B' per line: {err}") from err
    if len(colours) != n:
        raise DataError(f"folder: {path} has {len(colours)} colours for {n} classes")
    return colours


class FolderDataset(SegmentationDataset):
    """Images and index masks in ``root/{split}/{images,masks}`` (see module doc).

    Args:
        root: the data set folder.
        split: any sub-folder name of ``root`` (``"train"``, ``"val"``, ...).
        classes: override ``classes.txt``.
        transform, check: see :class:`~scalecontrast.data.base.SegmentationDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        classes: list[str] | None = None,
        transform: Transform | None = None,
        check: str = "header",
    ) -> None:
        root = require_dir(root, "folder")
        names = list(classes) if classes is not None else read_classes(root / "classes.txt")
        base = root / split
        if not base.is_dir():
            splits = sorted(p.name for p in root.iterdir() if (p / "images").is_dir())
            raise MissingDataError(f"folder: split folder not found: {base} (splits found: {splits or 'none'})")
        for sub in ("images", "masks"):
            if not (base / sub).is_dir():
                raise MissingDataError(f"folder: {base / sub} not found")
        samples = pair_by_stem(
            list_images(base / "images"), list_images(base / "masks", (".png",)), where=f"folder {base}"
        )
        super().__init__(
            samples,
            classes=names,
            palette=read_palette(root / "palette.txt", len(names)),
            transform=transform,
            check=check,
            where=f"folder {split} at {root}",
        )
        self.root, self.split = root, split
