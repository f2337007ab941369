"""``wrap_model``: any segmentation model, with the outputs of named submodules as features."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from scalecontrast.constants import IMAGENET_MEAN, IMAGENET_STD

from .layers import resize
from .output import SegmentationOutput

__all__ = ["WrappedModel", "wrap_model", "model_logits"]


def _first_tensor(obj, what: str = "output") -> Tensor:
    """The tensor in a submodule's output (itself, the first element of a tuple/list, ``"out"`` or the
    first value of a dict)."""
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, Mapping) and obj:
        return _first_tensor(obj["out"] if "out" in obj else next(iter(obj.values())), what)
    if isinstance(obj, list | tuple) and obj:
        return _first_tensor(obj[0], what)
    raise TypeError(f"cannot find a tensor in the {what} (a {type(obj).__name__})")


def model_logits(out) -> tuple[Tensor, Tensor | None]:
    """``(logits, aux_logits or None)`` from what a segmentation model returns.

    Accepted: a tensor; a :class:`SegmentationOutput`; an object with a ``.logits`` tensor (Hugging Face
    transformers' ``ModelOutput``); a dict with ``"out"`` and optionally ``"aux"`` (torchvision); a
    tuple or list whose first element is the logits.
    """
    if isinstance(out, Tensor):
        return out, None
    if isinstance(out, SegmentationOutput):
        return out.logits, out.aux_logits
    logits = getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        aux = getattr(out, "aux_logits", None)
        return logits, aux if isinstance(aux, Tensor) else None
    if isinstance(out, Mapping):
        if isinstance(out.get("out"), Tensor):
            aux = out.get("aux")
            return out["out"], aux if isinstance(aux, Tensor) else None
        raise TypeError(f"the model returned a dict with keys {list(out)}; expected 'out' (and optionally "
                        "'aux') as torchvision's models, or an object with a .logits tensor")
    if isinstance(out, list | tuple) and out and isinstance(out[0], Tensor):
        return out[0], None
    raise TypeError(f"cannot read logits from the model's output (a {type(out).__name__}); return a tensor, "
                    "a dict with 'out', an object with .logits or a tuple whose first element is the logits")


def _input_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


class WrappedModel(nn.Module):
    """A segmentation model whose tapped submodules' outputs become ``features``.

    ``forward(x)`` -> :class:`SegmentationOutput`, the same in training and eval mode: logits (read by
    :func:`model_logits` from the model's output and resized to the input size when smaller),
    ``aux_logits`` (a dict's ``"aux"``, likewise) and the tapped outputs ``(B, C_s, h_s, w_s)``, highest
    resolution first. Forward hooks exist only during a forward, so the wrapper deep-copies and
    pickles like any module; an exporter keeps only what the logits need.

    Attributes:
        model: the wrapped model (its parameters keep their names under ``model.``).
        taps: the tapped submodule names, highest resolution first.
        feature_channels: ``C_s`` of the taps, in the same order.
        num_classes: ``K`` of the logits (found by the dry run).
    """

    def __init__(self, model: nn.Module, taps: Sequence[str] = (), *, probe_size: tuple[int, int] = (64, 64)):
        super().__init__()
        if isinstance(taps, str):
            raise TypeError(f"taps must be a list of submodule names, got the string {taps!r}")
        taps = list(taps)
        modules = dict(model.named_modules())
        unknown = [t for t in taps if t not in modules]
        if unknown:
            names = [n for n in modules if n]
            raise ValueError(f"no submodule named {unknown} in {type(model).__name__}; its submodules include "
                             f"{names[:12]}{' ...' if len(names) > 12 else ''} (see dict(model.named_modules()))")
        if len(set(taps)) != len(taps):
            raise ValueError(f"taps must be distinct, got {taps}")
        self.model = model
        self.probe_size = (int(probe_size[0]), int(probe_size[1]))
        self.in_channels = _input_channels(model)
        shapes, num_classes = self._probe(model, taps, self.probe_size)
        # Highest resolution first (stable for equal sizes).
        order = sorted(range(len(taps)), key=lambda i: -(shapes[i][2] * shapes[i][3]))
        self.taps = [taps[i] for i in order]
        self.feature_channels = [int(shapes[i][1]) for i in order]
        self.num_classes = num_classes
        self.mean: tuple[float, ...] = tuple(getattr(model, "mean", IMAGENET_MEAN))
        self.std: tuple[float, ...] = tuple(getattr(model, "std", IMAGENET_STD))
        self._warned_inplace = False

    @contextmanager
    def capture(self, taps: Sequence[str] | None = None, *,
                versions: dict[str, int] | None = None) -> Iterator[dict[str, Tensor]]:
        """Record the outputs of the tapped submodules (default: :attr:`taps`) during any forward of
        :attr:`model` run inside the block, also one called through a wrapper (DDP, another trainer's
        model call): ``with wrapped.capture() as store: out = ddp_model(x)``, then
        ``[store[t] for t in wrapped.taps]``, each ``(B, C_s, h_s, w_s)``. The hooks are removed on exit."""
        store: dict[str, Tensor] = {}

        def hook(name: str):
            def fn(_m, _i, out) -> None:
                t = _first_tensor(out, f"output of {name!r}")
                store[name] = t
                if versions is not None and not t.is_inference():  # inference tensors have no version counter
                    versions[name] = t._version

            return fn

        modules = dict(self.model.named_modules())
        handles = [modules[t].register_forward_hook(hook(t)) for t in (self.taps if taps is None else taps)]
        try:
            yield store
        finally:
            for h in handles:
                h.remove()

    def _run(self, x: Tensor, taps: Sequence[str]) -> tuple[object, dict[str, Tensor], dict[str, int]]:
        versions: dict[str, int] = {}
        with self.capture(taps, versions=versions) as store:
            out = self.model(x)
        return out, store, versions

    @torch.no_grad()
    def _probe(self, model: nn.Module, taps: list[str], size: tuple[int, int]) -> tuple[list[torch.Size], int]:
        """Shapes of the tapped outputs and K, from a dry run on a zero input (eval mode, restored)."""
        param = next(model.parameters(), None)
        x = torch.zeros(1, _input_channels(model), *size, device=param.device if param is not None else None,
                        dtype=param.dtype if param is not None else None)
        modes = {m: m.training for m in model.modules()}  # e.g. a frozen encoder stays in eval mode
        try:
            model.eval()
            out, store, _ = self._run(x, taps)
        finally:
            for m, training in modes.items():
                m.training = training
        missing = [t for t in taps if t not in store]
        if missing:
            raise ValueError(f"submodules {missing} were not called in the model's forward")
        bad = {t: tuple(store[t].shape) for t in taps if store[t].ndim != 4}
        if bad:
            raise ValueError(f"tapped outputs must be (B, C, h, w) maps; got {bad} (tap a convolution or "
                             "a stage that returns a 4-D map)")
        logits, _ = model_logits(out)
        if logits.ndim != 4:
            raise ValueError(f"the model's logits must be (B, K, h, w), got {tuple(logits.shape)}")
        return [store[t].shape for t in taps], int(logits.shape[1])

    def forward(self, x: Tensor) -> SegmentationOutput:
        out, store, versions = self._run(x, self.taps)
        missing = [t for t in self.taps if t not in store]
        if missing:
            raise RuntimeError(f"tapped submodules {missing} were not called in this forward")
        if not self._warned_inplace:
            changed = [t for t in self.taps if t in versions and store[t]._version != versions[t]]
            if changed:
                self._warned_inplace = True
                warnings.warn(
                    f"the outputs of taps {changed} were changed in place later in the forward (e.g. a BN "
                    "followed by ReLU(inplace=True)): the features are the changed values; tap the module "
                    "that does the in-place change instead", stacklevel=2)
        logits, aux = model_logits(out)
        size = x.shape[-2:]
        logits = resize(logits, size)
        aux = resize(aux, size) if aux is not None else None
        return SegmentationOutput(logits, aux, [store[t] for t in self.taps])


def wrap_model(model: nn.Module, taps: Sequence[str], *, probe_size: tuple[int, int] = (64, 64)) -> WrappedModel:
    """Any segmentation model, returning :class:`SegmentationOutput` with the named submodules'
    outputs as features (for :class:`~scalecontrast.losses.ContrastiveHead`).

    Args:
        model: returns logits ``(B, K, h, w)`` as a tensor, a dict with ``"out"`` (and optionally
            ``"aux"``, torchvision), an object with ``.logits`` (Hugging Face transformers) or a tuple whose
            first element is the logits; logits smaller than the input are resized to it.
        taps: names of submodules (keys of ``dict(model.named_modules())``) whose ``(B, C, h, w)`` outputs
            become the features; any order (they are sorted highest resolution first). ``[]`` for a model
            trained with cross-entropy only.
        probe_size: ``(h, w)`` of the zero input of the dry run that finds the taps' channels and ``K``
            (make it a valid input size for the model).

    Returns:
        a :class:`WrappedModel` with ``feature_channels`` and ``num_classes``.
    """
    return WrappedModel(model, list(taps), probe_size=probe_size)
