"""The synthetic shapes x textures data set and get_dataset."""

import subprocess
import sys

import pytest
import torch

from scalecontrast.data import DATASETS, get_dataset, train_transforms
from scalecontrast.data.synthetic import SHAPES, TEXTURES, SyntheticShapes


def test_item_contract():
    ds = get_dataset("synthetic", None, "train", length=4, size=(64, 96))
    assert len(ds) == 4
    item = ds[0]
    assert item["image"].shape == (3, 64, 96) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["mask"].shape == (64, 96) and item["mask"].dtype == torch.int64
    assert isinstance(item["stem"], str)
    assert len(ds.classes) == len(ds.palette) == 5
    assert all(len(c) == 3 for c in ds.palette)
    assert set(item["mask"].unique().tolist()) <= set(range(len(ds.classes)))


def test_deterministic_per_index_and_split():
    a = SyntheticShapes(split="train", length=3, seed=1)
    b = SyntheticShapes(split="train", length=3, seed=1)
    assert torch.equal(a[2]["image"], b[2]["image"]) and torch.equal(a[2]["mask"], b[2]["mask"])
    assert not torch.equal(a[0]["image"], a[1]["image"])
    val = SyntheticShapes(split="val", length=3, seed=1)
    assert not torch.equal(a[0]["mask"], val[0]["mask"])
    other_seed = SyntheticShapes(split="train", length=3, seed=2)
    assert not torch.equal(a[0]["mask"], other_seed[0]["mask"])


def test_classes_need_shape_and_texture():
    ds = SyntheticShapes(length=1)
    # every shape comes in every texture and vice versa: neither cue alone names the class
    assert len(ds.classes) == 1 + len(SHAPES) * len(TEXTURES)
    for s in SHAPES:
        assert sum(s in c for c in ds.classes) == len(TEXTURES)
    for t in TEXTURES:
        assert sum(t in c for c in ds.classes) == len(SHAPES)


def test_all_classes_appear():
    ds = SyntheticShapes(length=20, size=96)
    seen = set()
    for i in range(len(ds)):
        seen |= set(ds[i]["mask"].unique().tolist())
    assert seen == set(range(len(ds.classes)))


def test_with_train_transforms_and_loader():
    ds = get_dataset("synthetic", None, "train", length=8, transform=train_transforms((64, 64)))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 64, 64) and batch["mask"].dtype == torch.int64
    assert len(batch["stem"]) == 4


@pytest.mark.parametrize("kw", [{"split": "bogus"}, {"length": 0}, {"size": 8}])
def test_bad_options(kw):
    with pytest.raises(ValueError):
        SyntheticShapes(**kw)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_dataset("kitti", "/nowhere", "train")
    for name in DATASETS:
        assert name in str(err.value)
    assert set(DATASETS) == {
        "cityscapes",
        "ade20k",
        "pascal_context",
        "cadis",
        "camvid",
        "folder",
        "synthetic",
    }


def test_data_imports_no_other_layer():
    code = (
        "import sys, scalecontrast.data, scalecontrast.data.download\n"
        "import scalecontrast.data.cadis, scalecontrast.data.ade20k, scalecontrast.data.cityscapes\n"
        "import scalecontrast.data.pascal_context, scalecontrast.data.folder\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['scalecontrast', 'models'],"
        " ['scalecontrast', 'losses'], ['scalecontrast', 'engine'], ['scalecontrast', 'cli'])]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
