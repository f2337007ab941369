"""Bad data fails early with a message naming the file, stem or value."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scalecontrast.data import DATASETS, DataError, MissingDataError, get_dataset


def write_image(path: Path, size=(6, 8), fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, fmt)


def write_mask(path: Path, value=0, size=(6, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(size, np.uint8)
    m[0, 0] = value
    Image.fromarray(m).save(path)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    for stem in ("x", "y"):
        write_image(tmp_path / "train" / "images" / f"{stem}.png")
        write_mask(tmp_path / "train" / "masks" / f"{stem}.png")
    return tmp_path


@pytest.mark.parametrize("name", sorted(set(DATASETS) - {"synthetic"}))
def test_missing_root_names_path(tmp_path, name):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(MissingDataError, match="does-not-exist"):
        get_dataset(name, missing, "train")
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError for generic handlers
        get_dataset(name, missing, "train")


@pytest.mark.parametrize("name", ["camvid", "cityscapes", "ade20k", "pascal_context", "cadis", "folder"])
def test_empty_root_is_an_error_not_an_empty_dataset(tmp_path, name):
    with pytest.raises(MissingDataError):
        get_dataset(name, tmp_path, "train")


def test_empty_split_folder(folder):
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "val" / "masks").mkdir(parents=True)
    with pytest.raises(MissingDataError, match="no images"):
        get_dataset("folder", folder, "val")


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="camvid.*cityscapes"):
        get_dataset("voc", "/x", "train")


def test_image_without_mask_names_stem(folder):
    write_image(folder / "train" / "images" / "lonely_frame.jpg")
    with pytest.raises(DataError, match="lonely_frame"):
        get_dataset("folder", folder, "train")


def test_mask_without_image_names_stem(folder):
    write_mask(folder / "train" / "masks" / "orphan.png")
    with pytest.raises(DataError, match="orphan"):
        get_dataset("folder", folder, "train")


def test_camvid_image_without_label(tmp_path):
    for split in ("train", "val", "test"):
        write_image(tmp_path / split / "0001TP_000001.png")
        write_mask(tmp_path / f"{split}annot" / "0001TP_000001.png")
    write_image(tmp_path / "train" / "Seq05VD_f00000.png")
    with pytest.raises(DataError, match="Seq05VD_f00000"):
        get_dataset("camvid", tmp_path, "train")
    assert len(get_dataset("camvid", tmp_path, "val")) == 1


def test_cityscapes_image_without_label(tmp_path):
    write_image(tmp_path / "leftImg8bit" / "train" / "ulm" / "ulm_000000_000019_leftImg8bit.png")
    (tmp_path / "gtFine" / "train" / "ulm").mkdir(parents=True)
    with pytest.raises(DataError, match="ulm_000000_000019"):
        get_dataset("cityscapes", tmp_path, "train")


def test_unreadable_file_named_at_construction(folder):
    (folder / "train" / "images" / "x.png").write_bytes(b"this is not an image")
    with pytest.raises(DataError, match=r"x\.png"):
        get_dataset("folder", folder, "train")


def test_truncated_file_named(folder):
    path = folder / "train" / "images" / "y.jpg"
    (folder / "train" / "images" / "y.png").unlink()
    write_image(path, size=(64, 64), fmt="JPEG")
    write_mask(folder / "train" / "masks" / "y.png", size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"y\.jpg.*truncated"):  # no end marker: found by the header check
        get_dataset("folder", folder, "train")
    ds = get_dataset("folder", folder, "train", check="none")  # unchecked: found on load
    with pytest.raises(DataError, match=r"y\.jpg"):
        ds[1]
    with pytest.raises(DataError, match=r"y\.jpg"):
        ds.verify()
    with pytest.raises(DataError, match=r"y\.jpg"):
        get_dataset("folder", folder, "train", check="full")


def test_truncated_mask_named(folder):
    path = folder / "train" / "masks" / "x.png"
    m = np.random.default_rng(0).integers(0, 3, (64, 64), dtype=np.uint8)
    Image.fromarray(m).save(path)
    write_image(folder / "train" / "images" / "x.png", size=(64, 64))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"x\.png"):
        get_dataset("folder", folder, "train")[0]


def test_size_mismatch_named(folder):
    write_mask(folder / "train" / "masks" / "y.png", size=(7, 8))
    with pytest.raises(DataError, match=r"masks/y\.png.*7x8") as err:
        get_dataset("folder", folder, "train")
    assert "6x8" in str(err.value)
    ds = get_dataset("folder", folder, "train", check="none")  # unchecked: still caught on load
    with pytest.raises(DataError, match=r"y\.png"):
        ds[1]


def test_label_value_outside_classes_names_file_and_value(folder):
    write_mask(folder / "train" / "masks" / "y.png", value=7)
    ds = get_dataset("folder", folder, "train")
    ds[0]
    with pytest.raises(DataError, match=r"y\.png.*\b7\b"):
        ds[1]
    with pytest.raises(DataError, match=r"y\.png.*\b7\b"):
        get_dataset("folder", folder, "train", check="full")


def test_camvid_label_value_12(tmp_path):
    for split in ("train", "val", "test"):
        write_image(tmp_path / split / "a.png")
        write_mask(tmp_path / f"{split}annot" / "a.png", value=12)
    with pytest.raises(DataError, match=r"a\.png.*12.*0\.\.11, 255"):
        get_dataset("camvid", tmp_path, "train")[0]


def test_colour_coded_mask_rejected(folder):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 128
    Image.fromarray(rgb).save(folder / "train" / "masks" / "x.png")
    with pytest.raises(DataError, match=r"x\.png.*3 channels"):
        get_dataset("folder", folder, "train")[0]


def test_missing_classes_file(folder):
    (folder / "classes.txt").unlink()
    with pytest.raises(MissingDataError, match="classes.txt"):
        get_dataset("folder", folder, "train")


def test_unknown_split_lists_splits(folder):
    with pytest.raises(MissingDataError, match="train"):
        get_dataset("folder", folder, "validation")
    with pytest.raises(ValueError, match="trainval"):
        get_dataset("camvid", folder, "training")


def test_pascal_context_listed_image_missing(tmp_path):
    voc = tmp_path / "VOC2010"
    (voc / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (voc / "ImageSets" / "SegmentationContext" / "train.txt").write_text("2008_000002\n")
    with pytest.raises(MissingDataError, match="2008_000002"):
        get_dataset("pascal_context", voc, "train")


def test_error_survives_a_worker_process(folder):
    write_mask(folder / "train" / "masks" / "y.png", value=9)
    ds = get_dataset("folder", folder, "train")
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=1)
    with pytest.raises(DataError, match=r"y\.png.*\b9\b"):
        list(loader)
