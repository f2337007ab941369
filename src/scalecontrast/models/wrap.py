"""``wrap_model``: multi-scale and cross-scale contrastive embeddings for any segmentation model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scalecontrast.constants import IMAGENET_MEAN, IMAGENET_STD

from .layers import Projector, resize
from .output import SegmentationOutput


def _first_tensor(obj) -> Tensor:
    """The tensor output of a submodule (first element of a tuple/list, ``"out"`` of a dict)."""
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, dict):
        return _first_tensor(obj["out"] if "out" in obj else next(iter(obj.values())))
    if isinstance(obj, list | tuple):
        return _first_tensor(obj[0])
    raise TypeError(f"cannot find a tensor in a {type(obj).__name__}")


def _input_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


class ContrastiveWrapper(nn.Module):
    """A segmentation model plus projectors on the outputs of named submodules.

    ``forward(x)`` -> :class:`SegmentationOutput`: logits (the model's tensor output, or ``out`` of its
    dict output, resized to the input size), ``aux_logits`` (the dict's ``aux``, training only) and, in
    training mode, one ``(B, embed_dim, h, w)`` embedding per tap, highest resolution first.
    In eval mode the hooks record nothing: the wrapper costs what the plain model costs.
    """

    def __init__(
        self,
        model: nn.Module,
        taps: list[str],
        *,
        embed_dim: int = 256,
        probe_size: tuple[int, int] = (64, 64),
    ):
        super().__init__()
        if not taps:
            raise ValueError("taps must name at least one submodule")
        modules = dict(model.named_modules())
        unknown = [t for t in taps if t not in modules]
        if unknown:
            raise ValueError(f"no submodule named {unknown}; e.g. {list(modules)[1:8]}")
        self.model = model
        shapes = self._probe(model, taps, probe_size)
        # Highest resolution first (stable for equal sizes).
        order = sorted(range(len(taps)), key=lambda i: -(shapes[i][2] * shapes[i][3]))
        self.taps = [taps[i] for i in order]
        self.projectors = nn.ModuleList(Projector(shapes[i][1], embed_dim) for i in order)
        self.embed_dim = embed_dim
        self.mean: tuple[float, ...] = tuple(getattr(model, "mean", IMAGENET_MEAN))
        self.std: tuple[float, ...] = tuple(getattr(model, "std", IMAGENET_STD))

    @staticmethod
    @torch.no_grad()
    def _probe(model: nn.Module, taps: list[str], size: tuple[int, int]) -> list[torch.Size]:
        """Output shapes of the tapped submodules on a dummy input (eval mode, restored after)."""
        modules = dict(model.named_modules())
        found: dict[str, torch.Size] = {}
        handles = [
            modules[t].register_forward_hook(lambda _m, _i, out, t=t: found.__setitem__(t, _first_tensor(out).shape))
            for t in taps
        ]
        was_training = model.training
        param = next(model.parameters(), None)
        x = torch.zeros(
            1,
            _input_channels(model),
            *size,
            device=param.device if param is not None else None,
            dtype=param.dtype if param is not None else None,
        )
        try:
            model.eval()
            model(x)
        finally:
            model.train(was_training)
            for h in handles:
                h.remove()
        missing = [t for t in taps if t not in found]
        if missing:
            raise ValueError(f"submodules {missing} were not called in forward")
        if any(len(found[t]) != 4 for t in taps):
            raise ValueError(f"tapped outputs must be (B, C, h, w); got { {t: tuple(found[t]) for t in taps} }")
        return [found[t] for t in taps]

    def forward(self, x: Tensor) -> SegmentationOutput:
        # Hooks live only for the duration of a training forward and write into a local dict, so
        # the wrapper deep-copies (EMA, SWA) and pickles like any module, and eval costs nothing.
        store: dict[str, Tensor] = {}
        handles = []
        if self.training:
            modules = dict(self.model.named_modules())
            handles = [
                modules[t].register_forward_hook(lambda _m, _i, out, t=t: store.__setitem__(t, _first_tensor(out)))
                for t in self.taps
            ]
        try:
            out = self.model(x)
        finally:
            for h in handles:
                h.remove()
        aux = None
        if isinstance(out, dict):
            aux = out.get("aux")
            out = out["out"]
        logits = resize(_first_tensor(out), x.shape[-2:])
        embeddings: list[Tensor] = []
        if self.training:
            aux = resize(aux, x.shape[-2:]) if aux is not None else None
            embeddings = [proj(store[t]) for proj, t in zip(self.projectors, self.taps)]
        else:
            aux = None
        return SegmentationOutput(logits, aux, embeddings)


def wrap_model(model: nn.Module, taps: list[str], *, embed_dim: int = 256) -> ContrastiveWrapper:
    """Add projector embeddings to any segmentation model through forward hooks.

    Args:
        model: returns logits ``(B, K, h, w)`` or a dict with ``"out"`` (and optionally ``"aux"``), as
            torchvision's segmentation models do.
        taps: names of submodules (``dict(model.named_modules())`` keys) whose outputs are embedded;
            their channels are found by a dry run on a ``(1, C_in, 64, 64)`` zero input.
        embed_dim: projector output channels.

    Returns:
        a :class:`ContrastiveWrapper`; ``wrapper(x)`` gives a :class:`SegmentationOutput` whose
        embeddings are ordered highest resolution first, whatever the order of ``taps``.
    """
    return ContrastiveWrapper(model, list(taps), embed_dim=embed_dim)
