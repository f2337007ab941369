"""Base class of the file-backed data sets: pairing, label mapping, checks and the item contract.

An item is ``{"image": float32 (3, H, W), "mask": int64 (H, W), "stem": str}`` with 255 = ignore.
Without a ``transform`` the image is scaled to [0, 1] and not normalised.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .errors import DataError, MissingDataError, preview
from .io import IMAGE_EXTENSIONS, check_mask_mode, read_header, read_image, read_mask

__all__ = [
    "IGNORE_INDEX",
    "Sample",
    "SegmentationDataset",
    "make_lut",
    "to_sample",
    "default_palette",
    "require_dir",
    "pair_by_stem",
]

IGNORE_INDEX = 255
CHECKS = ("none", "header", "full")
FULL_CHECK_HINT = (
    'run the full check to find every bad file before training starts: check="full" '
    "(SegmentationDataModule(check=\"full\"), command line --data.check full)"
)

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class Sample(NamedTuple):
    """One image/mask file pair."""

    image: Path
    mask: Path
    stem: str


def make_lut(mapping: Mapping[int, int], size: int = 256) -> np.ndarray:
    """Look-up table raw label -> class index; raw values absent from ``mapping`` are invalid (-1)."""
    lut = np.full(size, -1, dtype=np.int16)
    for raw, cls in mapping.items():
        lut[raw] = cls
    return lut


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct RGB colours for ``n`` classes (the PASCAL VOC bit-interleaving colour map)."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i + 1  # skip black, which reads as "nothing" in overlays
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def to_sample(image: np.ndarray, mask: np.ndarray, stem: str) -> dict[str, Any]:
    """Wrap decoded arrays as torchvision tv_tensors so that v2 transforms treat them jointly.

    Args:
        image: ``uint8 (H, W, 3)``.
        mask: ``uint8 (H, W)`` class indices, 255 = ignore.
    """
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
    msk = torch.from_numpy(np.ascontiguousarray(mask))
    return {"image": tv_tensors.Image(img), "mask": tv_tensors.Mask(msk), "stem": stem}


def finalize(sample: dict[str, Any]) -> dict[str, Any]:
    """Default conversion: image to float32 in [0, 1], mask to int64, plain tensors."""
    image = sample["image"].as_subclass(torch.Tensor)
    if not image.is_floating_point():
        image = image.float().div_(255.0)
    out = dict(sample)
    out["image"] = image
    out["mask"] = sample["mask"].as_subclass(torch.Tensor).long()
    return out


def require_dir(path: str | Path | None, what: str) -> Path:
    """``path`` as a ``Path``, or a :class:`MissingDataError` naming it."""
    if path is None:
        raise MissingDataError(f"{what}: no root folder given")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MissingDataError(f"{what}: folder not found: {path}")
    return path


def list_images(folder: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> dict[str, Path]:
    """``stem -> path`` for the image files directly in ``folder``; duplicate stems are an error."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in extensions:
            if p.stem in found:
                raise DataError(f"two files share the stem {p.stem!r}: {found[p.stem]} and {p}")
            found[p.stem] = p
    return found


def pair_by_stem(
    images: Mapping[str, Path], masks: Mapping[str, Path], *, where: str, strict_masks: bool = True
) -> list[Sample]:
    """Pair images and masks by stem, failing on images without a mask (and, if ``strict_masks``,
    on masks without an image)."""
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DataError(f"{where}: {len(missing)} image(s) without a mask: {preview(missing)}")
    orphans = sorted(set(masks) - set(images))
    if strict_masks and orphans:
        raise DataError(f"{where}: {len(orphans)} mask(s) without an image: {preview(orphans)}")
    return [Sample(images[s], masks[s], s) for s in sorted(images)]


def _describe(lut: np.ndarray) -> str:
    valid = np.flatnonzero(lut >= 0).tolist()
    runs: list[str] = []
    start = prev = None
    for v in [*valid, None]:
        if v is not None and prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            runs.append(str(start) if start == prev else f"{start}..{prev}")
        start = prev = v
    return ", ".join(runs)


