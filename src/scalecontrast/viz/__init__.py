"""Pictures: colour masks, overlays with a legend, t-SNE figures of embeddings."""

from scalecontrast.viz.masks import colorize, legend_figure, overlay, save_mask_and_overlay
from scalecontrast.viz.tsne import tsne_figure

__all__ = ["colorize", "legend_figure", "overlay", "save_mask_and_overlay", "tsne_figure"]
