"""The ``scalecontrast`` command line.

Training and evaluation follow Lightning's CLI (``fit``, ``validate``, ``test``, ``predict``
with ``--config``, ``--model.*``, ``--data.*``, ``--trainer.*``, ``--ckpt_path``); the other
commands work from a checkpoint alone. ``segment``, ``export``, ``validate`` and ``test`` also take an exported
model folder (``export --format hf``: config.json + model.safetensors) as ``--ckpt_path``:

    scalecontrast fit      --config configs/camvid/fpn_lite0.yaml [--config configs/contrast/mscs.yaml]
                           [--data.root DIR] [--trainer.max_steps N] [--ckpt_path last]
    scalecontrast validate|test --config CFG --ckpt_path CKPT [--data.root DIR]
    scalecontrast segment  --ckpt_path CKPT --input IMAGE_OR_DIR --output DIR [--tta]
    scalecontrast export   --ckpt_path CKPT --output model.onnx
    scalecontrast export   --ckpt_path CKPT --format hf --output DIR [--push_to_hub REPO_ID]
    scalecontrast embed    --config CFG --ckpt_path CKPT --output tsne.png
    scalecontrast data camvid --root DIR [--source PATH]
    scalecontrast study run|status|report SPEC.yaml ...
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from scalecontrast.engine.callbacks import (
    AtomicCheckpointIO,
    ExactResume,
    FinalCheckpoint,
    NonFiniteCheckpointError,
    NonFiniteGuard,
    RunFolderGuard,
    RunFolderLockedError,
    RunFolderUsedError,
    TrainingDivergedError,
    ValidationImages,
    ZeroTermWatch,
)
from scalecontrast.engine.checkpoint import CheckpointError, read_checkpoint
from scalecontrast.engine.hub import is_pretrained_folder, load_pretrained_weights, pretrained_settings
from scalecontrast.engine.preemption import PreemptionCheckpoint

__all__ = ["SegmentationCLI", "compare_settings", "main", "run_lightning"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
EXTRA_COMMANDS = ("segment", "export", "embed", "data", "study")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

USAGE = """usage: scalecontrast COMMAND [options]

Semantic segmentation with multi-scale and cross-scale contrastive learning.

training and evaluation (Lightning CLI; see `scalecontrast fit --help`):
  fit        train:   --config CFG [--data.root DIR] [--trainer.max_steps N] [--ckpt_path last] [--overwrite true]
  validate   evaluate on the validation split: --config CFG --ckpt_path CKPT (or `none`: untrained)
  test       evaluate on the test split:       --config CFG --ckpt_path CKPT (or `none`: untrained)
  predict    Lightning's predict loop

from a checkpoint (CKPT: a file written by `fit`; segment, export, validate and test also take an exported folder):
  segment    colour masks and overlays:  --ckpt_path CKPT --input IMAGE_OR_DIR --output DIR [--tta]
  export     ONNX inference graph:       --ckpt_path CKPT --output model.onnx
             Hugging Face-style folder:  --ckpt_path CKPT --format hf --output DIR [--push_to_hub REPO_ID]
  embed      t-SNE of embeddings:        --config CFG --ckpt_path CKPT --output tsne.png

data:
  data camvid --root DIR [--source PATH]   download (or copy from PATH) and verify CamVid
  data synthetic --root DIR [--num N]      write built-in synthetic scenes as image/mask files

studies (tune on val, compare with CE on test, paired by seed; Optuna storage, many workers):
  study run SPEC.yaml [--storage URL] [--workers N]   run the trials that are left
  study status SPEC.yaml                              done / running / failed / left, time left
  study report SPEC.yaml --output DIR                 DIR/results.md + figures

Run `scalecontrast COMMAND --help` for the options of a command.
"""


EVAL_COMMANDS = ("validate", "test", "predict")
SPECIAL_CKPT = ("last", "best", "hpc")
UNTRAINED = "none"
TRUST_HELP = ("Load a checkpoint that holds pickled Python objects or names classes outside the trusted packages "
              "(scalecontrast, torch, torchvision, timm, segmentation_models_pytorch, transformers). Loading such a "
              "file runs code chosen by its author: only for files from a source you trust (default: refuse).")
SIGTERM_EXIT_CODE = 143  # 128 + SIGTERM, as a shell reports a process ended by it
DEBUG_ENV = "SCALECONTRAST_DEBUG"
OVERWRITE_HELP = ("Train into a run folder that already holds checkpoints of another run: last.ckpt and step "
                  "checkpoints of the same name are replaced (default: refuse; resume with --ckpt_path last).")


# Settings of a run that cannot change on resume: they fix the shapes of the weights (or of the optimiser's
# state). Each is a key of the module's hyper-parameters; contrast on/off and the head's shapes are checked apart.
ARCHITECTURE_KEYS = ("model", "taps", "head", "backbone", "num_classes", "model_kwargs")
CONTRAST_SHAPE_KEYS = ("embed_dim", "memory_size")


def _plain(value: Any) -> Any:
    """A parsed config value as plain dicts/lists (jsonargparse namespaces included)."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():  # class_path + init_args: shown as typed, --model.optimizer.lr
            out.update(_flat(v, prefix if k == "init_args" else f"{prefix}.{k}"))
        return out
    return {prefix: value}


