"""`scalecontrast study run|status|report` end to end on the built-in synthetic data (a few steps per
trial): two concurrent workers share the trials, each trained once; a worker killed with SIGKILL mid-trial
is taken up by the next `study run`, which resumes the trial from its last checkpoint to the result of an
uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from scalecontrast.study import load_spec, open_study
from scalecontrast.study.runner import read_state

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data.crop_size", "[48, 48]", "--data.batch_size", "2", "--data.dataset_kwargs.size", "64",
        "--data.train_kwargs.length", "64", "--data.eval_kwargs.length", "4", "--trainer.limit_val_batches", "0",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--model.pretrained", "false",
        "--checkpoint.every_n_train_steps", "2"]


def write_spec(tmp_path: Path, name: str, steps: int, **sections) -> Path:
    data = {"name": name, "config": ["configs/synthetic/fpn_lite0.yaml", "configs/contrast/mscs.yaml",
                                     "configs/contrast/cpu_sampling.yaml"],
            "args": ["--trainer.max_steps", str(steps), *TINY], "runs": str(tmp_path / "runs"), **sections}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def study_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "scalecontrast.cli", "study", *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def complete_trials(spec_path: Path) -> dict[str, object]:
    spec = load_spec(spec_path)
    study = open_study(spec, heartbeat=None, create=False)
    return {t.user_attrs["key"]: t for t in study.get_trials(states=(TrialState.COMPLETE,))}


@pytest.mark.slow
def test_two_workers_share_the_trials_each_trained_once(tmp_path):
    spec_path = write_spec(tmp_path, "two", 3,
                           tune={"search": {"model.contrast.weight": [0.1, 1.0]}, "seeds": [0]},
                           compare={"arms": {"ce": None, "tuned": "tune"}, "seeds": [0, 1]})
    logs = [open(tmp_path / f"w{i}.log", "w") for i in range(2)]
    procs = [subprocess.Popen(study_cmd("run", str(spec_path), "--heartbeat", "2"), cwd=ROOT, env=env(),
                              stdout=log, stderr=subprocess.STDOUT) for log in logs]
    for p in procs:
        assert p.wait(timeout=600) == 0, (tmp_path / "w0.log").read_text()[-3000:] + \
            (tmp_path / "w1.log").read_text()[-3000:]
    spec = load_spec(spec_path)
    study = open_study(spec, heartbeat=None, create=False)
    trials = study.get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = [t.user_attrs["key"] for t in done]
    # 3 tune trials (ce reference, two weights) and 4 compare trials, each complete once
    assert sorted(keys) == sorted(["tune/ce/seed0", "tune/model.contrast.weight=0.1/seed0",
                                   "tune/model.contrast.weight=1.0/seed0", "compare/ce/seed0", "compare/ce/seed1",
                                   "compare/tuned/seed0", "compare/tuned/seed1"])
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # every model trained once: one fit attempt that trained per run folder (a compare trial whose model
    # a tune trial trained found it finished)
    folders = {t.user_attrs["run_dir"] for t in done}
    assert len(folders) == 5  # ce seed 0 and 1, w 0.1 and 1.0 seed 0, tuned seed 1
    for folder in folders:
        attempts = [json.loads(x) for x in (Path(folder) / "fit_attempts.jsonl").read_text().splitlines()]
        starts = [a for a in attempts if "threads" in a]
        assert [a["resumed_from_step"] for a in starts][0] is None
        assert all(a["resumed_from_step"] == 3 for a in starts[1:])  # later ones found it trained
    trained = [t for t in done if t.user_attrs["trained_here"]]
    assert len(trained) == 5
    # the two workers shared the work
    assert len({t.user_attrs["worker"] for t in trained}) == 2
    # the protocol: the tuned arm's trials started after the last tune trial was scored
    last_tune = max(t.datetime_complete for t in done if t.user_attrs["phase"] == "tune")
    assert all(t.datetime_start > last_tune for t in done if t.user_attrs["arm"] == "tuned")
    tuned = study.user_attrs["tuned"]["setting"]
    vals = {w: next(t.value for t in done if t.user_attrs["key"] == f"tune/model.contrast.weight={w}/seed0")
            for w in ("0.1", "1.0")}
    best = "0.1" if vals["0.1"] >= vals["1.0"] else "1.0"
    assert tuned == {"model.contrast.weight": float(best)}
    # provenance
    a = done[0].user_attrs
    assert set(a) >= {"metric", "per_class", "fit_seconds", "fit_cpu_seconds", "threads", "commit", "config_hash"}
    assert a["threads"] == [1] and len(a["per_class"]) == 5 and a["metric"] == done[0].value

    status = subprocess.run(study_cmd("status", str(spec_path)), cwd=ROOT, env=env(), capture_output=True,
                            text=True, check=True).stdout
    assert "tune: 3/3 done, 0 running, 0 failed, 0 left" in status
    assert "compare: 4/4 done, 0 running, 0 failed, 0 left" in status
    out = tmp_path / "report"
    subprocess.run(study_cmd("report", str(spec_path), "--output", str(out)), cwd=ROOT, env=env(), check=True,
                   capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == ["per_class_gains.png", "results.md"]
    text = (out / "results.md").read_text()
    assert "(chosen)" in text and "| tuned |" in text and "p (paired t)" in text


def step_files(folder: Path) -> list[int]:
    return [int(p.stem.removeprefix("step")) for p in (folder / "checkpoints").glob("step*.ckpt")]


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_killed_worker_is_resumed_to_the_uninterrupted_result(tmp_path, storage):
    steps = 10
    arms = {"arms": {"ce": None}, "seeds": [0]}
    (tmp_path / "plain").mkdir()
    plain = write_spec(tmp_path / "plain", "plain", steps, compare=arms)
    subprocess.run(study_cmd("run", str(plain)), cwd=ROOT, env=env(), check=True, capture_output=True)
    reference = complete_trials(plain)["compare/ce/seed0"]

    (tmp_path / "killed").mkdir()
    where = {} if storage == "sqlite" else {"storage": str(tmp_path / "killed" / "study.journal")}
    spec_path = write_spec(tmp_path / "killed", "killed", steps, compare=arms, **where)
    folder = tmp_path / "killed" / "runs" / "killed" / "model.contrast=null" / "seed0"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(study_cmd("run", str(spec_path), "--heartbeat", "1"), cwd=ROOT, env=env(),
                                 stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not any(s >= 4 for s in step_files(folder)) if folder.exists() else True:
            assert first.poll() is None and time.time() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait()
    spec = load_spec(spec_path)
    state = read_state(spec, open_study(spec, heartbeat=None, create=False))
    assert [state.state_of(p) for p in state.plans] == ["running"]  # left running by the dead worker

    second = subprocess.run(study_cmd("run", str(spec_path), "--heartbeat", "1"), cwd=ROOT, env=env(),
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    resumed = complete_trials(spec_path)["compare/ce/seed0"]
    attempts = [json.loads(x) for x in (folder / "fit_attempts.jsonl").read_text().splitlines()]
    starts = [a for a in attempts if "threads" in a]
    assert len(starts) == 2 and starts[0]["resumed_from_step"] is None
    assert 4 <= starts[1]["resumed_from_step"] < steps  # resumed, not restarted
    assert resumed.user_attrs["steps"] == steps
    assert resumed.value == reference.value
    assert resumed.user_attrs["per_class"] == reference.user_attrs["per_class"]
    assert resumed.user_attrs["config_hash"] == reference.user_attrs["config_hash"]


def test_workers_starting_together_on_a_fresh_sqlite_storage(tmp_path):
    """Workers started at once all open a new SQLite storage (the first creates its tables; the others
    meet half-made tables and try again)."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    code = ("import sys; from scalecontrast.study.runner import open_storage; "
            "open_storage(sys.argv[1], heartbeat=None)")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], env=env(), stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-500:] for e in errors)
