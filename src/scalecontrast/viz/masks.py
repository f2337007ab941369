"""Colour masks and overlays (numpy + Pillow; matplotlib for the legend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["colorize", "overlay", "legend_figure", "save_mask_and_overlay", "to_uint8_image"]

IGNORE_COLOR = (0, 0, 0)


def _lut(palette: Sequence[Sequence[int]], ignore_color: Sequence[int] = IGNORE_COLOR) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:] = np.asarray(ignore_color, dtype=np.uint8)
    pal = np.asarray(palette, dtype=np.int64).reshape(-1, 3)[:255]
    lut[: len(pal)] = np.clip(pal, 0, 255).astype(np.uint8)
    return lut


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def colorize(mask, palette: Sequence[Sequence[int]],
             ignore_color: Sequence[int] = IGNORE_COLOR) -> np.ndarray:
    """Class-index mask ``(H, W)`` (numpy or torch) -> RGB ``uint8 (H, W, 3)``; labels beyond the
    palette (e.g. 255 = ignore) get ``ignore_color``."""
    m = _np(mask).astype(np.int64)
    return _lut(palette, ignore_color)[np.clip(m, 0, 255)]


def to_uint8_image(image) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] (torch or numpy), ``(H, W, 3)`` float or uint8 -> ``uint8 (H, W, 3)``."""
    a = _np(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return a


def overlay(image, mask, palette: Sequence[Sequence[int]], alpha: float = 0.5,
            ignore_index: int = 255) -> np.ndarray:
    """Blend the colour mask over the image; ignored pixels keep the image. -> ``uint8 (H, W, 3)``."""
    img = to_uint8_image(image).astype(np.float32)
    m = _np(mask)
    col = colorize(m, palette).astype(np.float32)
    out = img * (1 - alpha) + col * alpha
    keep = (m == ignore_index)[..., None]
    return np.where(keep, img, out).round().clip(0, 255).astype(np.uint8)


def legend_figure(image: np.ndarray, class_names: Sequence[str], palette: Sequence[Sequence[int]],
                  present: Sequence[int] | None = None, title: str | None = None):
    """A matplotlib figure of ``image`` with a legend of the classes in ``present`` (default all)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    h, w = image.shape[:2]
    k = len(class_names)
    idx = list(range(k)) if present is None else [int(i) for i in present if i < k]
    fig_w = max(4.0, 6.0 * w / max(h, 1)) + 2.5
    fig, ax = plt.subplots(figsize=(fig_w, 6.0), dpi=100)
    ax.imshow(image)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    handles = [Patch(facecolor=np.asarray(palette[i]) / 255.0, edgecolor="black", label=str(class_names[i]))
               for i in idx]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def save_mask_and_overlay(out_dir: str | Path, stem: str, image, mask, class_names: Sequence[str],
                          palette: Sequence[Sequence[int]], *, alpha: float = 0.5,
                          save_labels: bool = True) -> dict[str, Path]:
    """Write ``<stem>_mask.png`` (colours), ``<stem>_overlay.png`` (overlay + legend of the
    classes present) and, with ``save_labels``, ``<stem>_labels.png`` (class indices)."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    m = _np(mask).astype(np.uint8)
    paths = {"mask": out_dir / f"{stem}_mask.png", "overlay": out_dir / f"{stem}_overlay.png"}
    Image.fromarray(colorize(m, palette)).save(paths["mask"])
    present = [int(c) for c in np.unique(m) if c < len(class_names)]
    fig = legend_figure(overlay(image, m, palette, alpha), class_names, palette, present, title=stem)
    fig.savefig(paths["overlay"])
    plt.close(fig)
    if save_labels:
        paths["labels"] = out_dir / f"{stem}_labels.png"
        Image.fromarray(m).save(paths["labels"])
    return paths
