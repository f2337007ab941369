"""Small building blocks shared by the heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU; ``(B, in, H, W) -> (B, out, H', W')``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, *, dilation: int = 1):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def same_size(a: Sequence[int], b: Sequence[int]) -> bool:
    """``a == b`` for sizes, ``False`` when that is unknown while tracing with symbolic shapes (no guard
    is added, so an export keeps its dynamic height and width)."""
    from torch.fx.experimental.symbolic_shapes import statically_known_true

    if len(a) != len(b):
        return False
    for i, j in zip(a, b):
        eq = i == j
        if isinstance(eq, Tensor):  # TorchScript tracing: sizes are traced values, keep the op
            return False
        if not statically_known_true(eq):
            return False
    return True


def resize(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``(B, C, *size)`` (``align_corners=False``); ``x``
    itself when it is already that size."""
    if same_size(x.shape[-2:], size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad ``(B, C, H, W)`` at the bottom and right to the next multiples of ``multiple``.

    Zero is the mean colour once normalised, as mmsegmentation pads. Returns ``x`` itself when both
    sides already are multiples (or ``multiple <= 1``); while tracing or exporting with symbolic
    sizes it always pads (by 0 where nothing is missing) so the graph holds for every input size.
    Undo with :func:`unpad`.
    """
    if multiple <= 1:
        return x
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    static = isinstance(ph, int) and isinstance(pw, int) and not torch.jit.is_tracing()
    if static and ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph))


def unpad(x: Tensor, size: tuple[int, int] | torch.Size, padded_size: tuple[int, int] | torch.Size) -> Tensor:
    """Crop a map computed from an input padded by :func:`pad_to_multiple` to the unpadded part.

    ``x`` ``(B, C, h, w)`` covers the padded input ``padded_size = (Hp, Wp)``; keeps the top-left
    ``(ceil(h * H / Hp), ceil(w * W / Wp))`` cells, those that see at least one pixel of the
    ``size = (H, W)`` input (at the input size: exactly ``(H, W)``).
    """
    (h, w), (hh, ww), (hp, wp) = x.shape[-2:], size, padded_size
    return x[..., : -(-h * hh // hp), : -(-w * ww // wp)]


def _bin_edges(n: int, bins: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Start (floor) and end (ceil) indices of PyTorch's adaptive pooling bins along one axis."""
    i = torch.arange(bins, device=device)
    start = torch.div(i * n, bins, rounding_mode="floor")
    end = torch.div((i + 1) * n + bins - 1, bins, rounding_mode="floor")
    return start, end


def adaptive_avg_pool2d(x: Tensor, output_size: int) -> Tensor:
    """``F.adaptive_avg_pool2d`` that exports to ONNX with dynamic height and width.

    The exporters specialise PyTorch's adaptive pooling to the traced input size; this version sums
    each bin from an integral image gathered at the (shape-derived) bin edges, so the exported graph
    stays correct for every input size. ``(B, C, H, W) -> (B, C, output_size, output_size)``.
    """
    if output_size == 1:
        return x.mean(dim=(2, 3), keepdim=True)
    h, w = x.shape[-2:]
    dtype = x.dtype
    s = x.float().cumsum(-2).cumsum(-1)
    s = F.pad(s, (1, 0, 1, 0))  # (B, C, H+1, W+1), s[..., i, j] = sum of x[..., :i, :j]
    h0, h1 = _bin_edges(h, output_size, x.device)
    w0, w1 = _bin_edges(w, output_size, x.device)
    rows1, rows0 = s.index_select(-2, h1), s.index_select(-2, h0)
    total = (
        rows1.index_select(-1, w1)
        - rows0.index_select(-1, w1)
        - rows1.index_select(-1, w0)
        + rows0.index_select(-1, w0)
    )
    area = ((h1 - h0)[:, None] * (w1 - w0)[None, :]).to(total.dtype)
    return (total / area).to(dtype)


def embed_maps(feats: Sequence[Tensor], embed_indices: Sequence[int] | None, own: Sequence[Tensor]) -> list[Tensor]:
    """The maps a head offers to the contrastive head, the same rule in every head: the backbone maps
    ``feats`` at ``embed_indices``, or, when ``embed_indices`` is ``None``, the head's default ``own`` maps."""
    return list(own) if embed_indices is None else [feats[i] for i in embed_indices]


def embed_channels(in_channels: Sequence[int], embed_indices: Sequence[int] | None, own: Sequence[int]) -> list[int]:
    """The channels of :func:`embed_maps`'s maps."""
    return list(own) if embed_indices is None else [int(in_channels[i]) for i in embed_indices]
