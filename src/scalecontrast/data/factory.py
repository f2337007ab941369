"""``get_dataset``: a plain name -> constructor mapping."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

__all__ = ["DATASETS", "get_dataset"]

# name -> (module, class); imported on demand
DATASETS: dict[str, tuple[str, str]] = {
    "ade20k": ("ade20k", "ADE20K"),
    "cadis": ("cadis", "CaDIS"),
    "camvid": ("camvid", "CamVid"),
    "cityscapes": ("cityscapes", "Cityscapes"),
    "folder": ("folder", "FolderDataset"),
    "pascal_context": ("pascal_context", "PascalContext"),
    "synthetic": ("synthetic", "SyntheticShapes"),
}


def get_dataset(name: str, root: str | Path | None, split: str, **kw: Any) -> Dataset:
    """Build a data set by name.

    Args:
        name: one of :data:`DATASETS` (``"cityscapes"``, ``"ade20k"``, ``"pascal_context"``,
            ``"cadis"``, ``"camvid"``, ``"folder"``, ``"synthetic"``).
        root: the data set's folder (ignored by ``"synthetic"``; may be ``None`` there).
        split: ``"train"``, ``"val"``, ``"test"`` (what exists depends on the data set).
        **kw: data-set options, e.g. ``transform=``, ``check=``, ``experiment=`` (cadis),
            ``num_classes=`` (pascal_context), ``length=``/``size=``/``seed=`` (synthetic).

    Returns:
        a ``torch.utils.data.Dataset`` with ``classes``, ``palette`` and items
        ``{"image": float32 (3, H, W), "mask": int64 (H, W), "stem": str}`` (255 = ignore).
    """
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    module, cls = DATASETS[key]
    constructor = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
    params = inspect.signature(constructor).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kw) - set(params))
        if unknown:
            valid = sorted(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY
                           or (p.kind is p.POSITIONAL_OR_KEYWORD and n not in ("self", "root", "split")))
            raise ValueError(f"unknown option(s) {unknown} for dataset {name!r}; valid: {', '.join(valid)}")
    return constructor(root, split, **kw)
