"""One-off: the CamVid studies' results, made before `scalecontrast study` existed (one JSON line per scored
run in docs/results/camvid_*.jsonl), as COMPLETE trials of the specs' studies in
studies/camvid/results.journal, with their provenance as user attributes. Studies the journal already
holds are left as they are.

    python studies/camvid/import_results.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna

from scalecontrast.study import load_spec, open_study
from scalecontrast.study.runner import plan_attrs, read_state, sync, tie_rule

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


def import_trials(spec_path: str, trials: list[dict], source: str) -> None:
    """Add ``trials`` (user attributes) as COMPLETE trials of the spec's study, unless it holds trials."""
    spec = load_spec(spec_path)
    study = open_study(spec, heartbeat=None)
    if study.get_trials(deepcopy=False):
        print(f"{spec.name}: already in {spec.storage}, left as it is")
        return
    for attrs in trials:
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE,
                                                  value=attrs["metric"], user_attrs=attrs))
    study.set_user_attr("imported_from", source)
    # sync records the tuned setting (and would enqueue the trials left: a study with some is only read)
    state = read_state(spec, study)
    left = [p.key for p in state.plans if state.state_of(p) != "done"] + [p.key for p in state.waiting_for_choice]
    if spec.has_tune and not left:
        state = sync(spec, study, retry_failed=False)
    print(f"{spec.name}: {len(trials)} trials imported" + (f"; tuned: {state.tuned}" if spec.has_tune else "")
          + (f"; not run: {', '.join(left)}" if left else ""))
    if spec.has_tune:
        assert study.user_attrs["tuned"] == {"setting": state.tuned, "rule": tie_rule(spec)}


def read_rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# the 500-step studies: (spec, [(results file, row filter)], row setting name -> arm name)
SHORT = [
    ("studies/camvid/study_ablation_fpn.yaml",
     [("docs/results/camvid_ablation.jsonl", lambda r: r["head"] == "fpn")], {"ss": "single_scale"}),
    ("studies/camvid/study_ablation_deeplabv3.yaml",
     [("docs/results/camvid_ablation.jsonl", lambda r: r["head"] == "deeplabv3")], {"ss": "single_scale"}),
    ("studies/camvid/study_tuning_500.yaml",
     [("docs/results/camvid_tuning.jsonl", lambda r: True)], {"backbone_taps": "encoder_taps"}),
    ("studies/camvid/study_tuning_500_test.yaml",
     [("docs/results/camvid_ablation.jsonl", lambda r: r["head"] == "fpn" and r["setting"] in ("ce", "mscs")),
      ("docs/results/camvid_tuning_test.jsonl", lambda r: True)], {}),
    ("studies/camvid/study_variants_500.yaml",
     [("docs/results/camvid_variants.jsonl", lambda r: True)], {}),
]


def short_trials(spec_path: str, sources: list, arm_names: dict[str, str]) -> list[dict]:
    spec = load_spec(spec_path)
    plans = {p.key: p for p in spec.compare_trials(None)}
    trials = []
    for path, keep in sources:
        for row in read_rows(path):
            if not keep(row):
                continue
            name = row.get("setting") or row["variant"]
            plan = plans[f"compare/{arm_names.get(name, name)}/seed{row['seed']}"]
            assert plan.split == row["split"], (path, row["key"])
            threads = row.get("threads")
            attrs = {**plan_attrs(plan), "metric": row["miou"], "per_class": row["iou"],
                     "pixel_acc": row.get("pixel_acc"), "steps": row["steps"], "fit_seconds": row["fit_seconds"],
                     "fit_cpu_seconds": None, "threads": [threads] if threads else [], "commit": [],
                     "config_hash": None, "imported_from": f"{path} (a script now removed), row {row['key']}"}
            if row.get("reused"):
                attrs["note"] = f"scores the model trained for {row['reused']}"
            trials.append(attrs)
    return trials


def main() -> None:
    by_model: dict[str, list[dict]] = {}
    for row in read_rows("docs/results/camvid_converged.jsonl"):
        model, attrs = trial_attrs(row)
        by_model.setdefault(model, []).append(attrs)
    for model, trials in by_model.items():
        import_trials(SPECS[model], trials, SOURCE)
    for spec_path, sources, arm_names in SHORT:
        import_trials(spec_path, short_trials(spec_path, sources, arm_names),
                      ", ".join(sorted({s[0] for s in sources})) + " (written by a script now removed)")


if __name__ == "__main__":
    main()