def _optimizer_kind(options: Any) -> Any:
    if isinstance(options, Mapping):
        return options.get("class_path", options.get("name"))
    return options


def compare_settings(stored: Mapping[str, Any], current: Mapping[str, Any], *, resume: bool) -> tuple[
        list[str], list[str]]:
    """``(conflicts, changes)`` between a checkpoint's stored settings and the ones given now, both as
    ``{"model": {...}, "data": {...}, "seed": ...}``. A conflict changes the weights' shapes (or, when
    resuming, the optimiser's state) and cannot be applied; a change is shown as a warning."""
    conflicts: list[str] = []
    changes: list[str] = []
    s_model, c_model = stored.get("model") or {}, current.get("model") or {}
    for key in ARCHITECTURE_KEYS:
        if key in s_model and key in c_model and key != "num_classes" and s_model[key] != c_model[key]:
            conflicts.append(f"--model.{key} {c_model[key]!r} (the checkpoint's: {s_model[key]!r})")
    if s_model.get("num_classes") is not None and c_model.get("num_classes") is not None \
            and s_model["num_classes"] != c_model["num_classes"]:
        conflicts.append(f"--model.num_classes {c_model['num_classes']} (the checkpoint's: {s_model['num_classes']})")
    s_con, c_con = s_model.get("contrast"), c_model.get("contrast")
    if "contrast" in s_model and "contrast" in c_model and (s_con is None) != (c_con is None):
        shown = "null (contrast off)" if c_con is None else "on"
        conflicts.append(f"--model.contrast {shown} (the checkpoint's: {'null' if s_con is None else 'on'}: "
                         "its contrastive head's weights are there or not)")
    elif isinstance(s_con, Mapping) and isinstance(c_con, Mapping):
        for key in CONTRAST_SHAPE_KEYS:
            if key in s_con and key in c_con and s_con[key] != c_con[key]:
                conflicts.append(f"--model.contrast.{key} {c_con[key]!r} (the checkpoint's: {s_con[key]!r})")
    if resume and "optimizer" in s_model and "optimizer" in c_model:
        old, new = _optimizer_kind(s_model["optimizer"]), _optimizer_kind(c_model["optimizer"])
        if old != new:
            conflicts.append(f"the optimiser {new!r} (the checkpoint's: {old!r}: its state cannot be carried over)")
    if resume:
        flat_s = {**_flat(s_model, "model"), **_flat(stored.get("data") or {}, "data")}
        flat_c = {**_flat(c_model, "model"), **_flat(current.get("data") or {}, "data")}
        skip = ("model.class_names", "model.palette", "model.class_groups", "model.pretrained", "model.init_weights",
                "model.mean", "model.std",
                "data.root", "data.num_workers", "data.check")
        for key in sorted(set(flat_s) & set(flat_c)):
            if key.startswith(skip) or key.split(".")[1] in ARCHITECTURE_KEYS:
                continue
            if flat_s[key] != flat_c[key] and not any(key in c for c in conflicts):
                changes.append(f"{key}: {flat_s[key]!r} -> {flat_c[key]!r}")
        if stored.get("seed") is not None and current.get("seed") is not None and stored["seed"] != current["seed"]:
            changes.append(f"seed_everything: {stored['seed']!r} -> {current['seed']!r}")
    return conflicts, changes


