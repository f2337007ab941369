"""Models shared the Hugging Face Hub's way: a folder (or Hub repo) of ``config.json`` + ``model.safetensors`` +
``README.md`` (a model card).

- ``config.json``: everything needed to rebuild the model without its training code: the architecture (a built-in
  ``head`` + ``backbone`` + their keyword arguments, or a model's ``class_path`` + ``init_args``), ``num_classes``,
  the class names and palette, the input normalisation, the evaluation settings, and the training recipe as a
  record (data, optimiser, contrastive settings, steps, scores).
- ``model.safetensors``: the model's weights only (no contrastive head, no optimiser state), read without pickle.
- ``README.md``: what the model is, its classes, how it was trained, its scores, how to load it, the paper.

:func:`save_pretrained` writes such a folder from a module or a checkpoint; :func:`from_pretrained` reads one back
as the eval model; :func:`pretrained_module` as a :class:`~scalecontrast.engine.SegmentationModule` (what the
command line's ``segment``, ``test`` and ``export`` run). Class paths named in ``config.json`` are checked against
:data:`~scalecontrast.engine.checkpoint.TRUSTED_PACKAGES` before anything is imported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scalecontrast.engine.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    build_from_class_path,
    check_class_paths,
    load_module,
    read_checkpoint,
)
from scalecontrast.engine.export import InferenceModel
from scalecontrast.engine.module import SegmentationModule

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "HUB_FILES",
    "WEIGHTS_NAME",
    "from_pretrained",
    "is_pretrained_folder",
    "load_for_inference",
    "load_pretrained_weights",
    "pretrained_module",
    "read_config",
    "resolve_pretrained",
    "save_pretrained",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
HUB_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
LIBRARY = "scalecontrast"
FORMAT_VERSION = 1
PAPER = "https://arxiv.org/abs/2203.13409"

# Arguments of common model classes that fetch pretrained weights when the model is built: an exported folder
# holds the trained weights, so they are set to the value that fetches nothing (the trained value is recorded).
FETCHING_ARGS: Mapping[str, Any] = {"encoder_weights": None, "pretrained": False, "weights": None,
                                    "weights_backbone": None}
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

CITATION = """@inproceedings{pissas2022multiscale,
  title     = {Multi-scale and Cross-scale Contrastive Learning for Semantic Segmentation},
  author    = {Pissas, Theodoros and Ravasio, Claudio S. and Da Cruz, Lyndon and Bergeles, Christos},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2022},
  eprint    = {2203.13409},
  archivePrefix = {arXiv}
}"""


# ------------------------------------------------------------------------------------------------------------------
# writing
def plain_model(module: SegmentationModule) -> nn.Module:
    """The segmentation model of ``module`` as its own class holds it: a wrapped model without its taps' wrapper
    (e.g. the smp ``Unet`` itself), a built-in model as it is. Never the contrastive head."""
    from scalecontrast.models import WrappedModel

    return module.model.model if isinstance(module.model, WrappedModel) else module.model


def _jsonable(value: Any) -> Any:
    """``value`` as JSON values (tensors as lists, tuples as lists, other objects as their text)."""
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _architecture(module: SegmentationModule, model_config: Mapping[str, Any] | None) -> tuple[dict, dict]:
    """``(architecture, replaced)``: how to rebuild the model, and the init args that were set to fetch nothing."""
    hp = module.hparams
    if model_config is None and hp.get("head") is not None:
        return {"head": hp["head"], "backbone": hp["backbone"], "kwargs": _jsonable(hp.get("model_kwargs") or {})}, {}
    config = model_config if model_config is not None else hp.get("model")
    if not isinstance(config, Mapping) or "class_path" not in config:
        cls = type(plain_model(module))
        raise ValueError(f"the model ({cls.__module__}.{cls.__qualname__}) was built in Python: its init arguments "
                         "are unknown, so config.json could not rebuild it; pass model_config={'class_path': ..., "
                         "'init_args': {...}} (the arguments it was built with), or train it by class path")
    init_args = dict(_jsonable(config.get("init_args") or {}))
    replaced = {k: init_args[k] for k in FETCHING_ARGS if k in init_args and init_args[k] != FETCHING_ARGS[k]}
    init_args.update({k: FETCHING_ARGS[k] for k in replaced})
    return {"class_path": str(config["class_path"]), "init_args": init_args}, replaced


def _best_score(ckpt: Mapping[str, Any]) -> dict[str, float]:
    """The monitored score a ``ModelCheckpoint`` kept in the checkpoint, if it monitored one."""
    for key, state in (ckpt.get("callbacks") or {}).items():
        if str(key).startswith("ModelCheckpoint") and isinstance(state, Mapping):
            monitor, score = state.get("monitor"), state.get("best_model_score")
            if monitor and score is not None:
                return {str(monitor): float(score)}
    return {}


def build_config(module: SegmentationModule, *, model_config: Mapping[str, Any] | None = None,
                 checkpoint: Mapping[str, Any] | None = None, scores: Mapping[str, float] | None = None,
                 source: str | None = None) -> dict[str, Any]:
    """The ``config.json`` of ``module`` (plain JSON values); ``checkpoint`` adds the data settings, the step
    and any monitored score it holds; ``scores`` (e.g. ``{"test/mIoU": 0.61}``) are recorded as given."""
    hp = module.hparams
    architecture, replaced = _architecture(module, model_config)
    ckpt = checkpoint or {}
    recorded = {**_best_score(ckpt), **{str(k): float(v) for k, v in (scores or {}).items()}}
    training = {
        "source": source,
        "taps": list(hp.get("taps") or []) or None,
        "contrast": _jsonable(hp.get("contrast")),
        "aux_weight": hp.get("aux_weight"),
        "class_weights": _jsonable(hp.get("class_weights")),
        "optimizer": _jsonable(hp.get("optimizer")),
        "lr_scheduler": _jsonable(hp.get("lr_scheduler")),
        "pretrained": _jsonable(hp.get("pretrained")),
        "init_weights": _jsonable(hp.get("init_weights")),
        "init_args_replaced": replaced or None,
        "data": _jsonable(ckpt.get("datamodule_hyper_parameters")) or None,
        "global_step": ckpt.get("global_step"),
        "epoch": ckpt.get("epoch"),
    }
    return {
        "library_name": LIBRARY,
        "format_version": FORMAT_VERSION,
        "scalecontrast_version": _version(),
        "architecture": architecture,
        "num_classes": module.num_classes,
        "class_names": module.class_names,
        "palette": module.palette,
        "class_groups": _jsonable(hp.get("class_groups")),
        "ignore_index": int(hp.get("ignore_index", 255)),
        "mean": [float(v) for v in hp["mean"]],
        "std": [float(v) for v in hp["std"]],
        "input": "RGB in [0, 1], (B, 3, H, W); normalised inside with mean/std",
        "evaluation": _jsonable(module.eval_options.to_dict()),
        "training": training,
        "scores": recorded,
    }


def _version() -> str:
    from scalecontrast import __version__

    return __version__


def save_pretrained(
    source: SegmentationModule | str | Path,
    out_dir: str | Path,
    *,
    scores: Mapping[str, float] | None = None,
    model_config: Mapping[str, Any] | None = None,
    trust: bool = False,
) -> Path:
    """Write ``out_dir/{config.json, model.safetensors, README.md}`` for a module, a checkpoint written by ``fit``,
    or another such folder; returns ``out_dir``.

    Args:
        source: a :class:`~scalecontrast.engine.SegmentationModule`, the path of a checkpoint (read without
            running code, see :func:`~scalecontrast.engine.load_module`), or a folder written by this function.
        out_dir: the folder to write (created; files of the same names are replaced).
        scores: scores to record in ``config.json`` and the model card, e.g. ``{"test/mIoU": 0.61}``; a
            checkpoint's monitored best score is recorded too.
        model_config: ``{"class_path": ..., "init_args": {...}}`` of a model built in Python (whose init arguments
            the module does not know); not needed for built-in heads or models given by class path.
        trust: load a checkpoint that needs the full unpickler or names classes outside the trusted packages.
    """
    from safetensors.torch import save_model

    checkpoint, name, previous = None, None, None
    if isinstance(source, SegmentationModule):
        module = source
    elif is_pretrained_folder(source):  # written again: its training record and scores kept
        module = pretrained_module(source, trust=trust, channels_last=False)
        previous = read_config(source)
        scores = {**(previous.get("scores") or {}), **(scores or {})}
    else:
        checkpoint = read_checkpoint(source, trust=trust)
        module = load_module(source, trust=trust)
        name = Path(source).name
    config = build_config(module, model_config=model_config, checkpoint=checkpoint, scores=scores, source=name)
    if previous is not None and previous.get("training"):
        config["training"] = previous["training"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = plain_model(module)
    metadata = {"format": "pt", "library": LIBRARY, "num_classes": str(module.num_classes)}
    save_model(model, str(out / WEIGHTS_NAME), metadata=metadata, force_contiguous=True)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (out / CARD_NAME).write_text(model_card(config, num_parameters=sum(p.numel() for p in model.parameters())))
    return out


# ------------------------------------------------------------------------------------------------------------------
# the model card
def _describe(architecture: Mapping[str, Any]) -> str:
    if "head" in architecture:
        kwargs = architecture.get("kwargs") or {}
        extra = f" ({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else ""
        return f"`{architecture['head']}` decode head on a `{architecture['backbone']}` backbone{extra}"
    return f"`{architecture['class_path']}` with `{json.dumps(architecture.get('init_args') or {})}`"


def _recipe(training: Mapping[str, Any]) -> list[str]:
    lines = []
    data = training.get("data") or {}
    if data:
        shown = {k: data[k] for k in ("dataset", "crop_size", "batch_size", "train_split", "scale_range")
                 if data.get(k) is not None}
        lines.append("- data: " + ", ".join(f"{k} `{v}`" for k, v in shown.items()))
    for key in ("optimizer", "lr_scheduler"):
        value = training.get(key)
        if isinstance(value, Mapping):
            args = value.get("init_args") or {}
            lines.append(f"- {key}: `{value.get('class_path', value)}`"
                         + (f" ({', '.join(f'{k}={v}' for k, v in args.items())})" if args else ""))
    if training.get("global_step") is not None:
        lines.append(f"- trained for {training['global_step']} optimiser steps ({training.get('epoch', 0)} epochs "
                     "completed)")
    if training.get("init_weights"):
        lines.append(f"- initial weights: `{training['init_weights']}`")
    elif training.get("pretrained"):
        lines.append(f"- backbone initialised from pretrained weights (`pretrained={training['pretrained']}`)")
    if training.get("init_args_replaced"):
        lines.append(f"- trained from `{training['init_args_replaced']}` (set to fetch nothing in config.json: the "
                     "trained weights are in model.safetensors)")
    contrast = training.get("contrast")
    if contrast:
        shown = ", ".join(f"{k}={v}" for k, v in contrast.items())
        lines.append(f"- loss: cross-entropy + {contrast.get('weight')} x (multi-scale + cross-scale supervised "
                     f"contrastive loss) on the feature maps {training.get('taps') or '(the head default maps)'}")
        lines.append(f"- contrastive settings: {shown}")
    else:
        lines.append("- loss: cross-entropy only (no contrastive term)")
    return lines


def model_card(config: Mapping[str, Any], *, num_parameters: int | None = None) -> str:
    """The ``README.md`` of an exported folder: YAML front matter for the Hub, then what the model is, its classes,
    training recipe, scores, how to load it, and the paper."""
    names, palette = config["class_names"], config["palette"]
    training = config.get("training") or {}
    dataset = (training.get("data") or {}).get("dataset")
    tags = ["scalecontrast", "semantic-segmentation", "image-segmentation", "contrastive-learning"]
    front = ["---", f"library_name: {LIBRARY}", "pipeline_tag: image-segmentation", "tags:",
             *[f"  - {t}" for t in tags], "---", ""]
    size = f", {num_parameters / 1e6:.2f} M parameters" if num_parameters else ""
    lines = [
        *front,
        "# Semantic segmentation model (scalecontrast)",
        "",
        f"A {_describe(config['architecture'])}{size}, predicting {config['num_classes']} classes"
        + (f", trained on `{dataset}`" if dataset else "") + " with the `scalecontrast` library "
        "(multi-scale and cross-scale supervised contrastive learning for semantic segmentation).",
        "",
        f"Input: RGB images in [0, 1], `(B, 3, H, W)`, any size; normalisation inside (mean {config['mean']}, "
        f"std {config['std']}). Output: logits `(B, {config['num_classes']}, H, W)` at the input size. "
        f"Label {config.get('ignore_index', 255)} was ignored in training.",
        "",
        "## Classes",
        "",
        "| index | class | colour (RGB) |",
        "| ---: | --- | --- |",
        *[f"| {i} | {n} | {tuple(c)} |" for i, (n, c) in enumerate(zip(names, palette, strict=False))],
        "",
        "## Training",
        "",
        *_recipe(training),
        "",
        "## Scores",
        "",
    ]
    scores = config.get("scores") or {}
    if scores:
        lines += ["| metric | value |", "| --- | ---: |", *[f"| {k} | {v:.4f} |" for k, v in scores.items()]]
    else:
        lines.append("No scores were stored with this model.")
    ev = config.get("evaluation") or {}
    lines += [
        "",
        f"Evaluation settings: scales {ev.get('scales')}, flip {ev.get('flip')}, "
        + (f"sliding window {ev.get('crop_size')} stride {ev.get('stride')}." if ev.get("crop_size")
           else "whole image."),
        "",
        "## How to load it",
        "",
        "```python",
        "import scalecontrast",
        "",
        "model = scalecontrast.from_pretrained(\"THIS_FOLDER_OR_REPO_ID\")  # eval mode, weights from safetensors",
        "logits = model(images)  # images (B, 3, H, W) RGB in [0, 1] -> (B, K, H, W)",
        "model.class_names, model.palette  # the classes above",
        "```",
        "",
        "On the command line: `scalecontrast segment --ckpt_path THIS_FOLDER --input IMAGES --output OUT` "
        "(colour masks and overlays), `scalecontrast test --ckpt_path THIS_FOLDER --data.root DATA` (mIoU), "
        "`scalecontrast export --ckpt_path THIS_FOLDER --output model.onnx`.",
        "",
        "Files: `config.json` (architecture, classes, palette, normalisation, evaluation settings, training record), "
        "`model.safetensors` (the model's weights only), this `README.md`.",
        "",
        "## Citation",
        "",
        f"The training method is from Pissas et al., ECCV 2022 ({PAPER}):",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------------
# reading
def is_pretrained_folder(path: str | Path | Any) -> bool:
    """Whether ``path`` is a folder holding ``config.json`` (an exported model, not a checkpoint file)."""
    return isinstance(path, str | Path) and Path(path).is_dir() and (Path(path) / CONFIG_NAME).is_file()


def resolve_pretrained(dir_or_repo_id: str | Path, *, revision: str | None = None) -> Path:
    """The local folder of ``dir_or_repo_id``: the folder itself, or a Hub repo id (``owner/name``) downloaded with
    ``huggingface_hub.snapshot_download`` (its config.json, model.safetensors and README.md only)."""
    path = Path(dir_or_repo_id)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file: from_pretrained takes the folder that holds {CONFIG_NAME} and "
                              f"{WEIGHTS_NAME} (load_module reads checkpoint files)")
    repo_id = str(dir_or_repo_id)
    if not REPO_ID.match(repo_id):
        raise CheckpointNotFoundError(f"{repo_id}: no such folder, and not a Hugging Face Hub repo id (owner/name)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=list(HUB_FILES)))
    except Exception as err:  # noqa: BLE001 - network, authentication and missing-repo errors alike
        said = " ".join(str(err).split())[:300]
        raise CheckpointNotFoundError(f"{repo_id}: no such folder, and downloading it as a Hugging Face Hub repo "
                                      f"failed ({type(err).__name__}: {said})") from err


REQUIRED_KEYS = ("architecture", "num_classes", "mean", "std")


def read_config(folder: str | Path) -> dict[str, Any]:
    """``folder/config.json``, checked: written by :func:`save_pretrained`, with the keys that rebuild the model."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path} not found: an exported model folder holds {CONFIG_NAME} and "
                                      f"{WEIGHTS_NAME} (scalecontrast export --format hf)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot read {path}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("library_name") != LIBRARY:
        found = config.get("library_name") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{path} is not a scalecontrast model config (library_name is {found!r}, not "
                              f"{LIBRARY!r}); a transformers model loads with its own class's from_pretrained")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise CheckpointError(f"{path} lacks the keys {missing}")
    arch = config["architecture"]
    if not isinstance(arch, dict) or not ({"head", "backbone"} <= set(arch) or "class_path" in arch):
        raise CheckpointError(f"{path}: 'architecture' must hold head + backbone (+ kwargs) or class_path "
                              f"(+ init_args), got {arch!r}")
    if int(config.get("format_version", 1)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {config['format_version']}, newer than this scalecontrast "
                              f"reads ({FORMAT_VERSION}): upgrade scalecontrast")
    return config


