"""Study specs: which trainings a study runs, checked before anything runs.

A spec is a YAML file (read with ``yaml.safe_load``)::

    name: camvid_fpn_lite0                      # the Optuna study's name
    config: [configs/camvid/fpn_lite0.yaml, configs/contrast/mscs.yaml]   # base recipe first, overlays after
    args: [--data.root, data/camvid]            # extra options for every trial
    runs: runs/studies                          # run folders: RUNS/NAME/SETTING/seedS
    storage: null                               # an Optuna storage; default: sqlite in RUNS/NAME
    tune:                                       # optional: a setting chosen on `split` only
      search: {model.contrast.weight: [0.1, 0.3, 1.0]}
      seeds: [0, 1, 2]
      split: val
    compare:                                    # scored once on `split`, paired by seed with the reference
      arms: {ce: null, paper: {model.contrast.weight: 0.1}, tuned: tune}
      seeds: [0, 1, 2, 3, 4]
      split: test
      reference: ce                             # optional: default, the arm whose value is null

An arm's value is ``null`` (contrast off: ``--model.contrast null``), ``tune`` (the setting chosen in
``tune``) or a mapping of options to values (``{}``: the config as it is). The paired comparisons are
against ``compare.reference``, by default the null arm. Relative paths are taken from the folder the
command runs in, as the command line takes them.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CONTRAST_OFF", "Setting", "SpecError", "StudySpec", "TrialPlan", "load_spec", "parse_spec"]

CONTRAST_OFF: dict[str, Any] = {"model.contrast": None}
TUNED = "tune"
SPLITS = ("train", "val", "test")
TOP_KEYS = ("name", "config", "args", "runs", "storage", "tune", "compare")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
OPTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class SpecError(ValueError):
    """A spec that cannot be run; the message names the file and the key at fault."""


Setting = dict[str, Any]  # option (without the leading --) -> value


def setting_args(setting: Setting) -> list[str]:
    """Command-line options of a setting: ``{"model.contrast.weight": 1.0}`` -> ``--model.contrast.weight 1.0``."""
    args: list[str] = []
    for option, value in setting.items():
        args += [f"--{option}", value if isinstance(value, str) else json.dumps(value)]
    return args


def setting_slug(setting: Setting) -> str:
    """A folder name for a setting (the same setting, the same folder): ``model.contrast.weight=1.0``."""
    if not setting:
        return "base"
    parts = []
    for option, value in setting.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(f"{option}={text}")
    return re.sub(r"[^A-Za-z0-9._=,-]+", "_", ",".join(parts))


def setting_label(setting: Setting) -> str:
    """``model.contrast.weight 1.0`` (``contrast off`` for the null arm, ``the config as is`` for ``{}``)."""
    if setting == CONTRAST_OFF:
        return "contrast off"
    if not setting:
        return "the config as is"
    return ", ".join(f"{k} {v if isinstance(v, str) else json.dumps(v)}" for k, v in setting.items())


@dataclass(frozen=True)
class TrialPlan:
    """One planned trial: a trained setting at one seed, scored on one split."""

    phase: str          # "tune" or "compare"
    arm: str            # a compare arm's name; in tune, the setting's label (or the reference arm's name)
    setting: tuple      # the setting's items, in order (hashable)
    seed: int
    split: str

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.arm}/seed{self.seed}"

    @property
    def options(self) -> Setting:
        return dict(self.setting)


@dataclass
class StudySpec:
    """A checked spec (see the module's docstring)."""

    path: Path
    name: str
    config: list[str]
    args: list[str] = field(default_factory=list)
    runs: Path = Path("runs/studies")
    storage: str | None = None
    tune_search: dict[str, list[Any]] = field(default_factory=dict)
    tune_seeds: list[int] = field(default_factory=list)
    tune_split: str = "val"
    arms: dict[str, Setting | str | None] = field(default_factory=dict)
    reference: str | None = None
    compare_seeds: list[int] = field(default_factory=list)
    compare_split: str = "test"

    @property
    def has_tune(self) -> bool:
        return bool(self.tune_search)

    @property
    def reference_arm(self) -> str:
        """The arm the others are compared with (``compare.reference``, else the null arm)."""
        return self.reference or next(name for name, value in self.arms.items() if value is None)

    @property
    def tune_reference(self) -> str | None:
        """The null arm, trained at the tune seeds beside the candidates for the tuning table (None without)."""
        return next((name for name, value in self.arms.items() if value is None), None)

    @property
    def run_root(self) -> Path:
        return self.runs / self.name

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{(self.run_root / 'study.db').absolute()}"

    def candidates(self) -> list[Setting]:
        """The tune grid's settings, in the listed order (the last option varies fastest)."""
        options = list(self.tune_search)
        return [dict(zip(options, values)) for values in itertools.product(*self.tune_search.values())]

    def arm_setting(self, arm: str, tuned: Setting | None = None) -> Setting | None:
        """The options of a compare arm (``None`` for the tuned arm before the choice)."""
        value = self.arms[arm]
        if value is None:
            return dict(CONTRAST_OFF)
        if value == TUNED:
            return None if tuned is None else dict(tuned)
        return dict(value)

    def tune_trials(self) -> list[TrialPlan]:
        """The tuning trials: every candidate and the reference arm (for the table; it is not a candidate)
        at every tune seed, scored on the tune split."""
        if not self.has_tune:
            return []
        plans = []
        for seed in self.tune_seeds:
            if self.tune_reference is not None:
                plans.append(TrialPlan("tune", self.tune_reference, tuple(CONTRAST_OFF.items()), seed,
                                       self.tune_split))
            for cand in self.candidates():
                plans.append(TrialPlan("tune", setting_slug(cand), tuple(cand.items()), seed, self.tune_split))
        return plans

    def compare_trials(self, tuned: Setting | None) -> list[TrialPlan]:
        """The compare trials known so far: the tuned arm's only once ``tuned`` is given."""
        plans = []
        for seed in self.compare_seeds:
            for arm in self.arms:
                setting = self.arm_setting(arm, tuned)
                if setting is not None:
                    plans.append(TrialPlan("compare", arm, tuple(setting.items()), seed, self.compare_split))
        return plans

    def waits_for_choice(self, plan: TrialPlan) -> bool:
        """A compare trial whose setting is a tune candidate is scored on the compare split only after the
        choice: no candidate sees that split before it."""
        if plan.phase != "compare" or not self.has_tune:
            return False
        return plan.options in self.candidates() or self.arms[plan.arm] == TUNED


def _fail(path: Path, key: str, message: str) -> SpecError:
    return SpecError(f"{path}: {key}: {message}")


def _seeds(path: Path, key: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not value:
        raise _fail(path, key, f"a non-empty list of integer seeds, not {value!r}")
    for seed in value:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise _fail(path, key, f"seeds are integers >= 0, not {seed!r}")
    if len(set(value)) != len(value):
        raise _fail(path, key, f"a seed is listed twice: {value}")
    return list(value)


def _split(path: Path, key: str, value: Any) -> str:
    if value not in SPLITS:
        raise _fail(path, key, f"one of {', '.join(SPLITS)}, not {value!r}")
    return value


def _mapping(path: Path, key: str, value: Any, allowed: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise _fail(path, key, f"a mapping, not {type(value).__name__}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise _fail(path, f"{key}.{unknown[0]}" if key else str(unknown[0]),
                    f"unknown key; the keys of {key or 'a spec'} are {', '.join(allowed)}")
    return value


def _option(path: Path, key: str, option: Any) -> str:
    if not isinstance(option, str) or not OPTION_RE.match(option.removeprefix("--")):
        raise _fail(path, key, f"{option!r} is not an option name such as model.contrast.weight")
    return option.removeprefix("--")


def parse_spec(data: Any, path: str | Path = "<spec>") -> StudySpec:
    """Check a spec's content (already read from YAML) and return it; :class:`SpecError` names the key."""
    path = Path(path)
    data = _mapping(path, "", data, TOP_KEYS)
    for key in ("name", "config", "compare"):
        if key not in data:
            raise _fail(path, key, "missing (a spec needs name, config and compare)")
    name = data["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _fail(path, "name", f"letters, digits, '.', '_' and '-' (it names a folder), not {name!r}")
    config = data["config"]
    if isinstance(config, str):
        config = [config]
    if not isinstance(config, list) or not config or not all(isinstance(c, str) for c in config):
        raise _fail(path, "config", f"a list of config files, base recipe first, not {config!r}")
    for c in config:
        if not Path(c).is_file():
            raise _fail(path, "config", f"no such file: {c} (relative paths are taken from {Path.cwd()})")
    args = data.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str | int | float) and not isinstance(a, bool)
                                             for a in args):
        raise _fail(path, "args", f"a list of command-line words, e.g. [--data.root, data/camvid], not {args!r}")
    args = [str(a) for a in args]
    for reserved in ("--seed_everything", "--trainer.default_root_dir", "--ckpt_path", "--config"):
        if any(a == reserved or a.startswith(reserved + "=") for a in args):
            raise _fail(path, "args", f"{reserved} is set by the study for each trial")
    runs = data.get("runs", "runs/studies")
    if not isinstance(runs, str) or not runs:
        raise _fail(path, "runs", f"a folder, not {runs!r}")
    storage = data.get("storage")
    if storage is not None and (not isinstance(storage, str) or not storage):
        raise _fail(path, "storage", f"an Optuna storage URL or a journal file path, not {storage!r}")

    spec = StudySpec(path=path, name=name, config=list(config), args=args, runs=Path(runs), storage=storage)

    tune = data.get("tune")
    if tune is not None:
        tune = _mapping(path, "tune", tune, ("search", "seeds", "split"))
        search = _mapping(path, "tune.search", tune.get("search"), tuple(tune.get("search") or ())) \
            if "search" in tune else None
        if not search:
            raise _fail(path, "tune.search", "a mapping of options to lists of values, "
                        "e.g. {model.contrast.weight: [0.1, 0.3, 1.0]}")
        for option, values in search.items():
            opt = _option(path, "tune.search", option)
            if not isinstance(values, list) or not values:
                raise _fail(path, f"tune.search.{opt}", f"a non-empty list of values, not {values!r}")
            if len({json.dumps(v) for v in values}) != len(values):
                raise _fail(path, f"tune.search.{opt}", f"a value is listed twice: {values}")
            spec.tune_search[opt] = list(values)
        if "seeds" not in tune:
            raise _fail(path, "tune.seeds", "missing")
        spec.tune_seeds = _seeds(path, "tune.seeds", tune["seeds"])
        spec.tune_split = _split(path, "tune.split", tune.get("split", "val"))

    compare = _mapping(path, "compare", data["compare"], ("arms", "seeds", "split", "reference"))
    arms = compare.get("arms")
    if not isinstance(arms, dict) or not arms:
        raise _fail(path, "compare.arms", "a mapping of arm names to null (contrast off), tune, or options")
    for arm, value in arms.items():
        key = f"compare.arms.{arm}"
        if not isinstance(arm, str) or not NAME_RE.match(arm):
            raise _fail(path, key, "arm names are letters, digits, '.', '_' and '-'")
        if value is None:
            spec.arms[arm] = None
        elif value == TUNED:
            if tune is None:
                raise _fail(path, key, "`tune` needs a tune section (the setting is chosen there)")
            spec.arms[arm] = TUNED
        elif isinstance(value, dict):
            spec.arms[arm] = {_option(path, key, k): v for k, v in value.items()}
        else:
            raise _fail(path, key, f"null (contrast off), tune, or a mapping of options to values, not {value!r}")
    nulls = [a for a, v in arms.items() if v is None]
    if len(nulls) > 1:
        raise _fail(path, "compare.arms", f"at most one arm with value null (contrast off); found {len(nulls)}")
    reference = compare.get("reference")
    if reference is None and not nulls:
        raise _fail(path, "compare.reference", "missing: without an arm whose value is null (contrast off), name "
                    "the arm the others are compared with")
    if reference is not None and reference not in arms:
        raise _fail(path, "compare.reference", f"{reference!r} is not an arm ({', '.join(map(str, arms))})")
    if reference is not None and arms[reference] == TUNED:
        raise _fail(path, "compare.reference", "the reference cannot be the tuned arm")
    spec.reference = reference
    settings = [json.dumps(spec.arm_setting(a), sort_keys=True) for a in arms if arms[a] != TUNED]
    if len(set(settings)) != len(settings):
        raise _fail(path, "compare.arms", "two arms have the same setting")
    if "seeds" not in compare:
        raise _fail(path, "compare.seeds", "missing")
    spec.compare_seeds = _seeds(path, "compare.seeds", compare["seeds"])
    spec.compare_split = _split(path, "compare.split", compare.get("split", "test"))
    if tune is not None and spec.tune_split == spec.compare_split:
        raise _fail(path, "tune.split", f"the same split as compare.split ({spec.compare_split}): the setting "
                    "would be chosen on the data it is scored on")
    return spec


def load_spec(path: str | Path) -> StudySpec:
    """Read and check a spec file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    return parse_spec(data, path)
