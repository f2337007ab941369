"""The result tables of the CamVid study scripts: pairing by seed, statistics, Markdown blocks.

These scripts write docs/results.md, so their arithmetic is tested on hand-made rows here (no
training).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import camvid_ablation as ablation  # noqa: E402
import camvid_tuning as tuning  # noqa: E402

CLASSES = ["Sky", "Road"]


def _ablation_row(setting: str, seed: int, miou: float, head: str = "fpn") -> dict:
    return {"key": ablation.run_key(head, setting, seed, "test"), "head": head, "setting": setting, "seed": seed,
            "split": "test", "miou": miou, "iou": {"Sky": miou + 1, "Road": miou - 1}, "fit_seconds": 60.0}


def test_paired_delta_pairs_by_seed_and_counts_wins():
    text = ablation.paired_delta([51.0, 50.0, 53.0], [50.0, 50.5, 51.0])
    # differences +1.0, -0.5, +2.0: mean 0.83, sample std 1.26
    assert text.startswith("+0.83 ± 1.26, better on 2/3, p = ")
    p = float(text.rsplit("= ", 1)[1])
    assert 0.0 < p < 1.0
    assert ablation.paired_delta([50.5], [50.0]) == "+0.50 (1 seed)"
    assert ablation.paired_delta([], []) == "-"


def test_ablation_report_uses_only_shared_seeds_and_means_per_class():
    rows = [_ablation_row("ce", 0, 50.0), _ablation_row("ce", 1, 52.0),
            _ablation_row("mscs", 0, 51.0), _ablation_row("mscs", 1, 54.0), _ablation_row("mscs", 2, 90.0)]
    text = ablation.report({r["key"]: r for r in rows}, "test")
    ce_line = next(line for line in text.splitlines() if line.startswith("| CE |"))
    assert "| 2 | 51.00 | 1.41 | 0: 50.00, 1: 52.00 | - |" in ce_line
    mscs_line = next(line for line in text.splitlines() if line.startswith("| CE + MS + CS | 3 |"))
    # seed 2 has no CE partner, so the paired difference is over seeds 0 and 1 only: +1.0 and +2.0
    assert "+1.50 ± 0.71, better on 2/2" in mscs_line
    per_class = next(line for line in text.splitlines() if line.startswith("| CE + MS + CS | 6"))
    assert per_class == "| CE + MS + CS | 66.0 | 64.0 |"  # (52+55+91)/3 and (50+53+89)/3


def test_confirm_report_compares_chosen_variant_with_ablation_on_test():
    ab = [_ablation_row("ce", s, 50.0 + s) for s in range(3)] + [
        _ablation_row("mscs", s, m) for s, m in enumerate([50.5, 51.7, 52.4])]
    val = [{"key": f"fpn/weight_0.3/seed{s}/val", "variant": "weight_0.3", "seed": s, "miou": 55.0 + s}
           for s in range(2)]
    chosen = [{"key": f"fpn/weight_0.3/seed{s}/test", "variant": "weight_0.3", "seed": s, "miou": m}
              for s, m in enumerate([51.0, 52.5, 53.0])]
    text = tuning.confirm_report({r["key"]: r for r in chosen}, {r["key"]: r for r in ab},
                                 {r["key"]: r for r in val})
    line = next(line for line in text.splitlines() if "`weight_0.3`" in line)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:5] == ["55.50 (2)", "3", "52.17", "1.04"]
    assert cells[6].startswith("+1.17 ± 0.29, better on 3/3")  # vs CE 50, 51, 52
    assert cells[7].startswith("+0.63 ± 0.15, better on 3/3")  # vs MS+CS 50.5, 51.7, 52.4
    ce_cells = [c.strip() for c in next(x for x in text.splitlines() if x.startswith("| CE |")).strip("|").split("|")]
    assert ce_cells[6:] == ["-", "-"]


def test_write_block_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("intro\n<!-- T:BEGIN -->\nold\n<!-- T:END -->\noutro\n")
    ablation.write_block(doc, "T", "new table\n")
    assert doc.read_text() == "intro\n<!-- T:BEGIN -->\nnew table\n<!-- T:END -->\noutro\n"
    with pytest.raises(SystemExit, match="markers"):
        ablation.write_block(doc, "OTHER", "x")
