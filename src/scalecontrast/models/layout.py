"""Memory layout: whether a model can run in the channels-last format."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from scalecontrast.models.wrap import WrappedModel

__all__ = ["runs_channels_last"]


def runs_channels_last(model: nn.Module) -> bool:
    """Whether ``model`` runs on a channels-last input (scalecontrast's own models do; a wrapped client
    model is tried once on a zero input of its probe size, in its dtype and on its device; its layout and
    train/eval modes are restored)."""
    if not isinstance(model, WrappedModel):
        return True
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    x = torch.zeros(1, model.in_channels, *model.probe_size, device=param.device if param is not None else None,
                    dtype=param.dtype if param is not None else None)
    ok, why = True, ""
    try:
        model.eval().to(memory_format=torch.channels_last)  # strides only: values are untouched
        with torch.no_grad():
            model(x.contiguous(memory_format=torch.channels_last))
    except Exception as err:  # noqa: BLE001 - any failure in that layout means: keep the default one
        ok, why = False, f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    finally:
        model.to(memory_format=torch.contiguous_format)
        for m, training in modes.items():
            m.training = training
    if not ok:
        warnings.warn(f"{type(model.model).__name__} does not run in the channels-last memory format ({why}); "
                      "keeping the default layout", stacklevel=2)
    return ok
