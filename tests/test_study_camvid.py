"""The committed CamVid studies: their specs are valid and `study report` on the committed storage gives the
committed results (docs/results.md), writing nothing but its output folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from scalecontrast.study import load_spec, study_status, write_report

ROOT = Path(__file__).resolve().parents[1]
JOURNAL = ROOT / "studies" / "camvid" / "results.journal"


@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the specs' paths are relative to the repository


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name, lines", [
    ("study_fpn_lite0", [
        "| **model.contrast.weight 1.0** (chosen) | 3 | 62.68 ± 1.65 | 0: 62.31, 1: 61.25, 2: 64.48 | +0.82 ± 0.69, "
        "better on 3/3, p = 0.177 |",
        "| ce | contrast off | 5 | 56.11 ± 0.54 | 0: 56.79, 1: 56.12, 2: 55.95, 3: 56.37, 4: 55.32 | - |",
        "| paper | model.contrast.weight 0.1 | 5 | 56.23 ± 0.31 | 0: 56.62, 1: 55.82, 2: 56.10, 3: 56.21, 4: 56.42 "
        "| +0.12 ± 0.57 | 2/5 | 0.652 | [-0.58, +0.83] |",
        "| tuned | tuned: model.contrast.weight 1.0 | 5 | 57.65 ± 0.79 | 0: 57.60, 1: 56.35, 2: 58.35, 3: 58.21, "
        "4: 57.74 | +1.54 ± 0.98 | 5/5 | 0.025 | [+0.32, +2.76] |",
        "| Pedestrian | 34.24 | 35.63 | 39.09 | +1.39 (5/5) | +4.85 (5/5) |",
    ]),
    ("study_smp_unet_lite0", [
        "| mscs_w1 | model.contrast.weight 1.0 | 3 | 49.24 ± 0.56 | 0: 49.29, 1: 49.77, 2: 48.66 | +3.91 ± 1.32 "
        "| 3/3 | 0.036 |",
    ]),
    ("study_smp_unet_lite0_sgd", [
        "| mscs_w1 | model.contrast.weight 1.0 | 3 | 44.15 ± 0.98 | 0: 43.96, 1: 45.21, 2: 43.27 | +8.93 ± 0.65 "
        "| 3/3 | 0.002 |",
    ]),
])
def test_committed_report(in_root, tmp_path, name, lines):
    before = sorted(p.name for p in JOURNAL.parent.iterdir()), digest(JOURNAL)
    spec = load_spec(f"studies/camvid/{name}.yaml")
    out = write_report(spec, tmp_path / "report")
    text = out.read_text()
    for line in lines:
        assert line in text, line
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["per_class_gains.png", "results.md"]
    assert (sorted(p.name for p in JOURNAL.parent.iterdir()), digest(JOURNAL)) == before
    assert "nothing left" in study_status(spec)
