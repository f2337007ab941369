"""Each official layout, written as tiny fixtures here: label mappings, splits and lengths."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scalecontrast.data import get_dataset, train_transforms
from scalecontrast.data.ade20k import ADE20K_CLASSES
from scalecontrast.data.cadis import CADIS_SPLITS
from scalecontrast.data.cityscapes import CITYSCAPES_CLASSES
from scalecontrast.data.pascal_context import PASCAL_CONTEXT_CLASSES

H, W = 6, 8


def write_image(path: Path, seed: int = 0, size=(H, W)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def write_mask(path: Path, values, *, rgb: bool = False) -> np.ndarray:
    """A mask cycling through ``values``; returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = np.resize(np.asarray(values, dtype=np.uint8), H * W)
    mask = flat.reshape(H, W)
    Image.fromarray(np.stack([mask] * 3, -1) if rgb else mask).save(path)
    return mask


def expect(ds, index, raw, mapping):
    out = ds[index]["mask"]
    want = np.vectorize(mapping.get)(raw)
    assert torch.equal(out, torch.from_numpy(want).long()), (out, want)


# -- cityscapes ------------------------------------------------------------------------------------


@pytest.fixture
def cityscapes(tmp_path):
    raws = {}
    for split, city, n in (("train", "aachen", 2), ("val", "lindau", 1)):
        for i in range(n):
            stem = f"{city}_{i:06d}_000019"
            write_image(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", i)
            gt = tmp_path / "gtFine" / split / city
            raws[stem] = write_mask(gt / f"{stem}_gtFine_labelIds.png", [7, 8, 26, 0, 33, 1, 255, 24])
            write_mask(gt / f"{stem}_gtFine_color.png", [1])  # other annotation files are ignored
    return tmp_path, raws


def test_cityscapes(cityscapes):
    root, raws = cityscapes
    train, val = get_dataset("cityscapes", root, "train"), get_dataset("cityscapes", root, "val")
    assert (len(train), len(val)) == (2, 1)
    assert len(train.classes) == len(train.palette) == 19 and train.classes == CITYSCAPES_CLASSES
    item = train[0]
    assert item["stem"] == "aachen_000000_000019" and item["image"].shape == (3, H, W)
    mapping = {7: 0, 8: 1, 26: 13, 0: 255, 33: 18, 1: 255, 255: 255, 24: 11}
    expect(train, 0, raws[item["stem"]], mapping)


# -- ade20k ----------------------------------------------------------------------------------------


@pytest.fixture
def ade20k(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    raw = None
    for split, n in (("training", 3), ("validation", 2)):
        for i in range(n):
            stem = f"ADE_{split[:5]}_{i:08d}"
            write_image(base / "images" / split / f"{stem}.jpg", i)
            raw = write_mask(base / "annotations" / split / f"{stem}.png", [0, 1, 150, 5, 12])
    return tmp_path, raw


def test_ade20k(ade20k):
    root, raw = ade20k
    train = get_dataset("ade20k", root, "train")
    assert len(train) == 3 and len(get_dataset("ade20k", root, "val")) == 2
    assert len(get_dataset("ade20k", root / "ADEChallengeData2016", "validation")) == 2
    assert len(train.classes) == len(ADE20K_CLASSES) == 150 and len(train.palette) == 150
    expect(train, 0, raw, {0: 255, 1: 0, 150: 149, 5: 4, 12: 11})


# -- pascal context --------------------------------------------------------------------------------


@pytest.fixture
def pascal(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2010"
    raw = None
    for i, stem in enumerate(["2008_000002", "2008_000003", "2008_000007", "2008_000009"]):
        write_image(voc / "JPEGImages" / f"{stem}.jpg", i)
        raw = write_mask(voc / "SegmentationClassContext" / f"{stem}.png", [0, 1, 59, 30])
    write_image(voc / "JPEGImages" / "2008_999999.jpg")  # in VOC but in no Context list
    lists = voc / "ImageSets" / "SegmentationContext"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2008_000002\n2008_000003\n2008_000007\n")
    (lists / "val.txt").write_text("2008_000009\n")
    return tmp_path, raw


def test_pascal_context_59_and_60(pascal):
    root, raw = pascal
    ds59 = get_dataset("pascal_context", root, "train")
    assert len(ds59) == 3 and len(get_dataset("pascal_context", root, "val")) == 1
    assert ds59.classes == PASCAL_CONTEXT_CLASSES and len(ds59.classes) == 59
    expect(ds59, 0, raw, {0: 255, 1: 0, 59: 58, 30: 29})
    ds60 = get_dataset("pascal_context", root / "VOCdevkit" / "VOC2010", "train", num_classes=60)
    assert len(ds60.classes) == 60 and ds60.classes[0] == "background"
    expect(ds60, 0, raw, {0: 0, 1: 1, 59: 59, 30: 30})


# -- cadis -----------------------------------------------------------------------------------------

CADIS_RAW = [0, 6, 7, 9, 25, 35, 22, 17, 33, 13]


@pytest.fixture
def cadis(tmp_path):
    frames = {1: 2, 3: 1, 5: 1, 7: 1, 2: 1}  # video -> frames (train: 1, 3; val: 5, 7; test: 2)
    for video, n in frames.items():
        vdir = tmp_path / f"Video{video:02d}"
        for i in range(n):
            name = f"Video{video}_frame{i * 30:06d}.png"
            write_image(vdir / "Images" / name, video * 10 + i)
            write_mask(vdir / "Labels" / name, CADIS_RAW, rgb=video == 1)  # RGB labels in video 1
    return tmp_path


EXPERIMENTS = {
    1: (8, {0: 0, 6: 6, 7: 7, 9: 7, 25: 7, 35: 7, 22: 7, 17: 7, 33: 7, 13: 7}),
    2: (17, {0: 0, 6: 6, 7: 7, 9: 8, 25: 255, 35: 255, 22: 8, 17: 15, 33: 9, 13: 11}),
    3: (25, {0: 0, 6: 6, 7: 7, 9: 9, 25: 255, 35: 255, 22: 22, 17: 17, 33: 255, 13: 13}),
}


@pytest.mark.filterwarnings("ignore:cadis")
@pytest.mark.parametrize("experiment", [1, 2, 3])
def test_cadis_experiments(cadis, experiment):
    n_classes, mapping = EXPERIMENTS[experiment]
    ds = get_dataset("cadis", cadis, "train", experiment=experiment)
    assert len(ds.classes) == len(ds.palette) == n_classes
    assert ds.class_groups["instruments"] == list(range(7, n_classes))
    assert sorted(ds.class_groups["anatomy"] + ds.class_groups["others"]) == list(range(7))
    assert len(ds) == 3 and ds.videos == ["Video01", "Video03"]
    raw = np.resize(np.asarray(CADIS_RAW), H * W).reshape(H, W)
    expect(ds, 0, raw, mapping)  # RGB label (video 1)
    expect(ds, 2, raw, mapping)  # single-channel label (video 3)


@pytest.mark.filterwarnings("ignore:cadis")
def test_cadis_splits(cadis):
    assert len(get_dataset("cadis", cadis, "val")) == 2
    test = get_dataset("cadis", cadis, "test")
    assert len(test) == 1 and test[0]["stem"] == "Video2_frame000000"
    assert set(CADIS_SPLITS["train"]) | set(CADIS_SPLITS["val"]) | set(CADIS_SPLITS["test"]) == set(range(1, 26))
    with pytest.warns(UserWarning, match="not found"):
        get_dataset("cadis", cadis, "val")
    with pytest.raises(ValueError, match="experiment"):
        get_dataset("cadis", cadis, "train", experiment=4)


def test_cadis_experiment_1_class_names():
    from scalecontrast.data.cadis import cadis_experiment

    classes, mapping = cadis_experiment(1)
    assert classes[-1] == "Instrument" and len(classes) == 8
    assert 255 not in {v for k, v in mapping.items() if k != 255}  # no ignore class in experiment 1


# -- folder ----------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "classes.txt").write_text("road\ncar\n\nsky\n")
    raw = None
    for split, stems in (("train", ["a", "b", "c"]), ("val", ["d"])):
        for i, stem in enumerate(stems):
            ext = ".jpg" if i % 2 else ".png"
            write_image(tmp_path / split / "images" / f"{stem}{ext}", i)
            raw = write_mask(tmp_path / split / "masks" / f"{stem}.png", [0, 1, 2, 255])
    return tmp_path, raw


def test_folder(folder):
    root, raw = folder
    ds = get_dataset("folder", root, "train")
    assert len(ds) == 3 and len(get_dataset("folder", root, "val")) == 1
    assert ds.classes == ("road", "car", "sky") and len(ds.palette) == 3
    assert [ds[i]["stem"] for i in range(3)] == ["a", "b", "c"]
    expect(ds, 1, raw, {0: 0, 1: 1, 2: 2, 255: 255})


def test_folder_palette_file(folder):
    root, _ = folder
    (root / "palette.txt").write_text("1 2 3\n4,5,6\n7 8 9\n")
    assert get_dataset("folder", root, "train").palette == ((1, 2, 3), (4, 5, 6), (7, 8, 9))


def test_folder_with_train_transforms(folder):
    root, _ = folder
    ds = get_dataset("folder", root, "train", transform=train_transforms((16, 16)))
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and item["mask"].shape == (16, 16)


@pytest.mark.filterwarnings("ignore:cadis")
def test_cadis_groups_reach_the_module(cadis):
    from scalecontrast.engine import SegmentationDataModule, SegmentationModule

    dm = SegmentationDataModule("cadis", str(cadis), dataset_kwargs={"experiment": 2}, eval_limit=1)
    assert dm.class_groups == {"anatomy": [0, 4, 5, 6], "others": [1, 2, 3], "instruments": list(range(7, 17))}
    module = SegmentationModule(head="fpn", backbone="mobilenetv3_small_050", num_classes=17, contrast=None)
    module._trainer = type("T", (), {"datamodule": dm})()  # what Lightning attaches before setup
    module.setup("validate")
    assert module.hparams["class_groups"] == dm.class_groups
    assert SegmentationDataModule("synthetic").class_groups is None
