"""Joint image/mask augmentation with torchvision transforms v2 (the paper's recipe).

Transforms act on a dict ``{"image": tv_tensors.Image uint8 (3,H,W), "mask": tv_tensors.Mask uint8
(H,W), "stem": str}`` as produced by the data sets, and return ``{"image": float32 (3,h,w),
"mask": int64 (h,w), "stem"}``. Geometric ops move image and mask together (masks are resized with
nearest neighbour and padded with 255); photometric ops touch the image only.

Normalisation follows the backbone: :data:`IMAGENET_MEAN`/:data:`IMAGENET_STD` for timm ImageNet
weights, :data:`HALF_MEAN`/:data:`HALF_STD` (0.5/0.5) for EfficientNet-Lite0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from scalecontrast.constants import HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD  # noqa: F401 (re-exported)

from .base import IGNORE_INDEX

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "HALF_MEAN",
    "HALF_STD",
    "RandomRescale",
    "PadToSize",
    "RandomCropBalanced",
    "ResizeImage",
    "train_transforms",
    "eval_transforms",
]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _hw(flat_inputs: list[Any]) -> tuple[int, int]:
    for x in flat_inputs:
        if isinstance(x, (tv_tensors.Image, tv_tensors.Mask)):
            return tuple(x.shape[-2:])  # type: ignore[return-value]
    raise TypeError("expected a tv_tensors.Image or tv_tensors.Mask in the sample")


def _find_mask(flat_inputs: list[Any]) -> torch.Tensor | None:
    for x in flat_inputs:
        if isinstance(x, tv_tensors.Mask):
            return x
    return None


class RandomRescale(v2.Transform):
    """Resize by a random factor ``s ~ U(scale_range)``, the height additionally by ``a ~
    U(aspect_range)`` (aspect jitter). Images: bilinear with antialias; masks: nearest.

    Output size ``(round(H*s*a), round(W*s))``.
    """

    def __init__(self, scale_range: Sequence[float] = (0.5, 2.0), aspect_range: Sequence[float] = (0.9, 1.1)) -> None:
        super().__init__()
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.aspect_range = (float(aspect_range[0]), float(aspect_range[1]))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _hw(flat_inputs)
        s = torch.empty(()).uniform_(*self.scale_range).item()
        a = torch.empty(()).uniform_(*self.aspect_range).item()
        return {"size": [max(1, round(h * s * a)), max(1, round(w * s))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        # the dispatcher picks nearest for tv_tensors.Mask; images use bilinear + antialias
        return self._call_kernel(F.resize, inpt, size=params["size"], antialias=True)

    # torchvision < 0.21 names
    _get_params = make_params
    _transform = transform


class PadToSize(v2.Transform):
    """Pad bottom/right up to at least ``size = (h, w)``: images with ``fill`` (0), masks with 255."""

    def __init__(self, size: int | Sequence[int], fill: int = 0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.size = _pair(size)
        self.fill = fill
        self.ignore_index = ignore_index

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _hw(flat_inputs)
        return {"padding": [0, 0, max(0, self.size[1] - w), max(0, self.size[0] - h)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["padding"]):
            return inpt
        fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else self.fill
        return self._call_kernel(F.pad, inpt, padding=params["padding"], fill=fill)

    _get_params = make_params
    _transform = transform


class RandomCropBalanced(v2.Transform):
    """Random crop of ``size = (h, w)`` that retries when one class dominates.

    Up to ``max_tries`` random windows are drawn; the first one where no single class covers more
    than ``max_ratio`` of the labelled (non-ignore) pixels, and that holds more than one class, is
    kept; otherwise the last window is used. The input must be at least ``size`` (pad first).
    """

    def __init__(
        self,
        size: int | Sequence[int],
        *,
        max_ratio: float = 0.75,
        max_tries: int = 10,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.size = _pair(size)
        self.max_ratio = max_ratio
        self.max_tries = max_tries
        self.ignore_index = ignore_index

    def _accept(self, window: torch.Tensor) -> bool:
        counts = torch.bincount(window.reshape(-1).long(), minlength=self.ignore_index + 1)
        counts[self.ignore_index] = 0
        total = int(counts.sum())
        return total > 0 and int((counts > 0).sum()) > 1 and int(counts.max()) <= self.max_ratio * total

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _hw(flat_inputs)
        ch, cw = self.size
        if h < ch or w < cw:
            raise ValueError(f"input {h}x{w} is smaller than the crop {ch}x{cw}; pad it first")
        mask = _find_mask(flat_inputs)
        tries = self.max_tries if mask is not None and self.max_ratio < 1.0 else 1
        top = left = 0
        for _ in range(max(1, tries)):
            top = int(torch.randint(0, h - ch + 1, ()).item())
            left = int(torch.randint(0, w - cw + 1, ()).item())
            if tries == 1 or self._accept(mask[..., top : top + ch, left : left + cw]):
                break
        return {"top": top, "left": left, "height": ch, "width": cw}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)

    _get_params = make_params
    _transform = transform


class ResizeImage(v2.Transform):
    """Resize the image only (bilinear, antialias) to ``size = (h, w)``, leaving the mask at its
    original size for scoring (the model's logits are upsampled to the mask)."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__()
        self.size = list(_pair(size))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resize, inpt, size=self.size, antialias=True)

    _transform = transform