class RunSettings(Callback):
    """Keeps the run's seed in its checkpoints (``callbacks`` state) so a resume can say when it changed."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass  # the seed given now is the one in force; the stored one was compared before the run


def _num_classes(data: Any) -> int:
    return int(data.num_classes)


def _stored_settings(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    model = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not str(k).startswith("_")}
    data = {k: v for k, v in (ckpt.get("datamodule_hyper_parameters") or {}).items() if not str(k).startswith("_")}
    seed = ((ckpt.get("callbacks") or {}).get("RunSettings") or {}).get("seed")
    return {"model": model, "data": data, "seed": seed}


class SegmentationCLI(LightningCLI):
    """Lightning's CLI over :class:`SegmentationModule` and :class:`SegmentationDataModule`, with:

    - an always-on checkpoint callback (``--checkpoint.*``) writing ``<default_root_dir>/checkpoints/last.ckpt``
      so ``fit --ckpt_path last`` resumes exactly (RNG states and the loader's position are in the checkpoint);
      atomic, finite-only checkpoint writes; a locked run folder; a checkpoint written when SIGTERM stops ``fit``;
    - checkpoints read without running code (``--trust_checkpoint true`` to allow a file that needs it);
    - a checkpoint's stored settings as defaults under the options given: the command line and config files win,
      except for settings that fix the weights' shapes, which are refused when they differ;
    - changed settings shown when a run resumes.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.save_last": True,
            "checkpoint.every_n_train_steps": 100,
            "checkpoint.filename": "step{step:07d}",
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.save_top_k": 1,
            # last.ckpt is always this run's (a used folder is refused unless resuming or --overwrite)
            "checkpoint.enable_version_counter": False,
            # the module's own defaults, by class path so that --model.optimizer.lr ... apply to them
            "model.optimizer": {"class_path": "torch.optim.SGD",
                                "init_args": {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}},
            "model.lr_scheduler": {"class_path": "scalecontrast.engine.optim.WarmupPolyLR",
                                   "init_args": {"power": 0.9}},
        })
        parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")
        parser.add_lightning_class_args(ValidationImages, "val_images")
        # K is the data's: a model built from head + backbone is sized by it, a given model is checked against it
        parser.link_arguments("data", "model.num_classes", compute_fn=_num_classes, apply_on="instantiate")
        parser.add_argument("--overwrite", type=bool, default=False, help=OVERWRITE_HELP)
        parser.add_argument("--trust_checkpoint", type=bool, default=False, help=TRUST_HELP)

    # ---- parsing: checked checkpoint paths, stored settings under the given ones
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        self.ckpt_file: str | None = None
        self.pretrained_dir: str | None = None
        self.stored_settings: dict[str, Any] | None = None
        self.weights_only = True
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        trust = bool(cfg.get("trust_checkpoint"))
        if sub != "fit" and cfg.get("overwrite"):
            raise SystemExit(f"scalecontrast {sub}: --overwrite is an option of `fit` (it writes no checkpoints)")
        if cfg.get("weights_only") is False and not trust:
            raise SystemExit(f"scalecontrast {sub}: --weights_only false loads a checkpoint with the full "
                             "unpickler, which runs code the file names; add --trust_checkpoint true if you "
                             "trust the file's author")
        self.weights_only = not trust  # Lightning's own reading of the checkpoint (the run's weights)
        ckpt = cfg.get("ckpt_path")
        if sub in EVAL_COMMANDS:
            if ckpt is None:
                raise SystemExit(
                    f"scalecontrast {sub}: --ckpt_path is required: the checkpoint to score, e.g. "
                    "--ckpt_path RUN/checkpoints/last.ckpt (written by `fit`). Without it the model would "
                    f"be scored as initialised; to do that on purpose, pass --ckpt_path {UNTRAINED}")
            if str(ckpt).lower() == UNTRAINED:
                cfg["ckpt_path"] = ckpt = None
                print(f"scalecontrast {sub}: --ckpt_path {UNTRAINED}: scoring the model as initialised "
                      "(not trained)", file=sys.stderr)
        if not ckpt or str(ckpt) in SPECIAL_CKPT or str(ckpt).startswith("registry"):
            return
        if sub in EVAL_COMMANDS and is_pretrained_folder(ckpt):
            self.use_pretrained_folder(parser, args, sub, str(ckpt), trust)
            return
        try:
            stored = read_checkpoint(ckpt, trust=trust, resume=sub == "fit")
        except CheckpointError as err:
            raise SystemExit(f"scalecontrast {sub}: {err}") from None
        settings = _stored_settings(stored)
        self.config = self.parse_with_stored(parser, args, sub, settings)
        self.check_settings(settings, str(ckpt), resume=sub == "fit")
        # Lightning would read the file's settings over the parsed ones: it gets the path back before the run
        self.ckpt_file = str(ckpt)
        self.stored_settings = settings
        self.config[sub]["ckpt_path"] = None

    def use_pretrained_folder(self, parser: LightningArgumentParser, args: Any, sub: str, folder: str,
                              trust: bool) -> None:
        """Evaluate an exported folder: its config.json gives the model's settings and the training data's as
        defaults (the options given win); its weights are loaded into the module before the run."""
        try:
            settings = pretrained_settings(folder, trust=trust)
        except CheckpointError as err:
            raise SystemExit(f"scalecontrast {sub}: {err}") from None
        self.config = self.parse_with_stored(parser, args, sub, settings)
        self.check_settings(settings, folder, resume=False)
        self.pretrained_dir = folder
        self.stored_settings = settings
        self.config[sub]["ckpt_path"] = None

    @staticmethod
    def parse_with_stored(parser: LightningArgumentParser, args: Any, sub: str, settings: Mapping[str, Any]):
        """Parse ``args`` again with the checkpoint's settings as the first config file of ``sub``: the
        options and config files given on the command line come after it and win."""
        import tempfile

        import yaml

        argv = list(sys.argv[1:] if args is None else args)
        at = argv.index(sub) + 1
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="stored-settings-", delete=False) as f:
            model = {k: v for k, v in settings["model"].items() if k != "num_classes"}  # linked from the data
            yaml.safe_dump({"model": model, "data": settings["data"]}, f, sort_keys=False)
        try:
            return parser.parse_args([*argv[:at], "--config", f.name, *argv[at:]])
        finally:
            os.unlink(f.name)

    def current_settings(self) -> dict[str, Any]:
        cfg = self.config[self.config["subcommand"]]
        return {"model": _plain(cfg.get("model")), "data": _plain(cfg.get("data")),
                "seed": cfg.get("seed_everything")}

    def check_settings(self, stored: Mapping[str, Any], ckpt: str, *, resume: bool) -> None:
        """Refuse settings that conflict with the checkpoint's architecture; show the ones that changed."""
        sub = self.config["subcommand"]
        conflicts, changes = compare_settings(stored, self.current_settings(), resume=resume)
        if conflicts:
            raise SystemExit(f"scalecontrast {sub}: {'; '.join(conflicts)} conflicts with the checkpoint {ckpt}: "
                             "it changes the shapes of the stored weights" + ("" if not resume else
                             " or of the optimiser's state; train a new run instead (another "
                             "--trainer.default_root_dir)"))
        if changes and rank_zero_only.rank == 0:
            print(f"scalecontrast {sub}: resuming {ckpt} with settings changed since it was written: "
                  + "; ".join(changes), file=sys.stderr, flush=True)

    def before_instantiate_classes(self) -> None:
        sub = self.subcommand
        cfg = self.config[sub] if sub else self.config
        if sub and self.ckpt_file:
            cfg["ckpt_path"] = self.ckpt_file
        if sub and "weights_only" in cfg:
            cfg["weights_only"] = self.weights_only
        model_cfg = cfg.get("model")
        # Evaluating a checkpoint: never fetch backbone weights that are overwritten anyway.
        evaluated = cfg.get("ckpt_path") is not None or self.pretrained_dir is not None
        if sub and sub != "fit" and model_cfg is not None and evaluated:
            model_cfg["pretrained"] = False
            model_cfg["init_weights"] = None

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        sub = self.subcommand
        seed = self.config[sub].get("seed_everything") if sub else None
        extra = [ExactResume(), FinalCheckpoint(), PreemptionCheckpoint(), RunSettings(seed), ZeroTermWatch()]
        if sub == "fit":
            cfg = self.config[sub]
            extra.append(RunFolderGuard(overwrite=bool(cfg.get("overwrite")),
                                        resuming=cfg.get("ckpt_path") is not None))
        for cb in extra:
            if not any(isinstance(have, type(cb)) for have in trainer.callbacks):
                trainer.callbacks.insert(0, cb)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    # ---- fit: a locked, unused (or resumed) folder; clear errors; the checkpoint written last
    def checkpoint_dirs(self) -> list[Path]:
        return RunFolderGuard.folders(self.trainer)

    def check_resumed(self, ckpt_path: str | None) -> None:
        """``--ckpt_path last``: the newest last checkpoint, read safely, its settings against the given ones."""
        if ckpt_path == "last":
            found = [p for d in self.checkpoint_dirs() for p in d.glob("last*.ckpt")]
            if found:
                newest = max(found, key=os.path.getmtime)
                trust = bool(self.config[self.subcommand].get("trust_checkpoint"))
                try:
                    stored = read_checkpoint(newest, trust=trust, resume=True)
                except CheckpointError as err:
                    others = sorted(str(p) for d in self.checkpoint_dirs() for p in d.glob("*.ckpt")
                                    if str(p) != str(newest))
                    alt = f"; other checkpoints there: {', '.join(others[:4])} (--ckpt_path FILE)" if others else ""
                    raise SystemExit(f"scalecontrast fit --ckpt_path last: {err}{alt}") from None
                self.check_settings(_stored_settings(stored), str(newest), resume=True)

    def last_written(self) -> str | None:
        for cb in self.trainer.checkpoint_callbacks:
            path = getattr(cb, "last_model_path", "")
            if path and os.path.isfile(path):
                return str(path)
        found = [p for d in self.checkpoint_dirs() for p in d.glob("last*.ckpt")]
        return str(max(found, key=os.path.getmtime)) if found else None

    @staticmethod
    def step_of(path: str) -> int | None:
        try:
            return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
        except Exception:  # noqa: BLE001 - only for the message
            return None

    def fit(self, model, **kwargs) -> None:
        ckpt_path = kwargs.get("ckpt_path")
        if rank_zero_only.rank == 0:
            self.check_resumed(ckpt_path)
        try:
            self.trainer.fit(model, **kwargs)
        except (RunFolderLockedError, RunFolderUsedError) as err:
            raise SystemExit(f"scalecontrast fit: {err}") from None
        except (TrainingDivergedError, NonFiniteCheckpointError) as err:
            last = self.last_written()
            step = self.step_of(last) if last else None
            kept = (f"The last checkpoint written (finite weights) is {last}"
                    + (f" (step {step})" if step is not None else "") if last else "No checkpoint was written")
            raise SystemExit(f"scalecontrast fit: {err}. {kept}.") from None
        except SIGTERMException:
            last = self.last_written()
            total = self.trainer.max_steps if self.trainer.max_steps and self.trainer.max_steps > 0 else None
            of = f" of {total}" if total else ""
            where = f" (checkpoint {last})" if last else ""
            if self.trainer.is_global_zero:
                print(f"scalecontrast fit: stopped by SIGTERM at step {self.trainer.global_step}{of}{where}; "
                      "resume with --ckpt_path last", file=sys.stderr, flush=True)
            raise SystemExit(SIGTERM_EXIT_CODE) from None
        last = self.last_written()
        if last and self.trainer.is_global_zero:
            step = self.step_of(last)  # the checkpoint's own step (the trainer's may be past it)
            print(f"scalecontrast fit: checkpoint written last: {last} (step {step})", flush=True)

    def evaluate(self, stage: str, model, **kwargs):
        if self.pretrained_dir is not None:
            load_pretrained_weights(model, self.pretrained_dir)  # safetensors only; the model's own weights
        if self.trainer.is_global_zero:
            ev = getattr(model, "eval_options", None)
            if ev is not None:
                window = (f"sliding window {list(ev.crop_size)} stride {list(ev.stride or ev.crop_size)}"
                          if ev.crop_size else "whole image")
                print(f"scalecontrast {stage}: evaluation: scales {list(ev.scales)}, flip {bool(ev.flip)}, {window}",
                      flush=True)
        return getattr(self.trainer, stage)(model, **kwargs)

    def validate(self, model, **kwargs):
        return self.evaluate("validate", model, **kwargs)

    def test(self, model, **kwargs):
        return self.evaluate("test", model, **kwargs)


