"""Inference helpers: whole image, sliding window and multi-scale + flip test-time augmentation; the
class-balanced embedding samples of a trained module (for t-SNE figures).

All functions take ``model_fn``, any callable mapping an image batch ``(B, 3, h, w)`` to logits
``(B, K, h', w')`` (any resolution; they are resized to the input size here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from scalecontrast.losses import sample_anchors
from scalecontrast.models.layers import resize

__all__ = ["predict", "sample_embeddings", "sliding_window"]

ModelFn = Callable[[Tensor], Tensor]


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def _forward(model_fn: ModelFn, image: Tensor) -> Tensor:
    return resize(model_fn(image), image.shape[-2:])


def sliding_window(
    model_fn: ModelFn,
    image: Tensor,
    crop_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
) -> Tensor:
    """Average the logits of overlapping crops.

    Windows start every ``stride`` pixels (default: ``crop_size``, no overlap); the last window
    of each row/column is shifted back to end at the border. An image smaller than the crop
    along a side is processed whole along that side, so a crop larger than the image is exactly
    whole-image inference.

    Args:
        image: ``(B, 3, H, W)``.
        crop_size: ``(h, w)`` or one int.
        stride: ``(h, w)``, one int or None.

    Returns:
        logits ``(B, K, H, W)``.
    """
    h_crop, w_crop = _pair(crop_size)
    h_stride, w_stride = _pair(stride) if stride is not None else (h_crop, w_crop)
    if min(h_crop, w_crop, h_stride, w_stride) <= 0:
        raise ValueError(f"crop_size and stride must be positive, got {crop_size}, {stride}")
    height, width = image.shape[-2:]
    h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    total: Tensor | None = None
    count = torch.zeros((1, 1, height, width), device=image.device, dtype=image.dtype)
    for i in range(h_grids):
        for j in range(w_grids):
            y2 = min(i * h_stride + h_crop, height)
            x2 = min(j * w_stride + w_crop, width)
            y1 = max(y2 - h_crop, 0)
            x1 = max(x2 - w_crop, 0)
            out = _forward(model_fn, image[..., y1:y2, x1:x2])
            if total is None:
                total = out.new_zeros((*out.shape[:2], height, width))
            total[..., y1:y2, x1:x2] += out
            count[..., y1:y2, x1:x2] += 1
    assert total is not None
    if h_grids * w_grids == 1:
        return total
    return total / count.to(total.dtype)


@torch.no_grad()
def predict(
    model_fn: ModelFn,
    image: Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    crop_size: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    out_size: Sequence[int] | None = None,
) -> Tensor:
    """Class probabilities averaged over scales and (optionally) horizontal flips.

    Each view is resized by ``scale`` (bilinear), run whole or by sliding window
    (``crop_size``/``stride``), its logits are resized to ``out_size`` (default: the input
    size), soft-maxed, and the probabilities are averaged. ``scales=(1.0,)`` without flip and
    crop is exactly ``softmax(model_fn(image))``.

    Args:
        image: ``(B, 3, H, W)``.

    Returns:
        probabilities ``(B, K, *out_size)`` (float32).
    """
    height, width = image.shape[-2:]
    out_size = (height, width) if out_size is None else (int(out_size[0]), int(out_size[1]))
    if not scales:
        raise ValueError("scales must not be empty")
    acc: Tensor | None = None
    n = 0
    for scale in scales:
        if scale == 1.0:
            x = image
        else:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            x = resize(image, size)
        for flipped in (False, True) if flip else (False,):
            xi = x.flip(-1) if flipped else x
            if crop_size is not None:
                logits = sliding_window(model_fn, xi, crop_size, stride)
            else:
                logits = _forward(model_fn, xi)
            if flipped:
                logits = logits.flip(-1)
            probs = resize(logits.float(), out_size).softmax(dim=1)
            acc = probs if acc is None else acc + probs
            n += 1
    assert acc is not None
    return acc if n == 1 else acc / n


@torch.no_grad()
def sample_embeddings(
    module: Any,
    dataset: Dataset,
    *,
    num_images: int = 8,
    views: int = 40,
    seed: int = 0,
    source: Literal["projector", "features"] = "projector",
) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Class-balanced samples of the projector embeddings (``source="projector"``) or of the
    head's maps they are computed from (``source="features"``) of the first ``num_images`` items,
    per scale (as the loss samples them: up to ``views`` pixels per (image, class) pair).

    Returns:
        per scale: features ``(N_s, D_s)`` (``embed_dim``, or the map's channels for ``"features"``),
        labels ``(N_s,)``, and the scale's stride.
    """
    device = module.pixel_mean.device
    feats: list[list[Tensor]] = []
    labels: list[list[Tensor]] = []
    strides: list[int] = []
    gen = torch.Generator().manual_seed(seed)
    ignore = int(module.hparams.ignore_index)
    for i in range(min(num_images, len(dataset))):  # type: ignore[arg-type]
        item = dataset[i]
        image = item["image"][None].to(device)
        mask = item["mask"][None].to(device)
        embeddings = module.embeddings(image, source=source)
        if not feats:
            feats, labels = [[] for _ in embeddings], [[] for _ in embeddings]
            strides = [round(image.shape[-1] / e.shape[-1]) for e in embeddings]
        for s, emb in enumerate(embeddings):
            f, y = sample_anchors(emb, mask, ignore_index=ignore, min_views=min(5, views), max_views=views,
                                  max_total=10**9, generator=gen)
            if f.numel():
                feats[s].append(f.reshape(-1, f.shape[-1]).float().cpu())
                labels[s].append(y[:, None].expand(-1, f.shape[1]).reshape(-1).cpu())
    f_np = [torch.cat(f).numpy() if f else np.zeros((0, 1), np.float32) for f in feats]
    y_np = [torch.cat(y).numpy() if y else np.zeros((0,), np.int64) for y in labels]
    return f_np, y_np, strides