def module_settings(config: Mapping[str, Any], *, with_training: bool = False) -> dict[str, Any]:
    """The :class:`~scalecontrast.engine.SegmentationModule` arguments a ``config.json`` gives (the model's, never
    its pretrained weights); ``with_training`` adds the taps and contrastive settings it was trained with."""
    arch = config["architecture"]
    settings: dict[str, Any] = {
        "num_classes": int(config["num_classes"]),
        "class_names": config.get("class_names"),
        "palette": config.get("palette"),
        "class_groups": config.get("class_groups"),
        "ignore_index": int(config.get("ignore_index", 255)),
        "mean": list(config["mean"]),
        "std": list(config["std"]),
        "pretrained": False,
        "init_weights": None,
        "contrast": None,
    }
    if config.get("evaluation"):
        settings["evaluation"] = dict(config["evaluation"])
    if "head" in arch:
        settings.update(head=arch["head"], backbone=arch["backbone"], model_kwargs=dict(arch.get("kwargs") or {}))
    else:
        settings["model"] = {"class_path": arch["class_path"], "init_args": dict(arch.get("init_args") or {})}
    if with_training:
        training = config.get("training") or {}
        settings["taps"] = training.get("taps") if "class_path" in arch else None
        settings["contrast"] = training.get("contrast")
    return settings


