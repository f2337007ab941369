"""Every YAML recipe parses with the CLI (no misspelled key), has a contrastive-off twin, and its
model builds (without weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scalecontrast.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_configs_exist():
    names = {str(p.relative_to(p.parents[1])) for p in CONFIGS}
    for required in ("camvid/fpn_lite0_ce.yaml", "camvid/fpn_lite0_ss.yaml", "camvid/fpn_lite0_ms.yaml",
                     "camvid/fpn_lite0_mscs.yaml", "cityscapes/hrnet_w48_mscs.yaml",
                     "cityscapes/deeplabv3_r101_mscs.yaml", "ade20k/ocrnet_hrnet_w48_mscs.yaml",
                     "ade20k/upernet_swin_t_mscs.yaml", "pascal_context/hrnet_w48_mscs.yaml",
                     "cadis/exp2_ocrnet_r50_mscs.yaml", "cadis/exp3_ocrnet_r50_mscs.yaml"):
        assert required in names, required


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_parses(path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["fit", "--config", str(path), "--print_config"])
    assert err.value.code in (0, None), capsys.readouterr().err
    printed = yaml.safe_load(capsys.readouterr().out)
    model = printed["model"]
    if path.stem.endswith("_mscs"):
        twin = path.with_name(path.stem[: -len("_mscs")] + "_ce.yaml")
        assert twin.is_file(), f"{path.name} has no contrastive-off twin"
        contrast = model["contrast"]
        assert contrast["weight"] == pytest.approx(0.1) and contrast["temperature"] == pytest.approx(0.1)
        assert contrast["cross_scale"] and contrast["scale_weights"] == [1.0, 0.7, 0.4, 0.1]
        assert contrast["cross_scale_reduction"] == "all"  # the official code's mean
    if path.stem.endswith("_ce"):
        assert model["contrast"] is None
    if path.stem.endswith("_ss"):
        assert model["contrast"]["scale_weights"] == [0.0, 0.0, 0.0, 1.0] and not model["contrast"]["cross_scale"]


@pytest.mark.slow
def test_paper_models_build():
    from scalecontrast.engine import SegmentationModule

    seen = set()
    for path in CONFIGS:
        model = yaml.safe_load(path.read_text())["model"]
        if "model" in model:  # a class-path model (tests/test_any_model.py trains one through the CLI)
            continue
        key = (model["head"], model["backbone"], repr(model.get("model_kwargs")))
        if key in seen or not path.stem.endswith("_mscs"):
            continue
        seen.add(key)
        module = SegmentationModule(**{**model, "pretrained": False})
        assert module.contrastive_head is not None, path
        assert not any("projector" in n for n, _ in module.model.named_parameters()), path


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem.endswith(("_ss", "_ms", "_mscs"))],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_twins_differ_only_in_the_loss(path):
    """A contrastive recipe and its CE twin share everything but ``model.contrast`` and the run folder."""
    stem = path.stem.rsplit("_", 1)[0]
    mine, twin = (yaml.safe_load(p.read_text()) for p in (path, path.with_name(f"{stem}_ce.yaml")))
    for cfg in (mine, twin):
        cfg["trainer"].pop("default_root_dir", None)
        cfg["model"].pop("contrast")
    assert mine == twin
    assert mine["model"] == twin["model"]