class SegmentationDataset(Dataset):
    """Image/mask pairs on disk with a raw-label -> class-index mapping.

    Args:
        samples: the file pairs (must not be empty).
        classes: class names, index = class id.
        palette: one RGB triple per class.
        lut: raw label -> class index (255 = ignore, -1 = invalid raw value), see :func:`make_lut`.
        transform: callable on ``{"image": tv_tensors.Image uint8 (3,H,W), "mask": tv_tensors.Mask
            uint8 (H,W), "stem"}`` returning the item (see :mod:`scalecontrast.data.transforms`).
            ``None``: image as float in [0, 1], mask as int64.
        check: what to check at construction, every file pair, raising one :class:`DataError`
            that lists the bad files: ``"header"`` (default, about 0.3 ms per pair) reads the files'
            headers only (no pixel is decoded): unreadable files, image/mask size mismatches, colour
            (RGB) or otherwise unsupported mask modes, and files whose end marker is missing (a
            truncated JPEG/PNG; such a file is then decoded to tell it from one with trailing
            data); ``"full"`` decodes every image and mask and checks the label values against the
            classes and ignore (255) too (seconds per thousand images); ``"none"`` checks nothing.
            Items are always checked when loaded; an error found then names the file and points
            to ``check="full"``.
        rgb_masks: accept 3-channel masks with the id repeated in every channel.
        where: a description of the data set's location for error messages.
    """

    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        classes: Sequence[str],
        palette: Sequence[tuple[int, int, int]] | None = None,
        lut: np.ndarray | None = None,
        transform: Transform | None = None,
        check: str = "header",
        rgb_masks: bool = False,
        where: str = "",
    ) -> None:
        if check not in CHECKS:
            raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
        self.where = where
        if len(samples) == 0:
            raise MissingDataError(f"{where}: no images found")
        self.samples = list(samples)
        self.classes = tuple(classes)
        self.palette = tuple(tuple(int(v) for v in c) for c in (palette or default_palette(len(classes))))
        if len(self.palette) != len(self.classes):
            raise ValueError(f"{len(self.palette)} palette colours for {len(self.classes)} classes")
        if lut is None:
            lut = make_lut({**{i: i for i in range(len(self.classes))}, IGNORE_INDEX: IGNORE_INDEX})
        self.lut = lut
        self.transform = transform
        self.rgb_masks = rgb_masks
        self.check = check
        if check != "none":
            self.verify(full=check == "full")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.num_classes} classes, {self.where})"

    # -- checks ---------------------------------------------------------------------------------

    def _check_sizes(self, s: Sample, image_hw: tuple[int, int], mask_hw: tuple[int, int]) -> None:
        if tuple(image_hw) != tuple(mask_hw):
            raise DataError(
                f"mask {s.mask} is {mask_hw[0]}x{mask_hw[1]} (HxW) but its image {s.image} is "
                f"{image_hw[0]}x{image_hw[1]}"
            )

    def encode(self, raw: np.ndarray, path: Path | str = "<mask>") -> np.ndarray:
        """Map a raw mask ``(H, W)`` to class indices ``uint8 (H, W)`` (255 = ignore).

        Raises:
            DataError: naming ``path`` and the raw values that are neither a class nor ignore.
        """
        lut = self.lut
        if raw.size and (int(raw.max()) >= len(lut) or int(raw.min()) < 0):
            bad = np.unique(raw[(raw >= len(lut)) | (raw < 0)])
            raise DataError(
                f"mask {path} holds label value(s) {preview(bad.tolist())} outside the valid raw "
                f"values {_describe(lut)}"
            )
        mapped = lut[raw]
        if raw.size and int(mapped.min()) < 0:
            bad = np.unique(raw[mapped < 0])
            raise DataError(
                f"mask {path} holds label value(s) {preview(bad.tolist())} outside the valid raw "
                f"values {_describe(lut)}"
            )
        return mapped.astype(np.uint8)

    def _check_header(self, s: Sample) -> tuple[tuple[int, int], None]:
        image, mask = read_header(s.image), read_header(s.mask)
        check_mask_mode(s.mask, mask.mode, rgb_ok=self.rgb_masks)
        self._check_sizes(s, (image.height, image.width), (mask.height, mask.width))
        if not image.complete:  # no end marker: truncated, or trailing data after the image? decode
            read_image(s.image)
        if not mask.complete:
            read_mask(s.mask, rgb_ok=self.rgb_masks)
        return (image.height, image.width), None

    def _check_full(self, s: Sample) -> tuple[tuple[int, int], np.ndarray]:
        image = read_image(s.image)
        raw = read_mask(s.mask, rgb_ok=self.rgb_masks)
        self._check_sizes(s, image.shape[:2], raw.shape)
        return image.shape[:2], np.unique(self.encode(raw, s.mask))

    def verify(self, *, full: bool = True) -> dict[str, Any]:
        """Check every file pair; raise one :class:`DataError` listing the bad ones.

        ``full=False`` reads headers only (sizes, modes, readability, end markers; see ``check``);
        ``full=True`` decodes every image and mask (in threads) and checks the label values.
        Returns a summary: number of images, set of image sizes, and (when ``full``) the class
        indices seen.
        """
        check = self._check_full if full else self._check_header

        def run(s: Sample) -> tuple[Any, DataError | None]:
            try:
                return check(s), None
            except DataError as err:
                return None, err

        if full:
            with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
                results = list(pool.map(run, self.samples))
        else:
            results = [run(s) for s in self.samples]
        errors = [err for _, err in results if err is not None]
        if len(errors) == 1:
            raise errors[0]
        if errors:
            listed = "\n  ".join(str(e) for e in errors[:10])
            more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
            raise DataError(f"{self.where}: {len(errors)} of {len(self.samples)} file pairs are bad:\n  {listed}{more}")
        sizes = {tuple(hw) for (hw, _), _ in results}
        summary: dict[str, Any] = {"images": len(self.samples), "sizes": sorted(sizes)}
        if full:
            seen = np.zeros(256, dtype=bool)
            for (_, classes), _ in results:
                seen[classes] = True
            summary["classes_present"] = [int(i) for i in np.flatnonzero(seen[: self.num_classes])]
            summary["has_ignore"] = bool(seen[IGNORE_INDEX])
        return summary

    # -- loading --------------------------------------------------------------------------------

    def load(self, index: int) -> dict[str, Any]:
        """The item before any transform: ``tv_tensors.Image uint8 (3,H,W)``, ``tv_tensors.Mask uint8
        (H,W)``, stem."""
        s = self.samples[index]
        try:
            image = read_image(s.image)
            raw = read_mask(s.mask, rgb_ok=self.rgb_masks)
            self._check_sizes(s, image.shape[:2], raw.shape)
            mask = self.encode(raw, s.mask)
        except DataError as err:
            if self.check == "full":
                raise
            raise type(err)(f"{err}\n(found when loading item {index}; {FULL_CHECK_HINT})") from err
        return to_sample(image, mask, s.stem)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        sample = self.load(index)
        if self.transform is not None:
            return self.transform(sample)
        return finalize(sample)
