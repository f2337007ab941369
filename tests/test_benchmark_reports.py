"""The result tables of the CamVid study scripts: pairing by seed, statistics, Markdown blocks.

These scripts write docs/results.md, so their arithmetic is tested on hand-made rows here (no
training).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

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


def _jsonl(rows: Iterable[dict]) -> str:
    """The text of a results file holding ``rows``, one JSON object per line."""
    return "".join(json.dumps(r) + "\n" for r in rows)


def _rows(rows: list[dict]) -> dict[str, dict]:
    return {r["key"]: r for r in rows}


def _tuning_row(variant: str, seed: int, miou: float, split: str = "val", steps: int = 500) -> dict:
    return {"key": f"fpn/{variant}/seed{seed}/{split}", "variant": variant, "seed": seed, "split": split,
            "miou": miou, "steps": steps, "crop": [256, 256], "batch": 8}


def test_confirm_report_pairs_by_seed_number_and_ignores_other_heads_splits_recipes():
    recipe = {"steps": 500, "crop": [256, 256], "batch": 8}
    ab = [_ablation_row("ce", s, m) for s, m in [(2, 52.0), (0, 50.0), (1, 51.0), (3, 49.0)]]
    ab += [_ablation_row("mscs", s, m) for s, m in [(1, 51.7), (0, 50.5), (2, 52.4)]]
    # same seeds, but another head, another split or another recipe: must not be paired with
    ab += [_ablation_row("ce", 0, 10.0, head="deeplabv3"), _ablation_row("mscs", 1, 10.0, head="deeplabv3"),
           {**_ablation_row("ce", 1, 10.0), "key": "fpn/ce/seed1/val", "split": "val"},
           {**_ablation_row("ce", 4, 10.0), "steps": 1000}]
    ab = [{**recipe, **r} for r in ab]
    val = [_tuning_row("weight_0.3", s, 55.0 + s) for s in range(2)] + [_tuning_row("weight_0.3", 2, 0.0, steps=9)]
    # seed 4 has no CE or MS+CS partner; seeds listed out of order
    chosen = [_tuning_row("weight_0.3", s, m, split="test") for s, m in [(2, 53.0), (4, 70.0), (0, 51.0), (1, 52.5)]]
    text = tuning.confirm_report(_rows(chosen), _rows(ab), _rows(val))
    line = next(line for line in text.splitlines() if "`weight_0.3`" in line)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:4] == ["55.50 (2)", "4", "56.62"]
    assert cells[5] == "0: 51.00, 1: 52.50, 2: 53.00, 4: 70.00"
    assert cells[6].startswith("+1.17 ± 0.29, better on 3/3")  # vs CE 50, 51, 52 on seeds 0-2
    assert cells[7].startswith("+0.63 ± 0.15, better on 3/3")  # vs MS+CS 50.5, 51.7, 52.4
    ce_cells = [c.strip() for c in next(x for x in text.splitlines() if x.startswith("| CE |")).strip("|").split("|")]
    assert ce_cells[2:4] == ["4", "50.50"] and ce_cells[6:] == ["-", "-"]


def test_confirm_refuses_a_variant_not_studied_on_val_or_a_second_variant(tmp_path):
    args = SimpleNamespace(confirm="weight_0.3", seeds=[0], next_round=False, steps=500, crop=[256, 256], batch=8,
                           tuning_out=str(tmp_path / "runs"))
    with pytest.raises(SystemExit, match="no val run"):
        tuning.confirm(args, {}, tmp_path / "tuning.jsonl", {}, tmp_path / "test.jsonl")
    studied = _rows([_tuning_row("weight_0.3", 0, 55.0)])
    other = _rows([_tuning_row("tau_0.2", 0, 50.0, split="test")])
    with pytest.raises(SystemExit, match="tau_0.2.*--next-round"):
        tuning.confirm(args, studied, tmp_path / "tuning.jsonl", other, tmp_path / "test.jsonl")
    # a later round is allowed on request; it then needs the study's finished model (none here)
    args.next_round = True
    with pytest.raises(SystemExit, match="no finished study run of weight_0.3 seed 0"):
        tuning.confirm(args, studied, tmp_path / "tuning.jsonl", other, tmp_path / "test.jsonl")
    assert not (tmp_path / "test.jsonl").exists()


def test_confirm_report_labels_rounds_in_the_order_they_went_to_test():
    chosen = [_tuning_row("weight_1.0", 0, 52.0, split="test"), _tuning_row("weight_0.3", 0, 51.0, split="test")]
    text = tuning.confirm_report(_rows(chosen), {}, {})
    assert "`weight_1.0`: loss weight 1.0 (round 1)" in text and "`weight_0.3`: loss weight 0.3 (round 2)" in text
    assert "Round k was chosen on val after" in text
    single = tuning.confirm_report(_rows(chosen[:1]), {}, {})
    assert "round" not in single.split("Every model")[0] and "Round k" not in single


def test_tuning_report_counts_seeds_where_the_variant_is_higher():
    rows = [_tuning_row("ce", s, m) for s, m in enumerate([50.0, 52.0, 51.0])]
    rows += [_tuning_row("weight_0.3", s, m) for s, m in [(2, 50.0), (0, 51.0), (1, 53.0)]]
    line = next(x for x in tuning.report(_rows(rows)).splitlines() if x.startswith("| `weight_0.3`"))
    assert line.endswith("| 0: 51.00, 1: 53.00, 2: 50.00 | +0.33 (2/3) | - |")


def test_write_block_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("intro\n<!-- T:BEGIN -->\nold\n<!-- T:END -->\noutro\n")
    ablation.write_block(doc, "T", "new table\n")
    assert doc.read_text() == "intro\n<!-- T:BEGIN -->\nnew table\n<!-- T:END -->\noutro\n"
    with pytest.raises(SystemExit, match="markers"):
        ablation.write_block(doc, "OTHER", "x")


def _converged_row(model: str, run: str, setting: str, seed: int, split: str, miou: float) -> dict:
    return {"key": f"{model}/{run}/seed{seed}/{split}", "setting": setting, "run": run, "model": model,
            "seed": seed, "split": split, "miou": miou, "per_class": {}, "steps": 10, "fit_minutes": 1.0}


def test_converged_weight_is_chosen_on_val_only_once_every_tuning_run_is_scored():
    import camvid_converged as conv

    rows = {}
    for w, base in ((0.1, 50.0), (0.3, 52.0), (1.0, 51.0)):
        for s in conv.TUNE_SEEDS:
            r = _converged_row("fpn_lite0", conv.run_name("mscs", w), f"tune_w{w:g}", s, "val", base + s)
            rows[r["key"]] = r
    # a test score of another weight does not enter the choice
    t = _converged_row("fpn_lite0", conv.run_name("mscs", 1.0), "mscs_tuned", 0, "test", 99.0)
    rows[t["key"]] = t
    assert conv.tuned_weight(rows) == 0.3
    del rows[f"fpn_lite0/{conv.run_name('mscs', 0.3)}/seed2/val"]
    assert conv.tuned_weight(rows) is None  # not before every tuning run has its val score
    assert conv.run_name("ce") == "ce" and conv.run_name("mscs", 0.3) == "mscs_w0.3"
    assert conv.run_name("mscs", 0.1, "hard_0.5") == "hard_0.5_w0.1"


def _tuned_rows(conv, best: float) -> dict[str, dict]:
    rows = {}
    for w in conv.TUNE_WEIGHTS:
        for s in conv.TUNE_SEEDS:
            r = _converged_row("fpn_lite0", conv.run_name("mscs", w), f"tune_w{w:g}", s, "val",
                               60.0 + (w == best))
            rows[r["key"]] = r
    return rows


def test_converged_plan_holds_back_the_tuned_runs_until_the_weight_is_chosen():
    import camvid_converged as conv

    jobs, waiting = conv.plan(["tune", "study"], {}, None)
    assert waiting
    tune = [j for j in jobs if j.splits == ("val",)]
    assert len(tune) == len(conv.TUNE_SEEDS) * (1 + len(conv.TUNE_WEIGHTS))
    assert jobs[: len(tune)] == tune  # the tuning runs come first: they unblock the rest
    # nothing that needs w, nor a candidate weight's test score, before the choice
    assert {j.setting for j in jobs if j.splits == ("test",)} == {"ce"}
    assert conv.plan(["study"], {}, None)[0][: len(tune)] == tune  # the study includes the tuning runs
    assert {j.model for j in jobs if j.splits == ("test",)} == {"fpn_lite0", "smp_unet_lite0"}

    jobs, waiting = conv.plan(["study"], _tuned_rows(conv, best=0.3), "hard_0.5")
    assert not waiting
    tuned = [j for j in jobs if j.setting == "mscs_tuned"]
    assert {(j.model, j.run) for j in tuned} == {("fpn_lite0", "mscs_w0.3"), ("smp_unet_lite0", "mscs_w0.3")}
    assert len(tuned) == len(conv.STUDY_SEEDS["fpn_lite0"]) + len(conv.STUDY_SEEDS["smp_unet_lite0"])
    assert all(j.extra == ("--model.contrast.weight", "0.3") for j in tuned)
    variant = [j for j in jobs if j.setting == "variant"]
    assert len(variant) == 5 and variant[0].run == "hard_0.5_w0.1" and "--model.contrast.hard_fraction" in \
        " ".join(variant[0].extra)


def test_converged_workers_share_the_queue(tmp_path, monkeypatch):
    """Two workers never train one run at once; a claim left by a dead worker is taken over; a worker
    waits for the tuned weight and then trains the runs that need it."""
    import argparse
    import os

    import camvid_converged as conv

    args = argparse.Namespace(out=str(tmp_path / "runs"), results=str(tmp_path / "res.jsonl"),
                              variants=str(tmp_path / "none.jsonl"))
    job = conv.Job("fpn_lite0", "ce", 0, ("val",), (), "ce")
    first = conv.claim(args, job)
    assert first is not None and conv.claim(args, job) is None  # held (by this live process)
    first.release()
    lock = tmp_path / "runs" / "fpn_lite0" / "ce" / "seed0" / ".claim.lock"
    import socket
    lock.write_text(f"{socket.gethostname()} 999999999\n")  # a worker that is gone
    again = conv.claim(args, job)
    assert again is not None
    again.release()

    # the loop: every tuning run but one is finished, and that one is claimed by "another worker"
    rows = _tuned_rows(conv, best=1.0)
    ce = {f"fpn_lite0/ce/seed{s}/val": _converged_row("fpn_lite0", "ce", "ce", s, "val", 55.0)
          for s in conv.TUNE_SEEDS}
    rows.update(ce)
    held = rows.pop("fpn_lite0/mscs_w1/seed2/val")
    path = tmp_path / "res.jsonl"
    path.write_text(_jsonl(rows.values()))
    other = conv.claim(args, conv.Job("fpn_lite0", "mscs_w1", 2, ("val",), (), "tune_w1"))
    trained = []

    def fake_fit(args, model, run, seed, splits, extra, results, path, setting, keep_fds=()):
        assert len(keep_fds) == 1  # the claim goes with the fit
        trained.append((model, run, seed, splits, setting))
        for sp in splits:
            conv.append_result(path, results, _converged_row(model, run, setting, seed, sp, 1.0))

    sleeps = []

    def fake_sleep(seconds):  # the other worker finishes its run while this one waits
        sleeps.append(seconds)
        if other.held:
            conv.append_result(path, {}, held)
            other.release()

    monkeypatch.setattr(conv, "fit_and_score", fake_fit)
    monkeypatch.setattr(conv.time, "sleep", fake_sleep)
    conv.work(args, ["tune", "study"], poll=0.01)
    assert sleeps  # it waited for the weight
    assert ("fpn_lite0", "mscs_w1", 2, ("val",), "tune_w1") not in trained  # never trained twice
    assert {t[4] for t in trained} == {"ce", "mscs", "mscs_tuned"}
    tuned = [t for t in trained if t[4] == "mscs_tuned"]
    assert {t[1] for t in tuned} == {"mscs_w1"} and len(tuned) == 8
    assert not list((tmp_path / "runs").rglob(".claim.lock"))  # every claim released
    assert os.path.exists(path)


def test_converged_variant_winner_needs_three_val_seeds_and_to_beat_mscs(tmp_path):

    import camvid_converged as conv

    path = tmp_path / "variants.jsonl"

    def write(rows):
        path.write_text(_jsonl({"variant": v, "seed": s, "split": "val", "miou": m} for v, s, m in rows))

    write([("mscs", s, 50.0) for s in range(3)] + [("hard_0.5", s, 51.0) for s in range(2)])
    assert conv.variant_winner(path) is None  # two seeds only
    write([("mscs", s, 50.0) for s in range(3)] + [("hard_0.5", s, 51.0) for s in range(3)]
          + [("memory_1000", s, 50.5) for s in range(3)])
    assert conv.variant_winner(path) == "hard_0.5"
    write([("mscs", s, 52.0) for s in range(3)] + [("hard_0.5", s, 51.0) for s in range(3)])
    assert conv.variant_winner(path) is None  # MS+CS as configured won
    assert conv.variant_winner(tmp_path / "missing.jsonl") is None


def test_converged_report_pairs_by_seed_and_keeps_models_and_splits_apart(tmp_path):

    import camvid_converged as conv

    rows = [_converged_row("fpn_lite0", "ce", "ce", s, "test", 50.0 + s) for s in (0, 1, 2)]
    rows += [_converged_row("fpn_lite0", "mscs_w0.1", "mscs", s, "test", 51.0 + 1.1 * s) for s in (2, 1, 0)]
    rows += [_converged_row("smp_unet_lite0", "ce", "ce", 0, "test", 10.0)]
    path = tmp_path / "r.jsonl"
    path.write_text(_jsonl(rows))
    text = conv.study_report(path)
    fpn = text.split("#### smp_unet_lite0")[0]
    assert "| CE | 3 | 51.00 ± 1.00 | 0: 50.00, 1: 51.00, 2: 52.00 | - |" in fpn
    assert "+1.10 ± 0.10, better on 3/3" in fpn
    assert "10.00" not in fpn and "#### smp_unet_lite0, test mIoU (%)" in text


def test_converged_headline_is_the_test_table_of_every_model_paired_against_its_own_ce(tmp_path):

    import camvid_converged as conv
    from camvid_ablation import write_block

    rows = [_converged_row("fpn_lite0", "mscs_w0.1", "mscs", s, "test", 51.0 + 1.1 * s) for s in (0, 1, 2)]
    rows += [_converged_row("fpn_lite0", "ce", "ce", s, "test", 50.0 + s) for s in (0, 1, 2)]
    rows += [_converged_row("fpn_lite0", "ce", "ce", 0, "val", 90.0)]  # val is not in the headline
    rows += [_converged_row("smp_unet_lite0", "ce", "ce", 0, "test", 10.0)]
    path = tmp_path / "r.jsonl"
    path.write_text(_jsonl(rows))
    lines = conv.headline(path).splitlines()
    assert lines[2] == "| fpn_lite0 | CE | 3 | 51.00 ± 1.00 | - |"  # CE first, then the others
    assert lines[3].startswith("| fpn_lite0 | CE + 0.1 MS+CS (the paper's defaults) | 3 | 52.10 ± 1.10 | +1.10 ± 0.10")
    assert lines[4] == "| smp_unet_lite0 | CE | 1 | 10.00 ± - | - |" and lines[5] == ""
    assert "planned test runs are scored so far" in lines[6]  # the tuned weight is not chosen yet
    assert "90.00" not in conv.headline(path)
    tuned = _tuned_rows(conv, best=1.0)  # w = 1.0 chosen: the study's test runs are all known
    path.write_text(_jsonl([*rows, *tuned.values()]))
    n_test = 3 * len(conv.STUDY_SEEDS["fpn_lite0"]) + 2 * len(conv.STUDY_SEEDS["smp_unet_lite0"])
    assert conv.headline(path).splitlines()[-1].startswith(f"7 of the study's {n_test} test runs are scored")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- CONVERGED_HEADLINE:BEGIN -->\nold\n<!-- CONVERGED_HEADLINE:END -->\nrest\n")
    write_block(readme, "CONVERGED_HEADLINE", conv.headline(path))
    assert "old" not in readme.read_text() and lines[3] in readme.read_text()
    assert conv.headline(tmp_path / "none.jsonl") == ""


def test_converged_report_names_the_default_as_tuned_when_w_01_is_chosen(tmp_path):

    import camvid_converged as conv

    rows = [_converged_row("fpn_lite0", conv.run_name("mscs", w), f"tune_w{w:g}", s, "val", m + s)
            for w, m in ((0.1, 53.0), (0.3, 52.0), (1.0, 51.0)) for s in conv.TUNE_SEEDS]
    rows += [_converged_row("fpn_lite0", "mscs_w0.1", "mscs", s, "test", 51.0 + s) for s in (0, 1)]
    path = tmp_path / "r.jsonl"
    path.write_text(_jsonl(rows) + '{"key": "half-writ')  # a kill mid-append
    text = conv.study_report(path)
    assert "| CE + 0.1 MS+CS (the paper's defaults) = CE + w MS+CS (w chosen on the FPN's val runs), w = 0.1 | 2 |" \
        in text
    assert "| CE + 0.3 MS+CS | 3 | 53.00 ± 1.00 |" in text  # a tuning run, on val


def test_converged_per_class_gains_pair_by_seed(tmp_path):

    import camvid_converged as conv

    rows = []
    for s, (sky, road) in enumerate(((80.0, 90.0), (81.0, 91.0))):
        ce = _converged_row("fpn_lite0", "ce", "ce", s, "test", 50.0)
        ce["per_class"] = {"Sky": sky, "Road": road}
        ms = _converged_row("fpn_lite0", "mscs_w0.1", "mscs", s, "test", 51.0)
        ms["per_class"] = {"Sky": sky + 1 + s, "Road": road - 2}
        rows += [ce, ms]
    extra = _converged_row("fpn_lite0", "mscs_w0.1", "mscs", 7, "test", 60.0)  # no CE partner: left out
    extra["per_class"] = {"Sky": 0.0, "Road": 0.0}
    path = tmp_path / "r.jsonl"
    path.write_text(_jsonl(rows + [extra]))
    gains = conv.per_class_gains(path)
    (label, g), = gains.items()
    assert label.startswith("CE + 0.1 MS+CS")
    assert g == {"Sky": 1.5, "Road": -2.0}
    conv.gains_figure(path, tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 1000
    assert conv.per_class_gains(path, "smp_unet_lite0") == {}  # the models are kept apart
    smp = [_converged_row("smp_unet_lite0", run, setting, 0, "test", 40.0) for run, setting in
           (("ce", "ce"), ("mscs_w0.3", "mscs_tuned"))]
    smp[0]["per_class"], smp[1]["per_class"] = {"Sky": 70.0, "Road": 80.0}, {"Sky": 71.0, "Road": 79.0}
    path.write_text(path.read_text() + _jsonl(smp))
    assert list(conv.per_class_gains(path, "smp_unet_lite0").values()) == [{"Sky": 1.0, "Road": -1.0}]
    conv.gains_figure(path, tmp_path / "g2.png")  # one panel per model
    assert (tmp_path / "g2.png").stat().st_size > (tmp_path / "g.png").stat().st_size


def test_converged_calibration_figure_marks_the_recipes_final_val_runs(tmp_path):
    import argparse

    import camvid_converged as conv

    args = argparse.Namespace(seed=0, steps=3000, crop=[256, 256], batch=8, results=str(tmp_path / "r.jsonl"))
    curve = tmp_path / "curve.jsonl"
    conv.record_curve(curve, "ce", 0, {250: 50.0, 500: 55.0}, args)
    assert conv.record_curve(curve, "ce", 0, {250: 50.0, 500: 55.0, 750: 60.0}, args) == 1  # only the new point
    rows = [_converged_row("fpn_lite0", "ce", "ce", s, "val", 60.0 + s) for s in (1, 0)]
    rows += [_converged_row("fpn_lite0", "mscs_w0.3", "tune_w0.3", 0, "val", 70.0),  # not the 0.1 twin
             _converged_row("fpn_lite0", "ce", "ce", 0, "test", 1.0),  # not val
             _converged_row("smp_unet_lite0", "ce", "ce", 0, "val", 2.0)]  # not the FPN
    (tmp_path / "r.jsonl").write_text(_jsonl(rows))
    assert conv.recipe_endpoints(tmp_path / "r.jsonl") == {"ce": (10, [60.0, 61.0])}
    conv.figure(curve, tmp_path / "c.png", args)
    assert (tmp_path / "c.png").stat().st_size > 1000



def test_converged_calibration_of_another_model_keeps_its_optimizer_apart(tmp_path):
    import argparse

    import camvid_converged as conv

    fpn = argparse.Namespace(seed=0, steps=3000, crop=[256, 256], batch=8, results=str(tmp_path / "r.jsonl"))
    curve = tmp_path / "curve.jsonl"
    curve.write_text(_jsonl([{"kind": "calibration", "setting": "ce", "model": "fpn_lite0", "seed": 0, "split": "val",
                              "step": 250, "miou": 50.0, "schedule_steps": 3000, "crop": [256, 256],
                              "batch": 8}]))  # a row from before the optimizer was recorded: the FPN's recipe
    unet = {"model": "smp_unet_lite0", "steps": 1250, "crop": [256, 256], "batch": 8, "seed": 0}
    adamw = argparse.Namespace(**unet, optimizer="adamw", lr=0.001, weight_decay=0.01)
    sgd = argparse.Namespace(**unet, optimizer="sgd", lr=0.05, weight_decay=None)
    assert conv.optimizer_args(adamw) == ["--model.optimizer.class_path", "torch.optim.AdamW",
                                          "--model.optimizer.init_args.lr", "0.001",
                                          "--model.optimizer.init_args.weight_decay", "0.01"]
    args = conv.calibration_args(argparse.Namespace(**vars(sgd), data_root="d", val_every=250, workers=1), "ce",
                                 tmp_path)
    assert args[1].endswith("studies/camvid/smp_unet_lite0.yaml")
    assert args[-4:] == ["--model.optimizer.class_path", "torch.optim.SGD", "--model.optimizer.init_args.lr", "0.05"]
    with pytest.raises(SystemExit, match="no 'mscs' recipe"):
        conv.calibration_args(argparse.Namespace(**vars(sgd), data_root="d", val_every=250, workers=1), "mscs",
                              tmp_path)
    assert conv.record_curve(curve, "ce", 0, {250: 30.0, 500: 40.0}, adamw) == 2
    assert conv.record_curve(curve, "ce", 0, {250: 20.0}, sgd) == 1  # another optimizer: another curve
    assert conv.record_curve(curve, "ce", 0, {250: 30.0}, adamw) == 0
    assert [r["miou"] for r in conv.curve_rows(curve, fpn)] == [50.0]  # the FPN's table: its own rows only
    assert conv.opt_slug(conv.schedule(sgd)) == "sgd_lr0.05"
    curves = conv.other_curves(curve)["smp_unet_lite0"]
    assert list(curves.values()) == [{250: 30.0, 500: 40.0}, {250: 20.0}]
    assert next(iter(curves)).startswith("CE, adamw, lr 0.001, wd 0.01 (1250-step poly")
    text = conv.report(curve, fpn)
    assert "| 250 | 50.00 |" in text and "smp_unet_lite0, val mIoU (%):" in text and "| 500 | 40.00 | - |" in text
    conv.figure(curve, tmp_path / "c.png", fpn)  # a second panel for the Unet
    assert (tmp_path / "c.png").stat().st_size > 1000
    # the panel marks the first smp pair's final CE val scores
    (tmp_path / "r.jsonl").write_text(_jsonl([_converged_row("smp_unet_lite0_sgd", "ce", "ce", s, "val", 38.0 + s)
                                              for s in (0, 1)]))
    conv.figure(curve, tmp_path / "c2.png", fpn)
    assert (tmp_path / "c2.png").stat().st_size > (tmp_path / "c.png").stat().st_size

def test_converged_fit_time_counts_each_start_up_to_its_last_checkpoint(tmp_path):
    import os

    import camvid_converged as conv

    out, ckpt = tmp_path, tmp_path / "last.ckpt"
    (out / "fit_seconds").write_text("60.0\n")  # the older record of an earlier start
    (out / "fit_starts.jsonl").write_text(json.dumps({"start": 1000.0}) + "\n")
    ckpt.write_bytes(b"x")
    os.utime(ckpt, (1100.0, 1100.0))  # a start killed (no end line) after its checkpoint at t = 1100
    conv.open_start(out, ckpt)  # closes the killed start at its checkpoint, opens a new one
    spans = conv._spans(out)
    assert spans[1] == {"end": 1100.0} and "start" in spans[2]
    t = spans[2]["start"]
    os.utime(ckpt, (t + 30.0, t + 30.0))
    conv.close_start(out, ckpt)
    assert conv.fit_seconds(out) == pytest.approx(60.0 + 100.0 + 30.0)
    os.utime(ckpt, (t, t))  # (the checkpoint's real time: before the next start)
    conv.open_start(out, ckpt)  # a start killed before it wrote a checkpoint: counts nothing
    conv.close_start(out, ckpt)
    assert conv.fit_seconds(out) == pytest.approx(190.0)



def test_converged_fit_starts_record_their_commit_and_threads(tmp_path, monkeypatch):
    import camvid_converged as conv

    ckpt = tmp_path / "last.ckpt"
    commit = conv.source_commit()
    assert commit is None or commit.split("-")[0].isalnum()
    for threads in ("1", "2", "1"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        conv.open_start(tmp_path, ckpt)
        conv.close_start(tmp_path, ckpt)
    assert conv.fit_sources(tmp_path) == ([commit] if commit else [], [1, 2])


def test_converged_worker_goes_on_past_a_failed_run_and_names_it(tmp_path, monkeypatch):
    import argparse
    import subprocess

    import camvid_converged as conv

    args = argparse.Namespace(out=str(tmp_path / "runs"), results=str(tmp_path / "res.jsonl"),
                              variants=str(tmp_path / "none.jsonl"))
    trained = []

    def fake_fit(args, model, run, seed, splits, extra, results, path, setting, keep_fds=()):
        if (run, seed) == ("mscs_w0.3", 1):
            raise subprocess.CalledProcessError(1, ["fit"])
        trained.append((run, seed))
        for sp in splits:
            conv.append_result(path, results, _converged_row(model, run, setting, seed, sp, 1.0))

    monkeypatch.setattr(conv, "fit_and_score", fake_fit)
    monkeypatch.setattr(conv.time, "sleep", lambda s: pytest.fail("nothing to wait for"))
    with pytest.raises(SystemExit, match=r"fpn_lite0/mscs_w0.3/seed1: fit failed \(exit 1\)"):
        conv.work(args, ["tune", "study"], poll=0.01)
    # every other tuning run was trained; without the weight the study's tuned runs could not start
    assert len(trained) == len(conv.TUNE_SEEDS) * (1 + len(conv.TUNE_WEIGHTS)) - 1 + 5 + 3  # + CE test runs
    assert not list((tmp_path / "runs").rglob(".claim.lock"))


def test_converged_worker_takes_runs_with_a_checkpoint_first(tmp_path, monkeypatch):
    """A model already trained (for its val score) is scored on test, and an interrupted run resumed,
    before any new run is trained: what this machine trained is used before the session ends."""
    import argparse

    import camvid_converged as conv

    args = argparse.Namespace(out=str(tmp_path / "runs"), results=str(tmp_path / "res.jsonl"),
                              variants=str(tmp_path / "none.jsonl"))
    rows = _tuned_rows(conv, best=0.3)
    rows.update({f"fpn_lite0/ce/seed{s}/val": _converged_row("fpn_lite0", "ce", "ce", s, "val", 55.0)
                 for s in conv.TUNE_SEEDS})
    Path(args.results).write_text(_jsonl(rows.values()))
    for model, run, seed in (("fpn_lite0", "mscs_w0.3", 2), ("fpn_lite0", "ce", 2), ("smp_unet_lite0", "ce", 1)):
        ckpt = tmp_path / "runs" / model / run / f"seed{seed}" / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"")
    order = []

    def fake_fit(args, model, run, seed, splits, extra, results, path, setting, keep_fds=()):
        order.append((model, run, seed, setting))
        for sp in splits:
            conv.append_result(path, results, _converged_row(model, run, setting, seed, sp, 1.0))

    monkeypatch.setattr(conv, "fit_and_score", fake_fit)
    monkeypatch.setattr(conv.time, "sleep", lambda s: pytest.fail("nothing to wait for"))
    conv.work(args, ["tune", "study"], poll=0.01)
    # in the plan's order among themselves, then the rest in the plan's order
    assert order[:3] == [("fpn_lite0", "ce", 2, "ce"), ("fpn_lite0", "mscs_w0.3", 2, "mscs_tuned"),
                         ("smp_unet_lite0", "ce", 1, "ce")]
    assert order[3:5] == [("fpn_lite0", "ce", 0, "ce"), ("fpn_lite0", "mscs_w0.1", 0, "mscs")]
    assert len(order) == 5 * 3 + 3 * 2


def test_converged_remaining_lists_the_queue_and_marks_checkpoints(tmp_path):
    import argparse

    import camvid_converged as conv

    args = argparse.Namespace(out=str(tmp_path / "runs"), results=str(tmp_path / "res.jsonl"),
                              variants=str(tmp_path / "none.jsonl"))
    (tmp_path / "runs" / "fpn_lite0" / "ce" / "seed1" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "fpn_lite0" / "ce" / "seed1" / "checkpoints" / "last.ckpt").write_bytes(b"")
    text = conv.remaining(args)
    assert text.startswith(f"still to run ({len(conv.TUNE_SEEDS) * 4 + 5 + 3}):")
    assert "fpn_lite0/ce/seed1 (ce, val) [checkpoint here]" in text and "once it is chosen" in text
    rows = _tuned_rows(conv, best=0.1)
    jobs, _ = conv.plan(["tune", "study"], rows, None)
    for j in jobs:
        for sp in j.splits:
            r = _converged_row(j.model, j.run, j.setting, j.seed, sp, 1.0)
            rows[r["key"]] = r
    Path(args.results).write_text(_jsonl(rows.values()))
    assert conv.remaining(args) == ""


def test_model_cost_splits_flops_into_encoder_and_decoder():
    import model_cost
    import torch

    x = torch.randn(2, 3, 64, 64)
    fpn_total, fpn_enc = model_cost.gflops(model_cost.fpn().eval(), x)
    wide_total, wide_enc = model_cost.gflops(model_cost.smp_unet((256, 128, 64, 32, 16)).eval(), x)
    half_total, half_enc = model_cost.gflops(model_cost.smp_unet((128, 64, 32, 16, 16)).eval(), x)
    assert 0 < fpn_enc < fpn_total and 0 < wide_enc < wide_total
    assert wide_enc == pytest.approx(half_enc) == pytest.approx(fpn_enc)  # the same Lite0 encoder
    assert half_total < wide_total  # a narrower decoder costs less


def test_converged_report_command_writes_the_docs_and_readme_blocks(tmp_path, monkeypatch, capsys):

    import camvid_converged as conv

    rows = [_converged_row("fpn_lite0", "ce", "ce", s, "test", 50.0 + s) for s in (0, 1)]
    rows += [_converged_row("fpn_lite0", "mscs_w0.1", "mscs", s, "test", 51.0 + 1.2 * s) for s in (0, 1)]
    results = tmp_path / "res.jsonl"
    results.write_text(_jsonl(rows))
    docs, readme = tmp_path / "results.md", tmp_path / "README.md"
    docs.write_text("<!-- CALIBRATION:BEGIN -->\n<!-- CALIBRATION:END -->\n<!-- CONVERGED:BEGIN -->\nold\n"
                    "<!-- CONVERGED:END -->\n")
    readme.write_text("top\n<!-- CONVERGED_HEADLINE:BEGIN -->\nold\n<!-- CONVERGED_HEADLINE:END -->\nbottom\n")
    monkeypatch.setattr(sys, "argv", [
        "camvid_converged.py", "--report", "--results", str(results), "--curve", str(tmp_path / "curve.jsonl"),
        "--out", str(tmp_path / "runs"), "--variants", str(tmp_path / "none.jsonl"),
        "--docs", str(docs), "--readme", str(readme)])
    conv.main()
    assert "still to run" in capsys.readouterr().out
    head = readme.read_text()
    assert head.startswith("top\n") and head.endswith("bottom\n") and "old" not in head
    assert "| fpn_lite0 | CE | 2 | 50.50 ± 0.71 | - |" in head
    assert "| fpn_lite0 | CE + 0.1 MS+CS (the paper's defaults) | 2 | 51.60 ± 0.85 | +1.10 ± 0.14" in head
    text = docs.read_text()
    assert "old" not in text and "51.60 ± 0.85" in text


def test_converged_score_scores_the_finished_seeds_of_a_run_on_another_split(tmp_path, monkeypatch):
    import argparse

    import camvid_converged as conv

    results = tmp_path / "r.jsonl"
    results.write_text(_jsonl([_converged_row("smp_unet_lite0_sgd", "ce", "ce", s, "test", 35.0) for s in (0, 1)]))
    for seed, finished in ((0, True), (1, True), (2, False)):
        d = tmp_path / "out" / "smp_unet_lite0_sgd" / "ce" / f"seed{seed}"
        d.mkdir(parents=True)
        if finished:
            (d / "fit_done").touch()
    calls = []
    monkeypatch.setattr(conv, "fit_and_score", lambda args, model, run, seed, splits, extra, res, path, setting:
                        calls.append((model, run, seed, splits, setting)))
    args = argparse.Namespace(out=str(tmp_path / "out"), results=str(results))
    conv.score_finished(args, "smp_unet_lite0_sgd/ce", "val")
    assert calls == [("smp_unet_lite0_sgd", "ce", s, ("val",), "ce") for s in (0, 1)]  # seed 2 is not finished
    with pytest.raises(SystemExit, match="MODEL/RUN"):
        conv.score_finished(args, "nosuchmodel/ce", "val")
    with pytest.raises(SystemExit, match="no finished run"):
        conv.score_finished(args, "smp_unet_lite0_sgd/mscs_w1", "val")