def pretrained_module(
    dir_or_repo_id: str | Path,
    *,
    trust: bool = False,
    map_location: str | torch.device = "cpu",
    revision: str | None = None,
    channels_last: bool = True,
) -> SegmentationModule:
    """A :class:`~scalecontrast.engine.SegmentationModule` (eval mode, no contrastive head) rebuilt from an
    exported folder or Hub repo: its evaluation settings, classes and palette included.

    Raises :class:`~scalecontrast.engine.UntrustedCheckpointError` when ``config.json`` names a class outside the
    trusted packages (``trust=True`` lifts it), :class:`~scalecontrast.engine.CheckpointError` naming the file
    at fault otherwise."""
    folder = resolve_pretrained(dir_or_repo_id, revision=revision)
    config = read_config(folder)
    config_path = folder / CONFIG_NAME
    check_class_paths({"architecture": config["architecture"]}, config_path, trust=trust)
    settings = {**module_settings(config), "compile": False, "channels_last": channels_last}
    if "model" in settings:
        module = build_from_class_path(settings, f"cannot build the model named in {config_path}")
    else:
        try:
            module = SegmentationModule(**settings)
        except Exception as err:  # noqa: BLE001 - unknown head/backbone names, bad kwargs
            raise CheckpointError(f"cannot build the model described in {config_path}: {err}") from err
    load_pretrained_weights(module, folder)
    return module.to(map_location).eval()