def run_lightning(args: Sequence[str] | None, *, run: bool = True) -> SegmentationCLI:
    """``SegmentationCLI`` over :class:`SegmentationModule` and :class:`SegmentationDataModule`
    (``args=None``: ``sys.argv[1:]``)."""
    from scalecontrast.engine import SegmentationDataModule, SegmentationModule

    saved = sys.argv
    if args is not None:  # parse as if typed (Lightning's DDP launcher also re-runs sys.argv)
        sys.argv = [saved[0] if saved else "scalecontrast", *args]
    try:
        return SegmentationCLI(
            SegmentationModule,
            SegmentationDataModule,
            run=run,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
        )
    finally:
        sys.argv = saved


# ------------------------------------------------------------------------------------------------
# commands working from a checkpoint
def _parser(prog: str, description: str, *, checkpoint: bool = True):
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog=f"scalecontrast {prog}", description=description, exit_on_error=True)
    p.add_argument("--options", action=ActionConfigFile, help="a YAML file with this command's options")
    if checkpoint:
        p.add_argument("--trust_checkpoint", type=bool, default=False, help=TRUST_HELP)
    return p


def _list_images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if files:
            return files
        raise SystemExit(f"scalecontrast segment: no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    raise SystemExit(f"scalecontrast segment: input not found: {path}")


def cmd_segment(argv: Sequence[str]) -> int:
    p = _parser("segment", "Colour masks and overlays (with a legend) for an image or a folder.")
    p.add_argument("--ckpt_path", type=str, required=True,
                   help="checkpoint written by `fit`, or an exported model folder (export --format hf) or Hub repo id")
    p.add_argument("--input", type=str, required=True, help="an image or a folder of images")
    p.add_argument("--output", type=str, required=True, help="output folder")
    p.add_argument("--tta", type=bool, default=False, help="multi-scale + flip test-time augmentation")
    p.add_argument("--scales", type=list[float] | None, default=None,
                   help="TTA scales (default: the checkpoint's eval_scales, or 0.75,1,1.25)")
    p.add_argument("--crop_size", type=list[int] | None, default=None, help="sliding-window crop (h, w)")
    p.add_argument("--stride", type=list[int] | None, default=None, help="sliding-window stride (h, w)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    p.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, mps ...")
    p.add_argument("--limit", type=int | None, default=None, help="only the first N images of a folder")
    a = p.parse_args(list(argv))

    from scalecontrast.engine import load_for_inference, read_image
    from scalecontrast.viz import save_mask_and_overlay

    module = load_for_inference(a.ckpt_path, map_location=a.device, trust=a.trust_checkpoint)
    files = _list_images(Path(a.input))[: a.limit]
    scales, flip = [1.0], False
    if a.tta:
        configured = [float(s) for s in module.eval_options.scales]
        scales = a.scales or (configured if len(configured) > 1 else [0.75, 1.0, 1.25])
        flip = True
    elif a.scales:
        scales = a.scales
    out_dir = Path(a.output)
    names, palette = module.class_names, module.palette
    root = Path(a.input) if Path(a.input).is_dir() else None
    failed: list[str] = []
    for path in files:
        try:
            rgb = read_image(path)  # any bit depth, upright as a viewer shows it (EXIF orientation)
        except ValueError as err:  # the data layer's DataError: undecodable, truncated
            failed.append(str(path))
            print(f"scalecontrast segment: {err}; skipped", file=sys.stderr, flush=True)
            continue
        image = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)[None].to(a.device)
        probs = module.predict_probs(image, scales=scales, flip=flip, crop_size=a.crop_size, stride=a.stride)
        pred = probs.argmax(1)[0].to(torch.uint8).cpu().numpy()
        stem = path.stem
        if root is not None:  # keep sub-folder names so files in different folders don't collide
            stem = str(path.relative_to(root).with_suffix("")).replace(os.sep, "__")
        save_mask_and_overlay(out_dir, stem, rgb, pred, names, palette, alpha=a.alpha)
        print(f"{path} -> {out_dir / (stem + '_overlay.png')}")
    print(f"segmented {len(files) - len(failed)} of {len(files)} image(s) into {out_dir}")
    if failed:
        shown = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        print(f"scalecontrast segment: {len(failed)} of {len(files)} image(s) could not be read: {shown}",
              file=sys.stderr)
        return 1
    return 0


