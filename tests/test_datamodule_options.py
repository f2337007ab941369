"""SegmentationDataModule: clear errors for bad options and for evaluation batches of mixed sizes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scalecontrast.engine import SegmentationDataModule


def folder_with_sizes(root: Path, sizes) -> Path:
    (root / "classes.txt").write_text("a\nb\n")
    for split in ("train", "val"):
        for i, (h, w) in enumerate(sizes):
            for sub in ("images", "masks"):
                (root / split / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / split / "images" / f"im{i}.png")
            Image.fromarray(np.zeros((h, w), np.uint8)).save(root / split / "masks" / f"im{i}.png")
    return root


def test_mixed_eval_sizes_with_batch_over_1_named_at_setup(tmp_path):
    root = folder_with_sizes(tmp_path, [(24, 32), (24, 32), (30, 40)])
    dm = SegmentationDataModule("folder", str(root), eval_batch_size=2)
    with pytest.raises(ValueError, match=r"val split: images of different sizes, 24x32 \(e.g. im0\), 30x40 \(e.g. im2\)"
                       r".*eval_batch_size=2.*--data.eval_batch_size 1"):
        dm.setup("validate")
    dm = SegmentationDataModule("folder", str(root), eval_batch_size=1)  # any size
    dm.setup("validate")
    assert [tuple(b["mask"].shape) for b in dm.val_dataloader()] == [(1, 24, 32), (1, 24, 32), (1, 30, 40)]
    dm = SegmentationDataModule("folder", str(root), eval_batch_size=2, eval_limit=2)  # one size: fine
    dm.setup("validate")
    assert [tuple(b["image"].shape) for b in dm.val_dataloader()] == [(2, 3, 24, 32)]


def test_same_size_collate():
    from scalecontrast.engine.datamodule import SameSizeCollate

    collate = SameSizeCollate("test")
    items = [{"image": torch.zeros(3, 4, 6), "mask": torch.zeros(4, 6), "stem": s} for s in "ab"]
    assert collate(items)["image"].shape == (2, 3, 4, 6)
    items.append({"image": torch.zeros(3, 5, 6), "mask": torch.zeros(5, 6), "stem": "c"})
    with pytest.raises(ValueError, match=r"test split: images of different sizes, 4x6 \(e.g. a\), 5x6 \(e.g. c\)"):
        collate(items)


@pytest.mark.parametrize(("value", "want"), [(100, [100, 100]), ([100], [100, 100]), ([96, 128], [96, 128]),
                                             ((64, 32), [64, 32])])
def test_crop_size_one_int_is_square(value, want):
    dm = SegmentationDataModule("synthetic", crop_size=value, dataset_kwargs={"length": 2, "size": 48})
    assert dm.hparams.crop_size == want
    dm.setup("fit")
    assert tuple(dm.datasets["train"][0]["image"].shape[-2:]) == tuple(want)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("crop_size", [1, 2, 3]), ("crop_size", [0, 64]), ("crop_size", []), ("crop_size", "512"),
        ("crop_size", [64.5, 64]), ("scale_range", [2.0, 0.5]), ("scale_range", [0.5]), ("aspect_range", [0, 1]),
        ("crop_max_ratio", 0), ("crop_max_ratio", 1.5), ("hflip", 2), ("batch_size", 0), ("eval_batch_size", 0),
        ("num_workers", -1), ("train_limit", 0), ("eval_limit", 1.5), ("check", "fast"), ("dataset", "voc"),
    ],
)
def test_bad_option_values_named(option, value):
    with pytest.raises(ValueError, match=rf"data\.{option}"):
        SegmentationDataModule(**{"dataset": "synthetic", option: value})
