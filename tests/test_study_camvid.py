"""The committed CamVid studies: their specs are valid and `study report` on the committed storage gives the
committed results (docs/results.md), writing nothing but its output folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

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
    ("study_ablation_fpn", [
        "| mscs | the config as is | 5 | 50.48 ± 0.86 | 0: 50.26, 1: 50.41, 2: 51.75, 3: 50.61, 4: 49.35 "
        "| +0.49 ± 1.05 | 3/5 | 0.356 | [-0.81, +1.79] |",
    ]),
    ("study_ablation_deeplabv3", [
        "| 5 | 38.74 ± 0.60 | 0: 38.28, 1: 38.31, 2: 39.71, 3: 38.93, 4: 38.49 | +0.48 ± 0.41 | 4/5 | 0.057 |",
    ]),
    ("study_tuning_500", [
        "| weight_1.0 | model.contrast.weight 1.0 | 5 | 55.81 ± 1.41 | 0: 57.93, 1: 54.23, 2: 56.35, 3: 55.11, "
        "4: 55.44 | +2.33 ± 1.60 | 4/5 | 0.031 |",
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
    status = study_status(spec)
    if name == "study_tuning_500":  # the knobs first tried on 2 seeds: 16 of the spec's trials never ran
        assert "compare: 34/50 done, 0 running, 0 failed, 16 left" in status
    else:
        assert "nothing left" in status


def test_every_committed_spec_is_valid(in_root):
    specs = [p for p in sorted(Path("studies").rglob("*.yaml")) if "compare" in (yaml.safe_load(p.read_text()) or {})]
    assert len(specs) >= 9
    for path in specs:
        assert load_spec(path).name, path
