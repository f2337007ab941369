"""The grouped options of :class:`~scalecontrast.engine.SegmentationModule`, one small dataclass per
concern (``--model.contrast.*``, ``--model.optimizer.*``, ``--model.schedule.*``, ``--model.evaluation.*``).

``ContrastOptions`` is generated from :class:`~scalecontrast.losses.MultiScaleContrastiveLoss`'s
signature, so the loss's options are written once (in the loss) and every new loss option is a CLI
option at once.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from scalecontrast.losses import MultiScaleContrastiveLoss

__all__ = ["ContrastOptions", "EvalOptions", "OptimizerOptions", "ScheduleOptions", "as_options", "to_dict"]

# Loss arguments the module sets itself (from the segmentation loss and the data).
_FROM_MODULE = ("ignore_index", "num_classes")


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _annotation(hint: Any, default: Any) -> Any:
    if isinstance(default, tuple):  # Sequence[float] defaults shown as lists on the command line
        return list[float] if all(isinstance(v, float) for v in default) else list
    return hint


def _contrast_fields() -> list[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(MultiScaleContrastiveLoss.__init__)
    fields: list[tuple[str, Any, Any]] = [
        ("weight", float, field(default=0.1)),
        ("warmup_steps", int, field(default=0)),
        ("embed_dim", int, field(default=256)),
    ]
    for name, param in inspect.signature(MultiScaleContrastiveLoss.__init__).parameters.items():
        if name == "self" or name in _FROM_MODULE or param.kind not in (param.POSITIONAL_OR_KEYWORD,
                                                                          param.KEYWORD_ONLY):
            continue
        default = _jsonable(param.default)
        ann = _annotation(hints.get(name, Any), param.default)
        fields.append((name, ann, field(default_factory=lambda d=default: list(d)) if isinstance(default, list)
                       else field(default=default)))
    return fields


ContrastOptions = dataclasses.make_dataclass("ContrastOptions", _contrast_fields())
ContrastOptions.__module__ = __name__  # picklable and importable as scalecontrast.engine.options.ContrastOptions
ContrastOptions.__doc__ = (
    "The contrastive part of the loss: ``weight * (MS + CS)``.\n\n"
    "``weight`` (0.1 in the paper) is the factor on the contrastive loss; ``warmup_steps`` ramps it "
    "linearly from 0 (0: full weight from the first step); ``embed_dim`` is the projectors' output "
    "channels. Every other field is the argument of the same name of "
    "``scalecontrast.losses.MultiScaleContrastiveLoss`` (see its docstring).")


def loss_kwargs(options: Any) -> dict[str, Any]:
    """The ``MultiScaleContrastiveLoss`` keyword arguments of a :data:`ContrastOptions`."""
    skip = ("weight", "warmup_steps", "embed_dim")
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in dataclasses.asdict(options).items()
            if k not in skip}


@dataclass
class OptimizerOptions:
    """SGD or AdamW; normalisation layers and position embeddings get no weight decay."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class ScheduleOptions:
    """Per-iteration learning-rate schedule (``constant``, ``poly``, ``warmup_poly``); ``max_steps``
    defaults to the trainer's estimated number of steps."""

    name: Literal["poly", "warmup_poly", "constant"] = "poly"
    power: float = 0.9
    warmup_steps: int = 0
    warmup_ratio: float = 1e-6
    min_lr_ratio: float = 0.0
    max_steps: int | None = None


@dataclass
class EvalOptions:
    """Evaluation: multi-scale + flip TTA (probabilities averaged) and sliding window; logits are
    resized to the label size."""

    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    crop_size: list[int] | None = None
    stride: list[int] | None = None


def as_options(value: Any, cls: type, name: str) -> Any:
    """``value`` (an instance of ``cls``, a mapping of its fields, or ``None``) as an instance of ``cls``
    (``None`` stays ``None``); unknown keys raise an error naming them."""
    if value is None or isinstance(value, cls):
        return value
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a {cls.__name__} or a dict of its fields, got {type(value).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown {name} option(s) {unknown}; valid: {sorted(known)}")
    return cls(**dict(value))


def to_dict(value: Any) -> dict[str, Any] | None:
    """A dataclass instance as a plain dict (``None`` stays ``None``): what checkpoints store."""
    if value is None:
        return None
    return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