def cmd_export(argv: Sequence[str]) -> int:
    p = _parser("export", "Export the inference graph (normalisation + model, logits at input size) to ONNX, or "
                "the model as a Hugging Face-style folder (config.json + model.safetensors + README.md model card).")
    p.add_argument("--ckpt_path", type=str, required=True,
                   help="checkpoint written by `fit`, or an exported model folder (export --format hf) or Hub repo id")
    p.add_argument("--output", type=str, required=True, help="the .onnx file to write (onnx), the folder (hf)")
    p.add_argument("--format", type=Literal["onnx", "hf"], default="onnx",
                   help="onnx: the inference graph; hf: config.json + model.safetensors + README.md")
    p.add_argument("--push_to_hub", type=str | None, default=None,
                   help="hf: upload the folder to this Hugging Face Hub repo id (owner/name; created if needed; "
                        "needs a login: `hf auth login` or HF_TOKEN)")
    p.add_argument("--scores", type=dict[str, float] | None, default=None,
                   help='hf: scores to record in config.json and the model card, e.g. \'{"test/mIoU": 0.61}\'')
    p.add_argument("--height", type=int, default=256, help="height of the tracing example")
    p.add_argument("--width", type=int, default=320, help="width of the tracing example")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--check", type=bool, default=True, help="compare onnxruntime with PyTorch")
    a = p.parse_args(list(argv))
    if a.format == "hf":
        return export_hf(a.ckpt_path, a.output, scores=a.scores, push_to_hub=a.push_to_hub, trust=a.trust_checkpoint)
    if a.push_to_hub or a.scores:
        raise SystemExit("scalecontrast export: --push_to_hub and --scores are options of --format hf")

    from scalecontrast.engine import export_onnx, load_for_inference
    from scalecontrast.engine.export import check_onnx, check_runs_at, input_dims

    module = load_for_inference(a.ckpt_path, trust=a.trust_checkpoint)
    h, w = a.height, a.width
    try:
        check_runs_at(module, (h, w))
    except ValueError as err:
        raise SystemExit(f"scalecontrast export: {err}; give a larger --height/--width (e.g. 256 x 320)") from None
    path = export_onnx(module, a.output, sample_size=(h, w), opset=a.opset)
    dims = input_dims(path)
    print(f"wrote {path} (input 'image' (B, 3, H, W) RGB in [0, 1]; output 'logits' (B, {module.num_classes}, "
          f"H, W); graph input dims {dims})")
    if not a.check:
        print("not checked (--check false): batch and size are as the graph input dims say, untested")
        return 0
    h2, w2 = h - h // 4, w + w // 4
    result = check_onnx(path, module, sizes=((h, w), (h2, w2)), batches=(1, 2))
    batch = ("dynamic batch (checked at 1 and 2)" if result.dynamic_batch
             else f"batch fixed at {dims[0] if isinstance(dims[0], int) else 1} (the exported graph refuses "
                  "batch 2: the model's forward fixes it while tracing)")
    size = (f"dynamic height and width (checked at {h}x{w} and {h2}x{w2})" if result.dynamic_size
            else f"size fixed at {h}x{w} (the exported graph refuses {h2}x{w2})")
    print(f"onnxruntime matches PyTorch (max |diff| = {result.max_diff:.2e}): {batch}; {size}")
    return 0