def load_pretrained_weights(module: SegmentationModule, folder: str | Path) -> None:
    """Load ``folder/model.safetensors`` into the model of ``module`` (strict; safetensors only, never pickle)."""
    from safetensors.torch import load_model

    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path} not found: an exported model folder holds {CONFIG_NAME} and "
                                      f"{WEIGHTS_NAME}")
    model = plain_model(module)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        load_model(model, str(path), strict=True, device=str(device))
    except Exception as err:  # noqa: BLE001 - safetensors' header errors and load_state_dict's mismatches
        said = " ".join(str(err).split())[:400]
        raise CheckpointError(f"the weights in {path} do not fit the model described in {CONFIG_NAME} beside it: "
                              f"{said}") from err


def from_pretrained(
    dir_or_repo_id: str | Path,
    *,
    trust: bool = False,
    map_location: str | torch.device = "cpu",
    revision: str | None = None,
) -> InferenceModel:
    """The eval model of an exported folder (or a Hugging Face Hub repo id, downloaded with
    ``huggingface_hub.snapshot_download``): ``model(images (B, 3, H, W) RGB in [0, 1]) -> logits (B, K, H, W)``
    at the input size, normalisation inside.

    ``model.model`` is the network itself (e.g. the ``segmentation_models_pytorch.Unet``, taking normalised
    images); ``model.class_names``, ``model.palette`` and ``model.config`` (the ``config.json``) come with it.
    Weights are read with ``safetensors`` only (never pickle); a class path in ``config.json`` outside the trusted
    packages is refused (:class:`~scalecontrast.engine.UntrustedCheckpointError`) unless ``trust=True``."""
    folder = resolve_pretrained(dir_or_repo_id, revision=revision)
    module = pretrained_module(folder, trust=trust, map_location=map_location, channels_last=False)
    net = InferenceModel(module).to(map_location).eval()
    net.config = read_config(folder)
    net.class_names = module.class_names
    net.palette = module.palette
    return net


def load_for_inference(path: str | Path, *, map_location: str | torch.device = "cpu",
                       trust: bool = False) -> SegmentationModule:
    """An eval-mode module from a checkpoint file written by ``fit``, an exported folder, or a Hub repo id
    (``owner/name``, when no such file or folder exists)."""
    p = Path(path)
    if is_pretrained_folder(p) or (not p.exists() and REPO_ID.match(str(path)) and p.suffix != ".ckpt"):
        return pretrained_module(path, trust=trust, map_location=map_location)
    return load_module(path, map_location=map_location, trust=trust)


def pretrained_settings(folder: str | Path, *, trust: bool = False) -> dict[str, Any]:
    """``{"model": module settings (with taps and contrast), "data": the training data settings}`` of an exported
    folder, checked for untrusted class paths: the defaults under which ``test`` parses its options."""
    config = read_config(folder)
    check_class_paths({"architecture": config["architecture"]}, Path(folder) / CONFIG_NAME, trust=trust)
    data = dict((config.get("training") or {}).get("data") or {})
    return {"model": module_settings(config, with_training=True), "data": data, "seed": None}

