"""Optimisers (SGD / AdamW without weight decay on norms and position embeddings) and
per-iteration learning-rate schedules (poly, linear warm-up + poly)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

__all__ = ["param_groups", "build_optimizer", "lr_lambda", "NO_DECAY_KEYWORDS"]

NO_DECAY_KEYWORDS = ("pos_embed", "absolute_pos_embed", "relative_position_bias_table", "cls_token")
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    no_decay_keywords: Iterable[str] = NO_DECAY_KEYWORDS,
) -> list[dict]:
    """Two groups: parameters with ``weight_decay`` and those without (every parameter of a
    normalisation layer, and parameters whose name contains one of ``no_decay_keywords``).
    Frozen parameters are left out."""
    keywords = tuple(no_decay_keywords)
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, _NORMS) or type(module).__name__.lower().endswith("norm2d"):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay_params, no_decay_params = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in no_decay or any(k in name for k in keywords):
            no_decay_params.append(p)
        else:
            decay_params.append(p)
    groups = [{"params": decay_params, "weight_decay": weight_decay}]
    if no_decay_params:
        groups.append({"params": no_decay_params, "weight_decay": 0.0})
    return groups


def build_optimizer(
    model: nn.Module,
    *,
    name: str = "sgd",
    lr: float = 0.01,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: Sequence[float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """``name`` in {"sgd", "adamw"}; see :func:`param_groups` for weight decay."""
    groups = param_groups(model, weight_decay)
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(float(betas[0]), float(betas[1])))
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd' or 'adamw'")


def lr_lambda(
    max_steps: int,
    *,
    schedule: str = "poly",
    power: float = 0.9,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-6,
    min_lr_ratio: float = 0.0,
) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimiser step ``step`` (for ``LambdaLR``).

    - ``"constant"``: 1.
    - ``"poly"``: ``(1 - step / max_steps) ** power``.
    - ``"warmup_poly"``: linear from ``warmup_ratio`` to 1 over ``warmup_steps``, then poly over
      the remaining steps.
    The poly part never goes below ``min_lr_ratio``.
    """
    if schedule not in ("constant", "poly", "warmup_poly"):
        raise ValueError(f"unknown schedule {schedule!r}; expected constant, poly or warmup_poly")
    max_steps = max(int(max_steps), 1)
    warmup = int(warmup_steps) if schedule == "warmup_poly" else 0

    def fn(step: int) -> float:
        if schedule == "constant":
            return 1.0
        if step < warmup:
            return warmup_ratio + (1.0 - warmup_ratio) * step / warmup
        progress = min(max(step - warmup, 0) / max(max_steps - warmup, 1), 1.0)
        return max((1.0 - progress) ** power, min_lr_ratio)

    return fn