def export_hf(ckpt_path: str, output: str, *, scores: Mapping[str, float] | None = None,
              push_to_hub: str | None = None, trust: bool = False) -> int:
    """Write the Hugging Face-style folder of a checkpoint (or of another such folder) and optionally upload it."""
    from scalecontrast.engine import save_pretrained

    out = save_pretrained(ckpt_path, output, scores=scores, trust=trust)
    sizes = ", ".join(f"{p.name} ({p.stat().st_size / 1e6:.2f} MB)" for p in sorted(out.iterdir()) if p.is_file())
    print(f"wrote {out}: {sizes}; load it with scalecontrast.from_pretrained({str(out)!r})")
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        url = api.create_repo(push_to_hub, exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=push_to_hub, commit_message="Upload scalecontrast model")
        print(f"uploaded {out} to {url}")
    return 0


def _data_defaults(ckpt_path: str, config: str | None, trust: bool) -> dict:
    """Data-module arguments: those saved in the checkpoint, updated by the config's ``data``."""
    import yaml

    ckpt = read_checkpoint(ckpt_path, trust=trust)
    base = {k: v for k, v in (ckpt.get("datamodule_hyper_parameters") or {}).items() if not k.startswith("_")}
    if config:
        with open(config) as f:
            cfg = yaml.safe_load(f) or {}
        data = cfg.get("data") or {}
        base.update(data.get("init_args", data) if isinstance(data, dict) else {})
    return base


