"""The optimiser's parameter groups (no weight decay on normalisation layers and position embeddings)
and the warm-up + poly learning-rate schedule. Optimisers themselves are torch's, given by class path
(``--model.optimizer torch.optim.SGD``)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR, PolynomialLR, SequentialLR

__all__ = ["NO_DECAY_KEYWORDS", "WarmupPolyLR", "param_groups"]

NO_DECAY_KEYWORDS = ("pos_embed", "absolute_pos_embed", "relative_position_bias_table", "cls_token")
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
               nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, *, no_decay_keywords: Iterable[str] = NO_DECAY_KEYWORDS) -> list[dict]:
    """The trainable parameters of ``model`` for an optimiser, in two groups: the first takes the
    optimiser's ``weight_decay``; the second has ``weight_decay=0``: every parameter of a normalisation
    layer (torch's, and any module whose class name ends in ``Norm2d``, as timm's) and the parameters
    whose name contains one of ``no_decay_keywords`` (position embeddings, class tokens).

    Decaying a norm's scale and shift pulls the features towards 0 without regularising anything, and
    decaying position embeddings erases them: the usual rule of segmentation and transformer recipes."""
    keywords = tuple(no_decay_keywords)
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, NORM_LAYERS) or type(module).__name__.lower().endswith("norm2d"):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay_params, no_decay_params = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay_params if id(p) in no_decay or any(k in name for k in keywords) else decay_params).append(p)
    groups: list[dict] = [{"params": decay_params}]
    if no_decay_params:
        groups.append({"params": no_decay_params, "weight_decay": 0.0})
    return groups


class WarmupPolyLR(SequentialLR):
    """Linear warm-up then poly decay, per optimiser step: the factor on the base learning rate goes
    from ``warmup_factor`` to 1 over ``warmup_steps`` (torch's ``LinearLR``), then as
    ``(1 - t / (total_iters - warmup_steps)) ** power`` to 0 (torch's ``PolynomialLR``).

    ``total_iters`` is the run's number of optimiser steps; :class:`~scalecontrast.engine.SegmentationModule`
    passes the trainer's. ``warmup_steps=0`` is plain poly."""

    def __init__(self, optimizer: Optimizer, total_iters: int, *, power: float = 0.9, warmup_steps: int = 0,
                 warmup_factor: float = 1e-6) -> None:
        total_iters, warmup_steps = max(int(total_iters), 1), int(warmup_steps)
        if warmup_steps < 0 or not 0 < warmup_factor <= 1:
            raise ValueError(f"warmup_steps must be >= 0 and warmup_factor in (0, 1], got {warmup_steps}, "
                             f"{warmup_factor}")
        poly = PolynomialLR(optimizer, total_iters=max(total_iters - warmup_steps, 1), power=power)
        if warmup_steps == 0:
            super().__init__(optimizer, [poly], milestones=[])
        else:
            warm = LinearLR(optimizer, start_factor=warmup_factor, end_factor=1.0, total_iters=warmup_steps)
            super().__init__(optimizer, [warm, poly], milestones=[warmup_steps])
