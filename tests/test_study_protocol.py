"""The study's protocol on a real Optuna storage, trials told by hand (no training): no candidate setting
is enqueued for the compare split before the tune phase has chosen, and the choice follows the rule."""

from __future__ import annotations

import json
from pathlib import Path

from optuna.trial import TrialState

from scalecontrast.study import open_study, parse_spec
from scalecontrast.study.runner import read_state, sync

ROOT = Path(__file__).resolve().parents[1]
BASE = str(ROOT / "configs" / "synthetic" / "fpn_lite0.yaml")


def make(tmp_path, weights=(1.0, 0.1)):
    spec = parse_spec({
        "name": "protocol", "config": [BASE], "runs": str(tmp_path / "runs"),
        "tune": {"search": {"model.contrast.weight": list(weights)}, "seeds": [0, 1]},
        "compare": {"arms": {"ce": None, "paper": {"model.contrast.weight": 0.1}, "tuned": "tune"},
                    "seeds": [0, 1, 2]},
    }, tmp_path / "spec.yaml")
    return spec, open_study(spec, heartbeat=None)


def enqueued(study):
    return [t.user_attrs for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]


def take(study, scores):
    """Play a worker: take every waiting trial and tell its score from ``scores(attrs)``."""
    taken = []
    while any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)):
        trial = study.ask()
        taken.append(dict(trial.user_attrs))
        study.tell(trial, scores(trial.user_attrs))
    return taken


def test_no_candidate_on_test_before_the_choice(tmp_path):
    spec, study = make(tmp_path)
    sync(spec, study, retry_failed=True)
    first = enqueued(study)
    # the tune trials (the reference arm and both candidates, on val) and CE's compare trials only
    assert {a["key"] for a in first if a["phase"] == "tune"} == {
        f"tune/{arm}/seed{s}" for s in (0, 1) for arm in ("ce", "model.contrast.weight=1.0",
                                                            "model.contrast.weight=0.1")}
    assert {a["split"] for a in first if a["phase"] == "tune"} == {"val"}
    assert {a["key"] for a in first if a["phase"] == "compare"} == {f"compare/ce/seed{s}" for s in (0, 1, 2)}

    val = {("model.contrast.weight=1.0", 0): 61.0, ("model.contrast.weight=1.0", 1): 63.0,  # mean 62
           ("model.contrast.weight=0.1", 0): 62.5, ("model.contrast.weight=0.1", 1): 61.5,  # mean 62: a tie
           ("ce", 0): 60.0, ("ce", 1): 60.0}
    # all but one tune trial scored: still no candidate and no tuned arm on test
    trials = [study.ask() for _ in range(len(first))]
    trials.sort(key=lambda t: t.user_attrs["arm"] == "model.contrast.weight=0.1")  # a candidate's last
    for t in trials[:-1]:
        a = t.user_attrs
        study.tell(t, val[(a["arm"], a["seed"])] if a["phase"] == "tune" else 50.0)
    state = sync(spec, study, retry_failed=False)
    assert state.tuned is None and "tuned" not in study.user_attrs
    assert not [a for a in enqueued(study) if a["phase"] == "compare"]
    assert {p.arm for p in state.waiting_for_choice} == {"paper", "tuned"}
    last = trials[-1]
    study.tell(last, val[(last.user_attrs["arm"], last.user_attrs["seed"])] if last.user_attrs["phase"] == "tune"
               else 50.0)

    state = sync(spec, study, retry_failed=False)
    # the tie (62.0 each) goes to the smaller weight, 0.1, although 1.0 is listed first
    assert state.tuned == {"model.contrast.weight": 0.1}
    assert study.user_attrs["tuned"]["setting"] == {"model.contrast.weight": 0.1}
    later = enqueued(study)
    assert {a["key"] for a in later} == {f"compare/{arm}/seed{s}" for s in (0, 1, 2) for arm in ("paper", "tuned")}
    assert all(a["split"] == "test" and a["setting"] == {"model.contrast.weight": 0.1} for a in later)
    take(study, lambda a: 55.0)
    state = read_state(spec, study)
    assert all(state.state_of(p) == "done" for p in state.plans) and not state.waiting_for_choice


def test_the_best_mean_wins_and_failed_trials_come_back(tmp_path):
    spec, study = make(tmp_path, weights=(0.1, 0.3, 1.0))
    sync(spec, study, retry_failed=True)
    means = {"model.contrast.weight=0.1": 61.0, "model.contrast.weight=0.3": 62.0,
             "model.contrast.weight=1.0": 61.9, "ce": 60.0}
    failed = None
    while any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)):
        trial = study.ask()
        if failed is None and trial.user_attrs["arm"] == "model.contrast.weight=1.0":
            failed = trial.user_attrs["key"]
            study.tell(trial, state=TrialState.FAIL)
            continue
        study.tell(trial, means.get(trial.user_attrs["arm"], 50.0))
    state = sync(spec, study, retry_failed=False)
    assert state.tuned is None  # a candidate's tune trial failed: no choice yet
    assert [p.key for p in state.plans if state.state_of(p) == "failed"] == [failed]
    state = sync(spec, study, retry_failed=True)  # the next `study run` enqueues it again
    assert [a["key"] for a in enqueued(study)] == [failed]
    take(study, lambda a: means.get(a["arm"], 50.0))
    state = sync(spec, study, retry_failed=False)
    assert state.tuned == {"model.contrast.weight": 0.3}


def test_fit_time_counts_each_attempt_once(tmp_path):
    from scalecontrast.study.runner import fit_time

    def write(*records):
        (tmp_path / "fit_attempts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    write({"start": 100.0, "threads": 1}, {"start": 100.0, "end": 160.0, "cpu_seconds": 55.0, "closes": True})
    assert fit_time(tmp_path) == (60.0, 55.0)
    # killed after its start, resumed at 300 and closed at 400: the lost attempt counts until the next start
    write({"start": 100.0, "threads": 1}, {"start": 300.0, "threads": 1},
          {"start": 300.0, "end": 400.0, "cpu_seconds": 90.0, "closes": True})
    assert fit_time(tmp_path) == (300.0, None)