def cmd_embed(argv: Sequence[str]) -> int:
    from scalecontrast.engine import SegmentationDataModule

    p = _parser("embed", "t-SNE of the per-scale projector embeddings (or the model's feature maps) sampled "
                "class-balanced as in training, coloured by class: one panel per scale, like the paper's figure.")
    p.add_argument("--config", type=str | None, default=None,
                   help="training config; its `data` section selects the data (default: the checkpoint's)")
    p.add_argument("--ckpt_path", type=str, required=True,
                   help="checkpoint (with a contrastive head unless --source features)")
    p.add_argument("--source", type=Literal["auto", "projector", "features"], default="auto",
                   help="projector: the projector embeddings; features: the model's feature maps the "
                        "projectors take (works for CE models too); auto: projector when the checkpoint has them")
    p.add_argument("--output", type=str, required=True, help="figure to write (.png, .pdf, ...)")
    p.add_argument("--split", type=str, default="val", help="val, test or train (no augmentation)")
    p.add_argument("--num_images", type=int, default=8, help="images to sample from")
    p.add_argument("--views", type=int, default=40, help="points per (image, class) pair and scale")
    p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity")
    p.add_argument("--device", type=str, default="cpu")
    p.add_class_arguments(SegmentationDataModule, "data")
    a = p.parse_args(list(argv))
    # the data of the checkpoint's run, then the config's, under the options given
    defaults = _data_defaults(a.ckpt_path, a.config, a.trust_checkpoint)
    a = p.parse_args(list(argv), namespace=p.parse_object({"data": defaults}, a))

    from scalecontrast.engine import load_module
    from scalecontrast.engine.inference import sample_embeddings
    from scalecontrast.viz import tsne_figure

    module = load_module(a.ckpt_path, map_location=a.device, trust=a.trust_checkpoint)
    has_head = module.contrastive_head is not None
    source = a.source if a.source != "auto" else ("projector" if has_head else "features")
    if source == "projector" and not has_head:
        raise SystemExit("scalecontrast embed: this checkpoint has no contrastive head (trained with "
                         "cross-entropy only); use --source features for the model's feature maps")
    dm = p.instantiate_classes(a).data
    key = {"val": dm.hparams.val_split, "test": dm.hparams.test_split, "train": dm.hparams.train_split}
    dataset = dm.make_dataset(key.get(a.split, a.split), train=False)
    n_images = min(a.num_images, len(dataset))
    f_np, y_np, strides = sample_embeddings(module, dataset, num_images=n_images, views=a.views,
                                              source=source)
    if not any(len(f) for f in f_np):
        raise SystemExit("scalecontrast embed: no labelled pixels were sampled; use more images")
    titles = [f"scale {s + 1} {source} (stride {st}, {len(f)} points)"
              for s, (st, f) in enumerate(zip(strides, f_np, strict=True))]
    tsne_figure(f_np, y_np, module.class_names, module.palette, a.output, titles=titles,
                perplexity=a.perplexity)
    points = sum(len(f) for f in f_np)
    print(f"wrote {a.output} ({len(f_np)} scales of {source} maps, {points} points, {n_images} images)")
    return 0


def cmd_data(argv: Sequence[str]) -> int:
    p = _parser("data", "camvid: download (or copy from a local source) and verify CamVid. "
                "synthetic: write built-in synthetic scenes as files in the `folder` layout.", checkpoint=False)
    p.add_argument("name", type=str, help="camvid or synthetic")
    p.add_argument("--root", type=str, required=True, help="folder to create / verify")
    p.add_argument("--source", type=str | None, default=None,
                   help="camvid: a local copy (folder or archive) to use instead of downloading")
    p.add_argument("--split", type=str, default="test", help="synthetic: split to write")
    p.add_argument("--num", type=int, default=8, help="synthetic: number of scenes")
    p.add_argument("--size", type=int, default=128, help="synthetic: scene size in pixels")
    a = p.parse_args(list(argv))
    name = a.name.lower()
    if name == "synthetic":
        return _write_synthetic(Path(a.root), a.split, a.num, a.size)
    if name != "camvid":
        raise SystemExit(f"scalecontrast data: only 'camvid' can be fetched automatically, not {a.name!r} "
                         "(and 'synthetic' can be written); see docs/ for the other data sets' layouts")
    from scalecontrast.engine.datamodule import prepare_data

    result = prepare_data("camvid", a.root, a.source)
    sizes = result["sizes"]
    action = result.get("action", "ready") if isinstance(result, dict) else "ready"
    print(f"CamVid {action} at {a.root}: " + ", ".join(f"{k} {v} images" for k, v in sizes.items()))
    splits = result.get("splits", {}) if isinstance(result, dict) else {}
    for split, info in splits.items():
        if isinstance(info, dict):
            details = ", ".join(f"{k}={v}" for k, v in info.items() if k != "images")
            print(f"  {split}: {details}")
    return 0


