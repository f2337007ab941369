"""CamVid on the real copy in ../shared/data/camvid (a handful of images) and PNG/JPEG matching."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scalecontrast.data import eval_transforms, get_dataset, train_transforms
from scalecontrast.data.camvid import CAMVID_CLASSES, CAMVID_PALETTE

# ../shared/data/camvid beside the repo (as in CI), or $SCALECONTRAST_CAMVID
CAMVID = Path(
    os.environ.get("SCALECONTRAST_CAMVID", Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid")
)
pytestmark = pytest.mark.skipif(not CAMVID.is_dir(), reason=f"CamVid copy not found at {CAMVID}")


def test_split_lengths():
    sizes = {s: len(get_dataset("camvid", CAMVID, s, check="none")) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 367, "val": 101, "test": 233, "trainval": 468}


def test_classes_and_palette_match_readme():
    ds = get_dataset("camvid", CAMVID, "val")  # header check of 101 pairs
    assert ds.classes == CAMVID_CLASSES and len(ds.classes) == 11
    assert ds.palette[3] == (128, 64, 128) and ds.palette[10] == (0, 128, 192)
    assert ds.palette == CAMVID_PALETTE


def test_items_and_void_mapping():
    ds = get_dataset("camvid", CAMVID, "test", check="none")
    for i in (0, 100):
        item = ds[i]
        assert item["image"].shape == (3, 360, 480) and item["image"].dtype == torch.float32
        raw = np.array(Image.open(CAMVID / "testannot" / f"{item['stem']}.png"))
        want = np.where(raw == 11, 255, raw)
        assert torch.equal(item["mask"], torch.from_numpy(want).long())
        assert set(item["mask"].unique().tolist()) <= set(range(11)) | {255}


def test_png_and_jpg_images_matched_by_stem(tmp_path):
    stems = sorted(p.stem for p in (CAMVID / "val").iterdir())[:3]
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / f"{split}annot").mkdir()
        for i, stem in enumerate(stems):
            src = CAMVID / "val" / f"{stem}.jpg"
            if i == 0:  # upstream format
                Image.open(src).save(tmp_path / split / f"{stem}.png")
            else:
                shutil.copy(src, tmp_path / split / f"{stem}.jpg")
            shutil.copy(CAMVID / "valannot" / f"{stem}.png", tmp_path / f"{split}annot" / f"{stem}.png")
    ds = get_dataset("camvid", tmp_path, "train", check="full")
    assert [ds[i]["stem"] for i in range(3)] == stems
    ref = get_dataset("camvid", CAMVID, "val", check="none")
    assert torch.equal(ds[0]["mask"], ref[0]["mask"])
    assert torch.allclose(ds[1]["image"], ref[1]["image"])


def test_training_pipeline_batch():
    ds = get_dataset("camvid", CAMVID, "train", check="none", transform=train_transforms((360, 480)))
    sub = torch.utils.data.Subset(ds, range(4))
    batch = next(iter(torch.utils.data.DataLoader(sub, batch_size=4)))
    assert batch["image"].shape == (4, 3, 360, 480) and batch["mask"].shape == (4, 360, 480)
    assert set(batch["mask"].unique().tolist()) <= set(range(11)) | {255}


def test_eval_pipeline_keeps_label():
    ds = get_dataset("camvid", CAMVID, "test", check="none", transform=eval_transforms())
    plain = get_dataset("camvid", CAMVID, "test", check="none")
    assert torch.equal(ds[5]["mask"], plain[5]["mask"])
    assert ds[5]["image"].shape == (3, 360, 480)
