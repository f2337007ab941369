"""Reading checkpoints safely: one place that opens a checkpoint file, checks what it may run, and
rebuilds the module from it.

A checkpoint written by ``fit`` holds tensors and plain Python values only, so it is read with
``torch.load(weights_only=True)``, which never runs code. A file that needs more (a pickled object)
is refused unless the caller trusts it (``trust=True``; ``--trust_checkpoint true`` on the command
line). Class paths stored in a checkpoint (a model given by class path, its config, ...) are imported
and called when the model is rebuilt, so each is checked against :data:`TRUSTED_PACKAGES` before
anything is imported.
"""

from __future__ import annotations

import inspect
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "TRUSTED_PACKAGES",
    "TRUST_HINT",
    "CheckpointError",
    "CheckpointNotFoundError",
    "UntrustedCheckpointError",
    "check_class_paths",
    "load_module",
    "read_checkpoint",
    "stored_class_paths",
]

TRUSTED_PACKAGES: tuple[str, ...] = (
    "scalecontrast", "torch", "torchvision", "timm", "segmentation_models_pytorch", "transformers",
)
"""Top-level packages whose classes a checkpoint may name without the user's trust flag."""

TRUST_HINT = ("load it only if you trust its author: --trust_checkpoint true on the command line, "
              "trust=True in Python")


class CheckpointError(ValueError):
    """A checkpoint file that cannot serve: missing, empty, truncated, not a PyTorch file, not one
    written by ``fit``, or one that would run code. The message names the file and what is wrong."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path names no file."""


class UntrustedCheckpointError(CheckpointError):
    """The checkpoint would run code when loaded (a pickled object, or a class outside
    :data:`TRUSTED_PACKAGES`) and the caller did not say it trusts the file."""


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}" + (" (a folder)" if path.is_dir() else ""))
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes; a write that never "
                              "finished?)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): truncated (the end of the zip "
                              "archive is missing: a copy or write that stopped early?)")
    if head[:2] != b"PK" and head[:1] != b"\x80":
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): truncated or not a PyTorch checkpoint "
                              f"(it starts with {head!r}, not a torch.save archive)")


def _load_file(path: Path, map_location: Any, trust: bool) -> Any:
    _check_file(path)
    size = path.stat().st_size
    try:
        return torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        text = f"{type(err).__name__}: {err}".strip()
        if "weights_only" not in text and "Unsupported global" not in text and "Unsupported operand" not in text:
            first = text.splitlines()[0][:200]
            raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): damaged, truncated or not a "
                                  f"PyTorch checkpoint; torch.load said {first}") from err
        refused = _refused_global(text)
        if not trust:
            raise UntrustedCheckpointError(
                f"refusing to load checkpoint {path}: it holds Python objects whose loading runs code "
                f"({refused}), not only weights and plain values as a checkpoint written by `fit` does; "
                f"{TRUST_HINT}") from None
    try:  # trusted by the user: the full unpickler
        return torch.load(str(path), map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001
        first = f"{type(err).__name__}: {err}".strip().splitlines()[0][:200]
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): {first}") from err


