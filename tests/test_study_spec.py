"""Study specs: what a valid spec plans, and errors that name the key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scalecontrast.study import SpecError, load_spec, parse_spec
from scalecontrast.study.spec import setting_args, setting_slug

ROOT = Path(__file__).resolve().parents[1]
BASE = str(ROOT / "configs" / "synthetic" / "fpn_lite0.yaml")


def spec_dict(**over):
    data = {"name": "s", "config": [BASE], "runs": "runs/x",
            "tune": {"search": {"model.contrast.weight": [0.1, 1.0]}, "seeds": [0, 1]},
            "compare": {"arms": {"ce": None, "paper": {"model.contrast.weight": 0.1}, "tuned": "tune"},
                        "seeds": [0, 1, 2]}}
    data.update(over)
    return data


def test_valid_spec_plans_the_trials():
    spec = parse_spec(spec_dict(), "s.yaml")
    assert spec.tune_split == "val" and spec.compare_split == "test"
    assert spec.reference_arm == "ce"
    assert spec.candidates() == [{"model.contrast.weight": 0.1}, {"model.contrast.weight": 1.0}]
    tune = spec.tune_trials()
    # the reference arm (for the table) and every candidate at every tune seed, all on val
    assert [p.key for p in tune] == ["tune/ce/seed0", "tune/model.contrast.weight=0.1/seed0",
                                     "tune/model.contrast.weight=1.0/seed0", "tune/ce/seed1",
                                     "tune/model.contrast.weight=0.1/seed1", "tune/model.contrast.weight=1.0/seed1"]
    assert {p.split for p in tune} == {"val"}
    before = spec.compare_trials(None)
    assert {p.arm for p in before} == {"ce", "paper"}  # the tuned arm waits for the choice
    assert all(spec.waits_for_choice(p) for p in before if p.arm == "paper")  # 0.1 is a candidate
    assert not any(spec.waits_for_choice(p) for p in before if p.arm == "ce")
    after = spec.compare_trials({"model.contrast.weight": 1.0})
    assert [p.options for p in after if p.arm == "tuned"] == [{"model.contrast.weight": 1.0}] * 3
    assert {p.split for p in after} == {"test"}
    assert setting_args({"model.contrast": None}) == ["--model.contrast", "null"]
    assert setting_args({"model.contrast.weight": 1.0, "data.crop_size": [8, 8]}) == [
        "--model.contrast.weight", "1.0", "--data.crop_size", "[8, 8]"]
    assert setting_slug({"model.contrast": None}) == "model.contrast=null"


def test_load_spec_reads_yaml(tmp_path):
    f = tmp_path / "spec.yaml"
    f.write_text(yaml.safe_dump(spec_dict()))
    assert load_spec(f).name == "s"


@pytest.mark.parametrize("over, key", [
    ({"nmae": "x"}, "nmae"),
    ({"name": "a b"}, "name"),
    ({"config": []}, "config"),
    ({"config": ["no/such.yaml"]}, "config"),
    ({"args": "--x 1"}, "args"),
    ({"args": ["--seed_everything", "3"]}, "args"),
    ({"tune": {"search": {"model.contrast.weight": []}, "seeds": [0]}}, "tune.search.model.contrast.weight"),
    ({"tune": {"search": {"model.contrast.weight": [0.1]}, "seeds": [0, 0]}}, "tune.seeds"),
    ({"tune": {"search": {"model.contrast.weight": [0.1]}, "seeds": [0], "split": "tets"}}, "tune.split"),
    ({"tune": {"search": {"model.contrast.weight": [0.1]}, "seeds": [0], "split": "test"}}, "tune.split"),
    ({"tune": {"search": {"model.contrast.weight": [0.1]}, "seed": [0]}}, "tune.seed"),
    ({"compare": {"arms": {"ce": None}, "seeds": [0], "splt": "test"}}, "compare.splt"),
    ({"compare": {"arms": {"ce": None, "x": 3}, "seeds": [0]}}, "compare.arms.x"),
    ({"compare": {"arms": {"a": {"model.contrast.weight": 1.0}}, "seeds": [0]}}, "compare.reference"),
    ({"compare": {"arms": {"ce": None}, "seeds": [0], "reference": "cee"}}, "compare.reference"),
    ({"compare": {"arms": {"ce": None, "t": "tune"}, "seeds": [0], "reference": "t"}}, "compare.reference"),
    ({"compare": {"arms": {"ce": None, "b": None}, "seeds": [0]}}, "compare.arms"),
    ({"compare": {"arms": {"ce": None}, "seeds": "0"}}, "compare.seeds"),
    ({"compare": {"arms": {"ce": None}}}, "compare.seeds"),
])
def test_spec_errors_name_the_key(over, key):
    with pytest.raises(SpecError) as err:
        parse_spec(spec_dict(**over), "s.yaml")
    assert str(err.value).startswith(f"s.yaml: {key}: "), str(err.value)


def test_tuned_arm_needs_a_tune_section():
    data = spec_dict()
    del data["tune"]
    with pytest.raises(SpecError, match=r"compare.arms.tuned: .*tune section"):
        parse_spec(data, "s.yaml")


def test_spec_file_errors(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="missing"):
        parse_spec({"name": "x", "config": [BASE]}, "s.yaml")


def test_reference_arm():
    data = spec_dict(compare={"arms": {"base": {}, "hard": {"model.contrast.hard_fraction": 0.5}}, "seeds": [0],
                              "split": "val", "reference": "base"})
    del data["tune"]
    spec = parse_spec(data, "s.yaml")
    assert spec.reference_arm == "base" and spec.tune_reference is None
    assert [p.key for p in spec.compare_trials(None)] == ["compare/base/seed0", "compare/hard/seed0"]
    assert parse_spec(spec_dict(), "s.yaml").reference_arm == "ce"
