"""Bad files are found when a data set is built (header check by default, full decode on request),
on a few real CamVid files copied and corrupted; and the check is cheap on the whole of CamVid."""

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scalecontrast.data import DataError, get_dataset
from scalecontrast.data.camvid import CAMVID_PALETTE

CAMVID = Path(
    os.environ.get("SCALECONTRAST_CAMVID", Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid")
)
pytestmark = pytest.mark.skipif(not CAMVID.is_dir(), reason=f"CamVid copy not found at {CAMVID}")


@pytest.fixture
def camvid(tmp_path):
    """A CamVid layout with the first 3 val pairs in every split; returns (root, stems)."""
    stems = sorted(p.stem for p in (CAMVID / "val").iterdir())[:3]
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / f"{split}annot").mkdir()
        for stem in stems:
            shutil.copy(CAMVID / "val" / f"{stem}.jpg", tmp_path / split / f"{stem}.jpg")
            shutil.copy(CAMVID / "valannot" / f"{stem}.png", tmp_path / f"{split}annot" / f"{stem}.png")
    return tmp_path, stems


def test_intact_copy_passes_every_check(camvid):
    root, stems = camvid
    for check in ("header", "full"):
        assert len(get_dataset("camvid", root, "train", check=check)) == len(stems)


def test_colour_mask_found_at_startup(camvid):
    root, stems = camvid
    path = root / "trainannot" / f"{stems[1]}.png"
    raw = np.array(Image.open(path))
    lut = np.array([*CAMVID_PALETTE, (0, 0, 0)] + [(0, 0, 0)] * 244, np.uint8)
    Image.fromarray(lut[raw]).save(path)  # the colour-coded label many CamVid copies ship
    with pytest.raises(DataError, match=rf"trainannot/{stems[1]}\.png has 3 channels.*colour-coded"):
        get_dataset("camvid", root, "train")


def test_truncated_jpeg_found_at_startup(camvid):
    root, stems = camvid
    path = root / "train" / f"{stems[2]}.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=rf"train/{stems[2]}\.jpg.*truncated"):
        get_dataset("camvid", root, "train")


def test_trailing_bytes_after_a_complete_jpeg_are_fine(camvid):
    root, stems = camvid
    path = root / "train" / f"{stems[0]}.jpg"
    path.write_bytes(path.read_bytes() + b"\0" * 300)  # no end marker at the end: decoded to tell
    ds = get_dataset("camvid", root, "train")
    assert ds[0]["image"].shape == (3, 360, 480)


def test_label_out_of_range_full_check_and_hint_on_load(camvid):
    root, stems = camvid
    path = root / "trainannot" / f"{stems[1]}.png"
    raw = np.array(Image.open(path))
    raw[10, 20] = 12
    Image.fromarray(raw).save(path)
    ds = get_dataset("camvid", root, "train")  # the header cannot tell
    with pytest.raises(DataError, match=rf"{stems[1]}\.png holds label value\(s\) 12 ") as err:
        ds[1]
    assert 'check="full"' in str(err.value) and "--data.check full" in str(err.value)
    with pytest.raises(DataError, match=rf"{stems[1]}\.png holds label value\(s\) 12 ") as err:
        get_dataset("camvid", root, "train", check="full")
    assert "check=" not in str(err.value)  # the full check ran: no advice to run it


def test_every_bad_file_in_one_error(camvid):
    root, stems = camvid
    Image.new("RGB", (480, 360)).save(root / "trainannot" / f"{stems[0]}.png")
    Image.new("L", (480, 359)).save(root / "trainannot" / f"{stems[2]}.png")
    with pytest.raises(DataError, match="2 of 3 file pairs are bad") as err:
        get_dataset("camvid", root, "train")
    assert f"{stems[0]}.png has 3 channels" in str(err.value) and "359x480" in str(err.value)


def test_datamodule_check_option(camvid):
    from scalecontrast.engine import SegmentationDataModule

    root, stems = camvid
    path = root / "valannot" / f"{stems[0]}.png"
    raw = np.array(Image.open(path))
    raw[0, 0] = 40
    Image.fromarray(raw).save(path)
    SegmentationDataModule("camvid", str(root)).setup("validate")  # header check: passes
    with pytest.raises(DataError, match=rf"valannot/{stems[0]}\.png holds label value\(s\) 40"):
        SegmentationDataModule("camvid", str(root), check="full").setup("validate")
    with pytest.raises(ValueError, match="data.check must be one of none, header, full"):
        SegmentationDataModule("camvid", str(root), check="fast")


def test_header_check_is_cheap_on_camvid():
    start = time.perf_counter()
    n = sum(len(get_dataset("camvid", CAMVID, split)) for split in ("train", "val", "test"))
    elapsed = time.perf_counter() - start
    assert n == 701
    assert elapsed < 5.0, f"header check of CamVid took {elapsed:.2f} s"
