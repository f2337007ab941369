"""scalecontrast: semantic segmentation with multi-scale and cross-scale contrastive learning.

Public entry points (the documentation is in docs/; the API reference in docs/api/):

- :func:`scalecontrast.create_model`, :func:`scalecontrast.wrap_model`
- :class:`scalecontrast.ContrastiveHead` and :class:`scalecontrast.MultiScaleContrastiveLoss` (also in
  :mod:`scalecontrast.losses`)
- :func:`scalecontrast.from_pretrained` and :func:`scalecontrast.save_pretrained`: models as a folder (or Hugging
  Face Hub repo) of ``config.json`` + ``model.safetensors`` + ``README.md``
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "scalecontrast.models",
    "wrap_model": "scalecontrast.models",
    "SegmentationOutput": "scalecontrast.models",
    "MultiScaleContrastiveLoss": "scalecontrast.losses",
    "ContrastiveHead": "scalecontrast.losses",
    "contrastive_loss": "scalecontrast.losses",
    "sample_anchors": "scalecontrast.losses",
    "get_dataset": "scalecontrast.data",
    "from_pretrained": "scalecontrast.engine.hub",
    "save_pretrained": "scalecontrast.engine.hub",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    # Lazy imports keep `import scalecontrast` (and the CLI's start-up) cheap.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scalecontrast' has no attribute {name!r}")
