"""t-SNE figure of sampled embeddings per scale, coloured by class (as in the paper's figure)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["tsne_figure"]


def tsne_figure(
    features: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    path: str | Path | None = None,
    *,
    titles: Sequence[str] | None = None,
    perplexity: float = 30.0,
    seed: int = 0,
):
    """One t-SNE panel per scale.

    Args:
        features: per scale, ``(N_s, C)`` embeddings (L2-normalised here).
        labels: per scale, ``(N_s,)`` class indices.
        class_names, palette: class metadata (colours in 0..255).
        path: where to save the figure (PNG/PDF...); ``None`` only returns it.
        titles: panel titles (default ``scale 1 .. S``).

    Returns:
        the matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from sklearn.manifold import TSNE

    n = len(features)
    if n == 0:
        raise ValueError("no embeddings to plot")
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 2.0, 4.5), squeeze=False)
    seen: set[int] = set()
    for s, (feat, lab) in enumerate(zip(features, labels, strict=True)):
        ax = axes[0, s]
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(titles[s] if titles else f"scale {s + 1}", fontsize=10)
        feat = np.asarray(feat, dtype=np.float32)
        lab = np.asarray(lab).astype(np.int64)
        if len(feat) < 5:
            ax.text(0.5, 0.5, "too few samples", ha="center", va="center", transform=ax.transAxes)
            continue
        feat = feat / np.maximum(np.linalg.norm(feat, axis=1, keepdims=True), 1e-12)
        perp = float(min(perplexity, max(2.0, (len(feat) - 1) / 3.0)))
        xy = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(feat)
        colours = np.asarray([palette[k] if k < len(palette) else (0, 0, 0) for k in lab], dtype=np.float32)
        ax.scatter(xy[:, 0], xy[:, 1], c=colours / 255.0, s=4, linewidths=0)
        seen.update(int(k) for k in np.unique(lab))
    handles = [Line2D([], [], marker="o", linestyle="", markersize=6, color=np.asarray(palette[k]) / 255.0,
                      label=str(class_names[k])) for k in sorted(seen) if k < len(class_names)]
    if handles:
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1.0 - 1.8 / (4.2 * n + 2.0), 1))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig
