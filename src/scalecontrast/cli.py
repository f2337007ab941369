"""The ``scalecontrast`` command line.

Training and evaluation follow Lightning's CLI (``fit``, ``validate``, ``test``, ``predict``
with ``--config``, ``--model.*``, ``--data.*``, ``--trainer.*``, ``--ckpt_path``); the other
commands work from a checkpoint alone:

    scalecontrast fit      --config configs/camvid/fpn_lite0_mscs.yaml [--data.root DIR]
                           [--trainer.max_steps N] [--ckpt_path last]
    scalecontrast validate|test --config CFG --ckpt_path CKPT [--data.root DIR]
    scalecontrast segment  --ckpt_path CKPT --input IMAGE_OR_DIR --output DIR [--tta]
    scalecontrast export   --ckpt_path CKPT --output model.onnx
    scalecontrast embed    --config CFG --ckpt_path CKPT --output tsne.png
    scalecontrast data camvid --root DIR [--source PATH]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

__all__ = ["main", "run_lightning"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
EXTRA_COMMANDS = ("segment", "export", "embed", "data")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

USAGE = """usage: scalecontrast COMMAND [options]

Semantic segmentation with multi-scale and cross-scale contrastive learning.

training and evaluation (Lightning CLI; see `scalecontrast fit --help`):
  fit        train:   --config CFG [--data.root DIR] [--trainer.max_steps N] [--ckpt_path last] [--overwrite true]
  validate   evaluate on the validation split: --config CFG --ckpt_path CKPT (or `none`: untrained)
  test       evaluate on the test split:       --config CFG --ckpt_path CKPT (or `none`: untrained)
  predict    Lightning's predict loop

from a checkpoint:
  segment    colour masks and overlays:  --ckpt_path CKPT --input IMAGE_OR_DIR --output DIR [--tta]
  export     ONNX inference graph:       --ckpt_path CKPT --output model.onnx
  embed      t-SNE of embeddings:        --config CFG --ckpt_path CKPT --output tsne.png

data:
  data camvid --root DIR [--source PATH]   download (or copy from PATH) and verify CamVid
  data synthetic --root DIR [--num N]      write built-in synthetic scenes as image/mask files

Run `scalecontrast COMMAND --help` for the options of a command.
"""


EVAL_COMMANDS = ("validate", "test", "predict")
SPECIAL_CKPT = ("last", "best", "hpc")
UNTRAINED = "none"
CKPT_HELP = ("Checkpoint to evaluate (required), e.g. RUN/checkpoints/last.ckpt. `--ckpt_path none` scores the "
             "model as configured, untrained (random weights unless pretrained), on purpose.")
OVERWRITE_HELP = ("Train into a run folder that already holds checkpoints of another run: last.ckpt and step "
                  "checkpoints of the same name are replaced (default: refuse; resume with --ckpt_path last).")


def _lightning_cli_class():
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from scalecontrast.engine.callbacks import (
        AtomicCheckpointIO,
        ExactResume,
        FinalCheckpoint,
        NonFiniteCheckpointError,
        RunFolderLock,
        RunFolderLockedError,
        TrainingDivergedError,
    )
    from scalecontrast.engine.export import CheckpointError, read_checkpoint

    class SegmentationCLI(LightningCLI):
        """LightningCLI with an always-on checkpoint callback (``--checkpoint.*``) writing
        ``<default_root_dir>/checkpoints/last.ckpt`` so ``fit --ckpt_path last`` resumes (exactly: RNG states
        and the loader's position are in the checkpoint), atomic finite-only checkpoint writes, a locked run
        folder, and checked checkpoint paths."""

        def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs):
            parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
            if subcommand == "fit":
                parser.add_argument("--overwrite", type=bool, default=False, help=OVERWRITE_HELP)
            if subcommand in EVAL_COMMANDS:
                for action in parser._actions:
                    if action.dest == "ckpt_path":
                        action.help = CKPT_HELP
            return parser

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
            })

        def _parse_ckpt_path(self) -> None:
            # Before Lightning's own reading of the file (torch.load, raw errors): one clear message.
            sub = self.config.get("subcommand")
            if sub:
                cfg = self.config[sub]
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
                if ckpt and str(ckpt) not in SPECIAL_CKPT and not str(ckpt).startswith("registry"):
                    try:
                        read_checkpoint(ckpt, weights_only=True, resume=sub == "fit")
                    except CheckpointError as err:
                        raise SystemExit(f"scalecontrast {sub}: {err}") from None
            super()._parse_ckpt_path()

        def before_instantiate_classes(self) -> None:
            # Evaluating a checkpoint: never fetch backbone weights that are overwritten anyway.
            sub = self.subcommand
            cfg = self.config[sub] if sub else self.config
            model_cfg = cfg.get("model")
            if sub and sub != "fit" and model_cfg is not None and cfg.get("ckpt_path") is not None:
                model_cfg["pretrained"] = False
                model_cfg["init_weights"] = None
            if model_cfg is not None and model_cfg.get("num_classes") is None and model_cfg.get("model") is None \
                    and model_cfg.get("head") is not None and cfg.get("data") is not None:
                # num_classes defaults to the data's (a model given by class path has its own).
                from scalecontrast.engine import SegmentationDataModule

                data = {**cfg["data"].as_dict(), "check": "none"}  # only the class list is read here
                dm = SegmentationDataModule(**data)
                split = {"fit": "val_split", "validate": "val_split"}.get(sub or "fit", "test_split")
                model_cfg["num_classes"] = len(dm.make_dataset(dm.hparams[split]).classes)

        def instantiate_trainer(self, **kwargs):
            trainer = super().instantiate_trainer(**kwargs)
            for cb in trainer.checkpoint_callbacks:
                if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                    cb.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
            if not any(isinstance(cb, ExactResume) for cb in trainer.callbacks):
                trainer.callbacks.insert(0, ExactResume())
            if not any(isinstance(cb, FinalCheckpoint) for cb in trainer.callbacks):
                trainer.callbacks.insert(0, FinalCheckpoint())
            if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
                trainer.strategy.checkpoint_io = AtomicCheckpointIO()
            return trainer

        # ---- fit: a locked, unused (or resumed) folder; clear errors; the checkpoint written last
        def _checkpoint_dirs(self) -> list[Path]:
            return [Path(cb.dirpath) for cb in self.trainer.checkpoint_callbacks
                    if isinstance(cb, ModelCheckpoint) and cb.dirpath]

        def _check_run_folder(self, ckpt_path: str | None) -> None:
            overwrite = bool(self.config_init[self.subcommand].get("overwrite", False))
            for folder in self._checkpoint_dirs():
                for stale in folder.glob(".*.ckpt.*.tmp"):  # writes cut short by a kill
                    stale.unlink(missing_ok=True)
                used = sorted(p.name for p in folder.glob("*.ckpt"))
                if used and ckpt_path is None and not overwrite:
                    shown = ", ".join(used[:4]) + (f" and {len(used) - 4} more" if len(used) > 4 else "")
                    raise SystemExit(
                        f"scalecontrast fit: {folder} already holds checkpoints of an earlier run ({shown}). Resume "
                        "it with --ckpt_path last, train into another folder (--trainer.default_root_dir DIR), or "
                        "replace them with --overwrite true")
            if ckpt_path == "last":
                found = [p for cb in self.trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)
                         for p in cb._find_last_checkpoints(self.trainer)]
                if found:
                    newest = max(found, key=os.path.getmtime)
                    try:
                        read_checkpoint(newest, weights_only=True, resume=True)
                    except CheckpointError as err:
                        others = sorted(str(p) for d in self._checkpoint_dirs() for p in d.glob("*.ckpt")
                                        if str(p) != str(newest))
                        alt = f"; other checkpoints there: {', '.join(others[:4])} (--ckpt_path FILE)" if others else ""
                        raise SystemExit(f"scalecontrast fit --ckpt_path last: {err}{alt}") from None

        def _last_written(self) -> str | None:
            for cb in self.trainer.checkpoint_callbacks:
                path = getattr(cb, "_last_checkpoint_saved", "") or getattr(cb, "last_model_path", "")
                if path and os.path.isfile(path):
                    return str(path)
            return None

        def fit(self, model, **kwargs) -> None:
            ckpt_path = kwargs.get("ckpt_path")
            locks = []
            try:
                if rank_zero_only.rank == 0:
                    for folder in self._checkpoint_dirs():
                        lock = RunFolderLock(folder)
                        try:
                            lock.acquire()
                        except RunFolderLockedError as err:
                            raise SystemExit(f"scalecontrast fit: {err}") from None
                        locks.append(lock)
                    self._check_run_folder(ckpt_path)
                try:
                    self.trainer.fit(model, **kwargs)
                except (TrainingDivergedError, NonFiniteCheckpointError) as err:
                    last = self._last_written()
                    steps = [getattr(cb, "_last_global_step_saved", None) for cb in self.trainer.checkpoint_callbacks]
                    step = f" (step {steps[0]})" if steps and steps[0] else ""
                    kept = (f"The last checkpoint written (finite weights) is {last}{step}" if last
                            else "No checkpoint was written")
                    raise SystemExit(f"scalecontrast fit: {err}. {kept}.") from None
            finally:
                for lock in locks:
                    lock.release()
            last = self._last_written()
            if last and self.trainer.is_global_zero:
                import torch

                # the checkpoint's own step (the trainer's may be past it)
                step = torch.load(last, map_location="cpu", weights_only=False, mmap=True)["global_step"]
                print(f"scalecontrast fit: checkpoint written last: {last} (step {step})", flush=True)

    return SegmentationCLI


def __getattr__(name: str):
    if name == "SegmentationCLI":
        return _lightning_cli_class()
    raise AttributeError(name)


def run_lightning(args: Sequence[str] | None, *, run: bool = True):
    """``LightningCLI`` over :class:`SegmentationModule` and :class:`SegmentationDataModule`
    (``args=None``: ``sys.argv[1:]``)."""
    from scalecontrast.engine import SegmentationDataModule, SegmentationModule

    cls = _lightning_cli_class()
    saved = sys.argv
    if args is not None:  # parse as if typed (Lightning's DDP launcher also re-runs sys.argv)
        sys.argv = [saved[0] if saved else "scalecontrast", *args]
    try:
        return cls(
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
def _parser(prog: str, description: str):
    from jsonargparse import ArgumentParser

    return ArgumentParser(prog=f"scalecontrast {prog}", description=description, exit_on_error=True)


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
    p.add_argument("--ckpt_path", type=str, required=True, help="checkpoint written by `fit`")
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

    import numpy as np
    import torch
    from PIL import Image

    from scalecontrast.engine import load_module
    from scalecontrast.viz import save_mask_and_overlay

    module = load_module(a.ckpt_path, map_location=a.device)
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
            with Image.open(path) as im:
                rgb = np.array(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as err:  # PIL: UnidentifiedImageError, truncated files
            failed.append(str(path))
            print(f"scalecontrast segment: cannot read image {path}: {type(err).__name__}: {err}; skipped",
                  file=sys.stderr, flush=True)
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
    p = _parser("export", "Export the inference graph (normalisation + model, logits at input size) to ONNX.")
    p.add_argument("--ckpt_path", type=str, required=True, help="checkpoint written by `fit`")
    p.add_argument("--output", type=str, required=True, help="the .onnx file to write")
    p.add_argument("--height", type=int, default=256, help="height of the tracing example")
    p.add_argument("--width", type=int, default=320, help="width of the tracing example")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--check", type=bool, default=True, help="compare onnxruntime with PyTorch")
    a = p.parse_args(list(argv))

    from scalecontrast.engine import export_onnx
    from scalecontrast.engine.export import check_onnx, load_module

    module = load_module(a.ckpt_path)
    path = export_onnx(module, a.output, sample_size=(a.height, a.width), opset=a.opset)
    print(f"wrote {path} (input 'image' (B, 3, H, W) RGB in [0, 1]; output 'logits' (B, "
          f"{module.num_classes}, H, W); dynamic batch, height and width)")
    if a.check:
        h, w = a.height, a.width
        diff = check_onnx(path, module, sizes=((h, w), (h - h // 4, w + w // 4)))
        print(f"onnxruntime matches PyTorch: max |diff| = {diff:.2e} "
              f"at {h}x{w} and {h - h // 4}x{w + w // 4}")
    return 0


def _pop_options(argv: Sequence[str], names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Split ``--name value`` / ``--name=value`` for ``names`` from the rest of ``argv``."""
    mine: dict[str, str] = {}
    rest: list[str] = []
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if key in names:
            if "=" in arg:
                mine[key] = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                mine[key] = argv[i + 1]
                i += 1
            else:
                raise SystemExit(f"scalecontrast: option --{key} needs a value")
        else:
            rest.append(arg)
        i += 1
    return mine, rest


def _data_defaults(ckpt_path: str, config: str | None) -> dict:
    """Data-module arguments: those saved in the checkpoint, updated by the config's ``data``."""
    import yaml

    from scalecontrast.engine.export import read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
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
    known, _ = _pop_options(argv, ("ckpt_path", "config"))
    if "ckpt_path" in known and Path(known["ckpt_path"]).is_file():
        defaults = _data_defaults(known["ckpt_path"], known.get("config"))
        p.set_defaults({f"data.{k}": v for k, v in defaults.items()})
    a = p.parse_args(list(argv))

    from scalecontrast.engine import load_module
    from scalecontrast.engine.tools import sample_embeddings
    from scalecontrast.viz import tsne_figure

    module = load_module(a.ckpt_path, map_location=a.device)
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
                "synthetic: write built-in synthetic scenes as files in the `folder` layout.")
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
    from scalecontrast.engine.tools import prepare_data

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
    from scalecontrast.engine.tools import write_synthetic

    out = write_synthetic(root, split, num, size)
    print(f"wrote {num} synthetic {split} scenes ({size}x{size}) to {out}")
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "segment": cmd_segment,
    "export": cmd_export,
    "embed": cmd_embed,
    "data": cmd_data,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scalecontrast`` console script."""
    from_sys = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        from scalecontrast import __version__

        print(f"scalecontrast {__version__}")
        return 0
    if argv[0] in COMMANDS:
        from scalecontrast.engine.export import CheckpointError

        try:
            return COMMANDS[argv[0]](argv[1:]) or 0
        except CheckpointError as err:
            raise SystemExit(f"scalecontrast {argv[0]}: {err}") from None
    run_lightning(None if from_sys else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