def _refused_global(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if "GLOBAL" in line or "Unsupported" in line:
            return line[:200]
    return "objects the weights-only unpickler refuses"


def stored_class_paths(obj: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(key, class_path)`` for every class path in a stored config, nested ones included:
    ``class_path`` entries of jsonargparse and Lightning's ``_class_path`` (Lightning's ``_instantiator``
    entry is never used: every reader here drops it)."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            where = f"{prefix}.{key}" if prefix else str(key)
            if key in ("class_path", "_class_path") and isinstance(value, str):
                yield where, value
            else:
                yield from stored_class_paths(value, where)
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from stored_class_paths(value, f"{prefix}[{i}]")


def check_class_paths(config: Any, source: str | Path, *, trust: bool = False) -> None:
    """Raise :class:`UntrustedCheckpointError` when ``config`` (read from ``source``) names a class outside
    :data:`TRUSTED_PACKAGES` and ``trust`` is false. Nothing is imported here."""
    if trust:
        return
    for key, path in stored_class_paths(config):
        package = path.split(".", 1)[0]
        if "." not in path or package not in TRUSTED_PACKAGES:
            raise UntrustedCheckpointError(
                f"refusing to load checkpoint {source}: it names the class {path!r} (at {key}), outside the "
                f"trusted packages ({', '.join(TRUSTED_PACKAGES)}); importing and building it runs its code; "
                f"{TRUST_HINT}")


def read_checkpoint(ckpt_path: str | Path, map_location: str | torch.device = "cpu", *,
                    trust: bool = False, resume: bool = False) -> dict[str, Any]:
    """The checkpoint dict of ``ckpt_path``, or one :class:`CheckpointError` naming the file and what is
    wrong: missing, empty, truncated, not a PyTorch file, not written by ``fit`` (no ``state_dict`` /
    ``hyper_parameters`` / ``pytorch-lightning_version``), with ``resume`` holding no training state, or
    (unless ``trust``) holding pickled objects or class paths outside :data:`TRUSTED_PACKAGES`.

    The file is read with ``torch.load(weights_only=True)``; ``trust=True`` allows the full unpickler
    for a file that needs it."""
    path = Path(ckpt_path)
    ckpt = _load_file(path, map_location, trust)
    expected = ("state_dict", "hyper_parameters", "pytorch-lightning_version")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in expected):
        keys = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        missing = [k for k in expected if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointError(f"{path} is not a scalecontrast checkpoint written by `fit` (it has {keys}; "
                              f"missing {missing})")
    check_class_paths({"model": ckpt.get("hyper_parameters"), "data": ckpt.get("datamodule_hyper_parameters")},
                      path, trust=trust)
    if resume:
        missing = [k for k in ("optimizer_states", "loops", "global_step") if k not in ckpt]
        if missing:
            raise CheckpointError(f"{path} cannot resume a run: it holds no training state (missing {missing}); "
                                  "it was saved with weights only")
    return ckpt


def build_from_class_path(settings: dict[str, Any], failure: str) -> nn.Module:
    """A :class:`SegmentationModule` from its settings whose ``model`` is a class path (already checked
    against the trusted packages), built by jsonargparse. Raises :class:`CheckpointError` starting with
    ``failure`` when the class cannot be imported or built."""
    from lightning.pytorch.cli import instantiate_module

    from scalecontrast.engine.module import SegmentationModule

    config = settings["model"]
    try:
        module = instantiate_module(SegmentationModule, settings)
    except Exception as err:  # noqa: BLE001 - jsonargparse wraps import and init errors in its own
        text = " ".join(x.strip(" -") for x in str(err).splitlines())
        said = text.split("Problem with given class_path", 1)[-1].split(" Expected a ", 1)[0].strip(" :-")
        raise CheckpointError(f"{failure} from its class path {config['class_path']!r}: {said[:300]} (is the "
                              "package that provides it installed, in the version the model was trained "
                              "with?)") from err
    module.hparams["model"] = config  # a checkpoint saved from this module rebuilds the same way
    return module


def load_module(
    ckpt_path: str | Path,
    *,
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
    trust: bool = False,
):
    """A :class:`~scalecontrast.engine.SegmentationModule` rebuilt from a checkpoint, in eval mode.

    ``model=None`` rebuilds the model from the checkpoint: built-in heads (``head`` + ``backbone``) and
    models given by class path (the command line's ``model: {class_path, init_args}``); backbone weights
    of built-in heads are not fetched again (``pretrained=False``), while a class-path model is built
    with its saved init args as they are (e.g. smp's ``encoder_weights: imagenet`` downloads again; pass
    a fresh instance built without them to avoid that). For a model built in Python, pass a fresh instance
    (``model=MyNet(...)``, the same architecture) and the checkpoint's weights are loaded into it.

    The file is read without running code (see :func:`read_checkpoint`); class paths it names must lie in
    :data:`TRUSTED_PACKAGES`. ``trust=True`` lifts both rules for a file whose author you trust.
    """
    from scalecontrast.engine.module import SegmentationModule

    path = Path(ckpt_path)
    ckpt = read_checkpoint(path, map_location, trust=trust)
    # only the module's arguments (a checkpoint of an earlier release may hold others: its optimiser
    # given by name, its schedule, its guards' options; inference needs none of them)
    known = inspect.signature(SegmentationModule).parameters
    hp = {k: v for k, v in ckpt["hyper_parameters"].items() if k in known}
    for key in ("optimizer", "lr_scheduler"):
        if isinstance(hp.get(key), dict) and "class_path" not in hp[key]:
            hp[key] = None
    hp["pretrained"] = False
    hp["init_weights"] = None  # the checkpoint's weights replace them anyway
    hp["compile"] = False  # inference from a checkpoint never compiles
    if model is not None:
        from scalecontrast.models import SegmentationModel, WrappedModel

        for key in ("head", "backbone", "model_kwargs"):
            hp[key] = None  # the instance replaces whatever built the model
        if isinstance(model, SegmentationModel | WrappedModel):
            hp["taps"] = None  # it returns its features already
        hp["model"] = model
        module = SegmentationModule(**hp)
    elif isinstance(hp.get("model"), dict) and "class_path" in hp["model"]:
        module = build_from_class_path(hp, f"cannot rebuild the model of {path}")
    elif hp.get("model") is None and hp.get("head") is None:
        cls = (ckpt.get("scalecontrast") or {}).get("model_class", "the model class")
        raise CheckpointError(f"{path} holds a model built in Python ({cls}): pass a fresh instance, "
                              f"load_module({str(path)!r}, model={cls.rsplit('.', 1)[-1]}(...))")
    else:
        module = SegmentationModule(**hp)
    try:
        module.load_state_dict(ckpt["state_dict"], strict=strict)
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit the model rebuilt from it: {err}") from err
    return module.to(map_location).eval()