def _to_output(mean: Sequence[float] | None, std: Sequence[float] | None) -> list[v2.Transform]:
    steps: list[v2.Transform] = [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True)
    ]
    if mean is not None and std is not None:
        steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    steps.append(v2.ToPureTensor())
    return steps


def train_transforms(
    crop_size: int | Sequence[int] = (512, 512),
    *,
    scale_range: Sequence[float] = (0.5, 2.0),
    aspect_range: Sequence[float] = (0.9, 1.1),
    crop_max_ratio: float = 0.75,
    crop_max_tries: int = 10,
    hflip: float = 0.5,
    color_jitter: bool = True,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    ignore_index: int = IGNORE_INDEX,
) -> v2.Compose:
    """The paper's training augmentation as one v2 pipeline.

    Random rescale (``scale_range``, aspect jitter ``aspect_range``) -> pad to ``crop_size`` (mask
    with ``ignore_index``) -> random crop ``crop_size`` retried while one class covers more than
    ``crop_max_ratio`` -> horizontal flip -> colour jitter (brightness, contrast, saturation in
    [2/3, 1.5], hue +-0.05) -> float in [0, 1] -> normalise with ``mean``/``std`` (``None``: skip).

    Returns:
        a callable mapping a sample dict to ``{"image": float32 (3, h, w), "mask": int64 (h, w),
        "stem"}`` with ``(h, w) = crop_size``.
    """
    crop = _pair(crop_size)
    steps: list[v2.Transform] = [
        RandomRescale(scale_range, aspect_range),
        PadToSize(crop, ignore_index=ignore_index),
        RandomCropBalanced(crop, max_ratio=crop_max_ratio, max_tries=crop_max_tries, ignore_index=ignore_index),
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    if color_jitter:
        steps.append(v2.ColorJitter(brightness=(2 / 3, 1.5), contrast=(2 / 3, 1.5), saturation=(2 / 3, 1.5), hue=0.05))
    return v2.Compose(steps + _to_output(mean, std))


def eval_transforms(
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    *,
    image_size: int | Sequence[int] | None = None,
) -> v2.Compose:
    """Evaluation: the mask stays the original-size label used for scoring.

    Image -> (optionally resized to ``image_size``, the image only) -> float in [0, 1] -> normalised
    with ``mean``/``std``; mask -> int64, unchanged.
    """
    steps: list[v2.Transform] = [ResizeImage(image_size)] if image_size is not None else []
    return v2.Compose(steps + _to_output(mean, std))
