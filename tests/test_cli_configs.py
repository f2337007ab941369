"""Every base recipe builds with every contrast overlay through the CLI (no misspelled key), and a CE run
and its contrastive twin differ only by the overlay."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scalecontrast.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
OVERLAYS = sorted((CONFIGS / "contrast").glob("*.yaml"))
STUDIES = Path(__file__).resolve().parents[1] / "studies"

def is_study_spec(path: Path) -> bool:
    return "compare" in (yaml.safe_load(path.read_text()) or {})


# the shipped recipes and the studies' own (studies/, not installed, beside the study specs): all base recipes
BASES = sorted([*(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "contrast"),
                *(p for p in STUDIES.rglob("*.yaml") if not is_study_spec(p))])
# the overlays a recipe is used with: each contrast setting, and the CPU sampling caps after MS+CS
STACKS = [[], *[[p] for p in OVERLAYS if p.stem != "cpu_sampling"],
          [CONFIGS / "contrast" / "mscs.yaml", CONFIGS / "contrast" / "cpu_sampling.yaml"]]


def printed_config(*paths: Path, capsys) -> dict:
    args = [a for p in paths for a in ("--config", str(p))]
    with pytest.raises(SystemExit) as err:
        main(["fit", *args, "--print_config"])
    captured = capsys.readouterr()
    assert err.value.code in (0, None), captured.err
    return yaml.safe_load(captured.out)


def test_recipes_exist():
    names = {str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml")}
    for required in ("camvid/fpn_lite0.yaml", "cityscapes/hrnet_w48.yaml", "cityscapes/deeplabv3_r101.yaml",
                     "ade20k/ocrnet_hrnet_w48.yaml", "ade20k/upernet_swin_t.yaml", "pascal_context/hrnet_w48.yaml",
                     "cadis/exp2_ocrnet_r50.yaml", "cadis/exp3_ocrnet_r50.yaml", "synthetic/fpn_lite0.yaml",
                     "contrast/mscs.yaml", "contrast/ms.yaml", "contrast/ss.yaml", "contrast/cpu_sampling.yaml"):
        assert required in names, required


@pytest.mark.parametrize("base", BASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_base_builds_with_every_overlay(base, capsys):
    ce = printed_config(base, capsys=capsys)
    assert ce["model"]["contrast"] is None, f"{base} is a base recipe: cross-entropy only"
    assert "num_classes" not in ce["model"]  # linked from the data
    for stack in STACKS[1:]:
        printed = printed_config(base, *stack, capsys=capsys)
        contrast = printed["model"].pop("contrast")
        assert contrast["weight"] == pytest.approx(0.1) and contrast["temperature"] == pytest.approx(0.1)
        ce_rest = {k: v for k, v in ce.items() if k != "config"}
        rest = {k: v for k, v in printed.items() if k != "config"}
        ce_rest["model"] = {k: v for k, v in ce["model"].items() if k != "contrast"}
        assert rest == ce_rest, f"{[p.name for p in stack]} changes more than model.contrast"


def test_overlays_hold_the_papers_settings(capsys):
    base = CONFIGS / "synthetic" / "fpn_lite0.yaml"
    mscs = printed_config(base, CONFIGS / "contrast" / "mscs.yaml", capsys=capsys)["model"]["contrast"]
    assert mscs["cross_scale"] and mscs["scale_weights"] == [1.0, 0.7, 0.4, 0.1]
    assert mscs["cross_scale_reduction"] == "all" and (mscs["max_views"], mscs["max_total"]) == (2500, 10000)
    ms = printed_config(base, CONFIGS / "contrast" / "ms.yaml", capsys=capsys)["model"]["contrast"]
    assert not ms["cross_scale"] and ms["scale_weights"] == [1.0, 0.7, 0.4, 0.1]
    ss = printed_config(base, CONFIGS / "contrast" / "ss.yaml", capsys=capsys)["model"]["contrast"]
    assert not ss["cross_scale"] and ss["scale_weights"] == [0.0, 0.0, 0.0, 1.0]
    cpu = printed_config(base, CONFIGS / "contrast" / "mscs.yaml", CONFIGS / "contrast" / "cpu_sampling.yaml",
                         capsys=capsys)["model"]["contrast"]
    assert (cpu["max_views"], cpu["max_total"]) == (500, 2000) and cpu["cross_scale"]


def test_contrast_null_on_the_command_line_is_ce_only(capsys):
    base, mscs = CONFIGS / "synthetic" / "fpn_lite0.yaml", CONFIGS / "contrast" / "mscs.yaml"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(base), "--config", str(mscs), "--model.contrast", "null", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["model"]["contrast"] is None


@pytest.mark.slow
def test_paper_models_build():
    from scalecontrast.engine import SegmentationModule

    seen = set()
    for path in BASES:
        model = yaml.safe_load(path.read_text())["model"]
        if "model" in model:  # a class-path model (tests/test_any_model.py trains one through the CLI)
            continue
        key = (model["head"], model["backbone"], repr(model.get("model_kwargs")))
        if key in seen:
            continue
        seen.add(key)
        module = SegmentationModule(head=model["head"], backbone=model["backbone"], num_classes=19,
                                    model_kwargs=model.get("model_kwargs"), contrast={"weight": 0.1})
        assert module.contrastive_head is not None, path
        assert not any("projector" in n for n, _ in module.model.named_parameters()), path