def _write_synthetic(root: Path, split: str, num: int, size: int) -> int:
    from scalecontrast.engine.datamodule import write_synthetic

    out = write_synthetic(root, split, num, size)
    print(f"wrote {num} synthetic {split} scenes ({size}x{size}) to {out}")
    return 0


def cmd_study(argv: Sequence[str]) -> int:
    """``study run|status|report SPEC``: the arguments are parsed here, the work is scalecontrast.study's."""
    from jsonargparse import ArgumentParser

    storage_help = ("an Optuna storage URL (sqlite:///f.db, postgresql://...) or a journal file path "
                    "(default: the spec's `storage`, else SQLite in its runs folder)")

    def action(name: str, description: str):
        sp = _parser(f"study {name}", description, checkpoint=False)
        sp.add_argument("spec", type=str, help="the study spec (YAML, see docs/studies.md)")
        sp.add_argument("--storage", type=str | None, default=None, help=storage_help)
        return sp

    run = action("run", "Run the trials that are left. Start it any number of times, on any machines that share "
                 "the storage: each trial runs once; a trial whose worker died resumes from its last checkpoint.")
    run.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    run.add_argument("--heartbeat", type=float, default=60.0,
                     help="seconds between a running trial's signs of life; a trial silent for 3 of them is "
                     "taken up again by another worker (resuming from its last checkpoint)")
    status = action("status", "Trials done / running / failed / left per phase, and an estimate of the time left.")
    report = action("report", "Write OUTPUT/results.md (tables paired by seed, per-class IoU, the tuning table) "
                    "and its figures; nothing else is written.")
    report.add_argument("--output", type=str, required=True, help="the folder to write into")
    p = ArgumentParser(prog="scalecontrast study", exit_on_error=True,
                       description="Tune a setting on val and compare it with CE on test, paired by seed, on an "
                       "Optuna storage shared by any number of workers (docs/studies.md).")
    sub = p.add_subcommands(required=True, dest="action")
    sub.add_subcommand("run", run, help="run the trials that are left (on any number of machines)")
    sub.add_subcommand("status", status, help="done / running / failed / left per phase, and the time left")
    sub.add_subcommand("report", report, help="write OUTPUT/results.md and the figures")
    cfg = p.parse_args(list(argv))
    name = cfg.action
    a = cfg[name]

    from scalecontrast.study import SpecError, load_spec, run_study, study_status, write_report

    try:
        spec = load_spec(a.spec)
    except (SpecError, OSError) as err:
        raise SystemExit(f"scalecontrast study {name}: {err}") from None
    if name == "run":
        if a.workers < 1:
            raise SystemExit("scalecontrast study run: --workers must be at least 1")
        return run_study(spec, storage=a.storage, workers=a.workers, heartbeat=a.heartbeat)
    if name == "status":
        print(study_status(spec, storage=a.storage))
        return 0
    print(f"wrote {write_report(spec, a.output, storage=a.storage)}")
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "segment": cmd_segment,
    "export": cmd_export,
    "embed": cmd_embed,
    "data": cmd_data,
    "study": cmd_study,
}


def _one_line(command: str, err: BaseException) -> str:
    """``scalecontrast <command>: <message>`` on one line; errors that are not about the user's input
    name their type and how to see the traceback."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip()) or type(err).__name__
    user_error = isinstance(err, ValueError | OSError | KeyError | TypeError | ImportError)  # DataError: ValueError
    if not user_error:
        text = f"{type(err).__name__}: {text} (run with --debug for the traceback)"
    return f"scalecontrast {command}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scalecontrast`` console script.

    Errors end it with ``SystemExit("scalecontrast <command>: ...")``: one line on stderr, exit status 1; ``--debug``
    anywhere on the command line (or ``SCALECONTRAST_DEBUG=1``) shows the traceback instead."""
    from_sys = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0") or "--debug" in argv
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        if from_sys:
            sys.argv = [sys.argv[0], *argv]  # Lightning's launchers re-run sys.argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        from scalecontrast import __version__

        print(f"scalecontrast {__version__}")
        return 0
    command = argv[0]
    try:
        if command in COMMANDS:
            return COMMANDS[command](argv[1:]) or 0
        run_lightning(None if from_sys else argv)
        return 0
    except SIGTERMException:
        print(f"scalecontrast {command}: stopped by SIGTERM", file=sys.stderr, flush=True)
        return SIGTERM_EXIT_CODE
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:
        if debug:
            raise
        raise SystemExit(_one_line(command, err)) from None  # printed to stderr, exit status 1


if __name__ == "__main__":
    sys.exit(main())
