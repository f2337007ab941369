"""Helpers behind the command line that need the data and loss layers (the CLI itself only talks to
the engine and viz): embedding sampling for t-SNE, data preparation, synthetic scenes as files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from scalecontrast.data import get_dataset
from scalecontrast.engine.module import SegmentationModule
from scalecontrast.losses import sample_anchors

__all__ = ["sample_embeddings", "prepare_data", "write_synthetic"]


@torch.no_grad()
def sample_embeddings(
    module: SegmentationModule,
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


def prepare_data(name: str, root: str | Path, source: str | Path | None = None) -> dict[str, Any]:
    """Download (or copy from ``source``) and verify a data set; only CamVid is fetched
    automatically. Returns the verification summary plus ``sizes`` (images per split)."""
    if name.lower() != "camvid":
        raise ValueError(f"only 'camvid' can be fetched automatically, not {name!r}")
    from scalecontrast.data.download import prepare_camvid

    result = dict(prepare_camvid(root, source))
    result["sizes"] = {split: len(get_dataset("camvid", root, split)) for split in ("train", "val", "test")}
    return result


def write_synthetic(root: str | Path, split: str = "test", num: int = 8, size: int = 128) -> Path:
    """Write synthetic scenes in the ``folder`` layout: ``root/{split}/images/<stem>.png``,
    ``root/{split}/masks/<stem>.png`` (class indices) and ``root/classes.txt``."""
    from PIL import Image

    root = Path(root)
    ds = get_dataset("synthetic", None, split, length=num, size=size)
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    (root / split / "masks").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(ds.classes) + "\n")  # type: ignore[attr-defined]
    for i in range(len(ds)):  # type: ignore[arg-type]
        item = ds[i]
        stem = str(item.get("stem", f"{split}_{i:06d}"))
        rgb = (item["image"].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        Image.fromarray(rgb).save(root / split / "images" / f"{stem}.png")
        Image.fromarray(item["mask"].numpy().astype(np.uint8)).save(root / split / "masks" / f"{stem}.png")
    return root / split
