"""One-off: the CamVid study's results, made before `scalecontrast study` existed (one JSON line per scored
run in docs/results/camvid_converged.jsonl), as COMPLETE trials of the specs' studies in
studies/camvid/results.journal, with their provenance as user attributes.

    python studies/camvid/import_results.py docs/results/camvid_converged.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna

from scalecontrast.study import load_spec, open_study
from scalecontrast.study.runner import read_state, sync, tie_rule

SPECS = {"fpn_lite0": "studies/camvid/study_fpn_lite0.yaml",
         "smp_unet_lite0": "studies/camvid/study_smp_unet_lite0.yaml",
         "smp_unet_lite0_sgd": "studies/camvid/study_smp_unet_lite0_sgd.yaml"}
TUNE_ARMS = {"ce": "ce", "mscs_w0.1": "model.contrast.weight=0.1", "mscs_w0.3": "model.contrast.weight=0.3",
             "mscs_w1": "model.contrast.weight=1.0"}
SETTINGS = {"ce": {"model.contrast": None}, "mscs_w0.1": {"model.contrast.weight": 0.1},
            "mscs_w0.3": {"model.contrast.weight": 0.3}, "mscs_w1": {"model.contrast.weight": 1.0}}
COMPARE_ARMS = {"fpn_lite0": {"ce": "ce", "mscs": "paper", "mscs_tuned": "tuned"},
                "smp_unet_lite0": {"ce": "ce", "mscs_tuned": "mscs_w1"},
                "smp_unet_lite0_sgd": {"ce": "ce", "mscs_tuned": "mscs_w1"}}
# test rows of a seed whose val row came from an earlier training of the same seed (the first run folders
# were not kept, so the seed was trained again for test after the choice)
RETRAINED = {"fpn_lite0/ce/seed1/test", "fpn_lite0/mscs_w0.1/seed0/test", "fpn_lite0/mscs_w0.1/seed1/test",
             "fpn_lite0/mscs_w1/seed0/test", "fpn_lite0/mscs_w1/seed1/test"}
RETRAINED_NOTE = ("The val (tune) trial of this seed scored an earlier training of it; this test trial scores a "
                  "second training, after the choice (the first run folders were not kept). CE seed 1 trained "
                  "again scores 61.03 on val, where its first training scored 60.77.")
SOURCE = "docs/results/camvid_converged.jsonl (written by benchmarks/camvid_converged.py, now removed)"


def trial_attrs(row: dict) -> tuple[str, dict]:
    model, run, seed, split = row["model"], row["run"], row["seed"], row["split"]
    if split == "val" and model == "fpn_lite0":
        phase, arm = "tune", TUNE_ARMS[run]
    elif split == "test":
        phase, arm = "compare", COMPARE_ARMS[model][row["setting"]]
    else:  # the first smp Unet pair's CE val scores: a record of how far it trained, not a planned trial
        phase, arm = "record", run
    attrs = {"key": f"{phase}/{arm}/seed{seed}", "phase": phase, "arm": arm, "seed": seed, "split": split,
             "setting": SETTINGS[run], "metric": row["miou"], "per_class": row["per_class"],
             "pixel_acc": row.get("pixel_acc"), "steps": row["steps"],
             "fit_seconds": round(row["fit_minutes"] * 60, 1), "fit_cpu_seconds": None,
             "threads": row.get("fit_threads") or [row["threads"]], "commit": row.get("fit_commits") or [],
             "config_hash": None, "imported_from": f"{SOURCE}, row {row['key']}"}
    if row["key"] in RETRAINED:
        attrs["note"] = RETRAINED_NOTE
    return model, attrs


def main(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        model, attrs = trial_attrs(row)
        by_model.setdefault(model, []).append(attrs)
    for model, trials in by_model.items():
        spec = load_spec(SPECS[model])
        study = open_study(spec, heartbeat=None)
        if study.get_trials(deepcopy=False):
            raise SystemExit(f"{spec.storage}: the study {spec.name} already holds trials")
        for attrs in trials:
            study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE,
                                                      value=attrs["metric"], user_attrs=attrs))
        study.set_user_attr("imported_from", SOURCE)
        state = sync(spec, study, retry_failed=False)  # records the tuned setting; enqueues nothing left
        left = [p.key for p in state.plans if state.state_of(p) != "done"] + [p.key for p in state.waiting_for_choice]
        print(f"{spec.name}: {len(trials)} trials imported" + (f"; tuned: {state.tuned}" if spec.has_tune else "")
              + (f"; LEFT: {left}" if left else ""))
        if spec.has_tune:
            assert study.user_attrs["tuned"] == {"setting": state.tuned, "rule": tie_rule(spec)}
        assert not read_state(spec, study).waiting_for_choice


if __name__ == "__main__":
    main(sys.argv[1])
