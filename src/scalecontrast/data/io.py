"""Reading images and label masks with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError, MissingDataError

__all__ = ["IMAGE_EXTENSIONS", "read_image", "read_mask", "read_size"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError as err:
        raise MissingDataError(f"file not found: {path}") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read image file {path}: {err}") from err


def read_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file, reading its header only (cheap)."""
    with _open(Path(path)) as im:
        return im.height, im.width


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as RGB.

    Returns:
        ``uint8`` array of shape ``(H, W, 3)``.
    Raises:
        DataError: the file is not an image, is truncated or otherwise undecodable.
    """
    path = Path(path)
    with _open(path) as im:
        try:
            im.load()
            arr = np.array(im.convert("RGB"))  # writable copy
        except (OSError, SyntaxError, ValueError) as err:
            raise DataError(f"cannot decode image {path} (truncated or corrupt?): {err}") from err
    return arr


def read_mask(path: str | Path, *, rgb_ok: bool = False) -> np.ndarray:
    """Decode a label mask holding one class index per pixel.

    Palette ("P") PNGs give their indices, 8- and 16-bit greyscale their values. A 3-channel mask is
    accepted only when ``rgb_ok`` and all channels are equal (the id repeated, as in CaDIS);
    a colour-coded mask is rejected with a clear error.

    Returns:
        integer array of shape ``(H, W)`` (``uint8``, or ``int32`` for 16-bit masks).
    """
    path = Path(path)
    with _open(path) as im:
        try:
            im.load()
            mode = im.mode
            if mode in ("RGB", "RGBA"):
                arr = np.asarray(im.convert("RGB"))
            elif mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.int32)
            elif mode in ("L", "P"):
                arr = np.asarray(im)
            else:
                raise DataError(f"mask {path} has unsupported image mode {mode!r}")
        except (OSError, SyntaxError) as err:
            raise DataError(f"cannot decode mask {path} (truncated or corrupt?): {err}") from err
    if arr.ndim == 3:
        if not rgb_ok:
            raise DataError(f"mask {path} has 3 channels; expected a single-channel mask of class indices")
        first = arr[..., 0]
        if not (np.array_equal(first, arr[..., 1]) and np.array_equal(first, arr[..., 2])):
            raise DataError(
                f"mask {path} is an RGB image whose channels differ (a colour-coded mask?); "
                "expected the class id in every channel"
            )
        arr = np.ascontiguousarray(first)
    return arr
