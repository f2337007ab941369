"""Reading images and label masks with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError, MissingDataError

__all__ = ["IMAGE_EXTENSIONS", "Header", "check_mask_mode", "read_header", "read_image", "read_mask", "read_size",
           "to_rgb8"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MASK_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I")  # one class index per pixel
RGB_MASK_MODES = ("RGB", "RGBA")  # accepted with rgb_ok: the id repeated in every channel
# Last bytes of a complete file: JPEG's end-of-image marker, PNG's IEND chunk.
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
_TAIL = 64
_EXIF_ORIENTATION = 0x0112


class Header(NamedTuple):
    """What a file's header says, without decoding pixels (see :func:`read_header`)."""

    height: int
    width: int
    mode: str  # PIL mode: "RGB", "L", "P", "I;16" ...
    channels: int
    complete: bool  # False: a JPEG/PNG without its end marker in the last bytes (truncated?)


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError as err:
        raise MissingDataError(f"file not found: {path}") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read image file {path}: {err}") from err


def _ends_with_marker(path: Path, fmt: str | None) -> bool:
    marker = _END_MARKERS.get(fmt or "")
    if marker is None:
        return True
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(f.tell() - _TAIL, 0))
        return marker in f.read()


def read_header(path: str | Path) -> Header:
    """Size, mode and channel count of an image file from its header, and whether its last bytes
    hold the format's end marker (JPEG ``FFD9``, PNG ``IEND``): cheap, no pixel is decoded.

    A file without the marker is likely truncated, but may instead carry trailing data after a
    complete image; decode it (:func:`read_image`, :func:`read_mask`) to tell.
    """
    path = Path(path)
    with _open(path) as im:
        h, w = (im.width, im.height) if _transposed(im) else (im.height, im.width)
        header = (h, w, im.mode, len(im.getbands()))
        fmt = im.format
    return Header(*header, complete=_ends_with_marker(path, fmt))


def check_mask_mode(path: str | Path, mode: str, *, rgb_ok: bool = False) -> None:
    """Raise :class:`DataError` naming ``path`` unless a mask of PIL ``mode`` can hold class indices."""
    if mode in RGB_MASK_MODES and not rgb_ok:
        raise DataError(
            f"mask {path} has {len(mode)} channels (mode {mode}), a colour-coded mask? Expected a single-channel "
            "mask of class indices (8-bit greyscale or palette PNG)"
        )
    if mode not in MASK_MODES + RGB_MASK_MODES:
        raise DataError(f"mask {path} has unsupported image mode {mode!r}; expected one of {', '.join(MASK_MODES)}")


def _transposed(im: Image.Image) -> bool:
    """Whether the EXIF orientation tag turns the image by 90 degrees (orientations 5 to 8)."""
    try:
        return im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels are read as stored
        return False


def read_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file as a viewer shows it (EXIF orientation), reading its header only."""
    with _open(Path(path)) as im:
        return (im.width, im.height) if _transposed(im) else (im.height, im.width)


def to_rgb8(im: Image.Image) -> np.ndarray:
    """A decoded PIL image as ``uint8`` RGB ``(H, W, 3)``, in the orientation a viewer shows.

    One rule for every bit depth: integer pixel values are scaled by their type's maximum to 0..255
    (16-bit: ``round(v * 255 / 65535)``; a 32-bit integer image whose values fit in 16 bits counts as
    16-bit), floating-point images are taken as 0..1 when their values lie there and clipped to
    0..255 otherwise; 8-bit images are unchanged. The EXIF orientation tag is applied.
    """
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            scale = 255.0 if arr.size and arr.min() >= 0 and arr.max() <= 1 else 1.0
        elif im.mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
            scale = 255.0 / float(2**32 - 1)
            arr = arr - arr.min()
        else:
            scale = 255.0 / 65535.0
        grey = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(im.convert("RGB"))  # 8 bits per channel (PIL reduces 16-bit RGB PNGs itself)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as 8-bit RGB of any bit depth and mode, upright (see :func:`to_rgb8`).

    Returns:
        ``uint8`` array of shape ``(H, W, 3)``.
    Raises:
        DataError: the file is not an image, is truncated or otherwise undecodable.
    """
    path = Path(path)
    with _open(path) as im:
        try:
            im.load()
            arr = to_rgb8(im)
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
            im = ImageOps.exif_transpose(im)  # upright, as its image (a no-op without the EXIF tag)
            mode = im.mode
            check_mask_mode(path, mode, rgb_ok=True)  # 3 channels: checked below
            if mode in RGB_MASK_MODES:
                arr = np.asarray(im.convert("RGB"))
            elif mode in ("L", "P"):
                arr = np.asarray(im)
            else:
                arr = np.asarray(im, dtype=np.int32)
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
