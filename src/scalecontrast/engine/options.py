"""The grouped options of :class:`~scalecontrast.engine.SegmentationModule`: ``--model.contrast.*``
(:class:`ContrastOptions`) and ``--model.evaluation.*`` (:class:`EvalOptions`).

``ContrastOptions`` takes the options of :class:`~scalecontrast.losses.MultiScaleContrastiveLoss` as its
keyword arguments: jsonargparse reads them from the loss's own signature (types, defaults and docstrings
in ``--help``), so a new loss option is a command-line option at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, final

from scalecontrast.losses import MultiScaleContrastiveLoss

__all__ = ["ContrastOptions", "EvalOptions", "as_contrast_options", "as_eval_options"]


@final
class ContrastOptions:
    """The contrastive part of the loss: ``weight * (MS + CS)``.

    Args:
        weight: factor on the contrastive loss (0.1 in the paper); 0 trains with cross-entropy only.
        warmup_steps: ramp ``weight`` linearly from 0 over this many steps (0: full weight from the start).
        embed_dim: output channels of the projectors.
        loss_options: the options of :class:`~scalecontrast.losses.MultiScaleContrastiveLoss` (its
            ``ignore_index`` and ``num_classes`` are the module's).
    """

    def __init__(self, weight: float = 0.1, warmup_steps: int = 0, embed_dim: int = 256, **loss_options: Any) -> None:
        if warmup_steps < 0:
            raise ValueError(f"contrast.warmup_steps must be >= 0, got {warmup_steps}")
        valid = [n for n in inspect.signature(MultiScaleContrastiveLoss).parameters
                 if n not in ("ignore_index", "num_classes")]
        unknown = sorted(set(loss_options) - set(valid))
        if unknown:
            raise ValueError(f"unknown contrast option(s) {unknown}; valid: "
                             f"{sorted(['weight', 'warmup_steps', 'embed_dim', *valid])}")
        MultiScaleContrastiveLoss(ignore_index=255, num_classes=1, **loss_options)  # checks the values
        self.weight = float(weight)
        self.warmup_steps = int(warmup_steps)
        self.embed_dim = int(embed_dim)
        self.loss_options = {k: tuple(v) if isinstance(v, list) else v for k, v in loss_options.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for sequences): what checkpoints store."""
        opts = {k: list(v) if isinstance(v, tuple) else v for k, v in self.loss_options.items()}
        return {"weight": self.weight, "warmup_steps": self.warmup_steps, "embed_dim": self.embed_dim, **opts}

    def weight_at(self, step: int) -> float:
        """``weight``, ramped linearly from 0 over the first ``warmup_steps``."""
        ramp = min(1.0, step / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        return self.weight * ramp


@dataclass
class EvalOptions:
    """Evaluation: multi-scale + flip TTA (probabilities averaged) and sliding window; logits are
    resized to the label size."""

    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    crop_size: list[int] | None = None
    stride: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_contrast_options(value: ContrastOptions | Mapping[str, Any] | None) -> ContrastOptions | None:
    """``value`` (options, a mapping of them, or ``None`` for cross-entropy only) as :class:`ContrastOptions`."""
    if value is None or isinstance(value, ContrastOptions):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"contrast must be ContrastOptions, a dict of its options or None, got {type(value).__name__}")
    return ContrastOptions(**dict(value))


def as_eval_options(value: EvalOptions | Mapping[str, Any]) -> EvalOptions:
    """``value`` (options or a mapping of them) as :class:`EvalOptions`; unknown keys raise an error naming them."""
    if isinstance(value, EvalOptions):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"evaluation must be EvalOptions or a dict of its fields, got {type(value).__name__}")
    known = set(EvalOptions.__dataclass_fields__)
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown evaluation option(s) {unknown}; valid: {sorted(known)}")
    return EvalOptions(**dict(value))
