"""Backbone + head + per-scale projectors = one segmentation model."""

from __future__ import annotations

from torch import Tensor, nn

from .backbone import Backbone
from .layers import Projector, resize
from .output import SegmentationOutput


class SegmentationModel(nn.Module):
    """A timm backbone, a decode head and (optionally) one projector per contrastive scale.

    ``forward(x)``: ``(B, 3, H, W)`` normalised with ``mean``/``std`` -> :class:`SegmentationOutput`
    with logits at ``(H, W)``; aux logits and embeddings only in training mode, so the eval graph is
    the plain model's (and exports to ONNX).

    Args:
        backbone: the encoder.
        head: a module mapping the backbone's feature list to a :class:`~.layers.HeadOutput` and
            exposing ``embed_channels`` (channels of the maps it offers for the contrastive loss).
        contrastive: build projectors (``embed_dim`` channels out, one per scale).
        project_sampled: in training, return the projectors' maps before their last 1x1 conv
            (``output.projector_maps``) and that conv (``output.projections``) instead of
            ``output.embeddings`` (see :class:`SegmentationOutput`), so that the loss projects only
            the pixels it samples. Same loss values and gradients; can be switched at any time
            (``model.project_sampled = True``). Under a hand-made DDP wrapper with
            ``find_unused_parameters=True`` the last conv then runs outside DDP's forward; Lightning
            (the loss inside ``training_step``) is not affected.
    """

    def __init__(self, backbone: Backbone, head: nn.Module, *, contrastive: bool = True, embed_dim: int = 256,
                 project_sampled: bool = False):
        super().__init__()
        self.project_sampled = project_sampled
        self.backbone = backbone
        self.head = head
        self.embed_dim = embed_dim
        self.projectors = nn.ModuleList(Projector(c, embed_dim) for c in head.embed_channels) if contrastive else None
        self.mean: tuple[float, ...] = backbone.mean
        self.std: tuple[float, ...] = backbone.std

    @property
    def num_scales(self) -> int:
        """Number of embedding maps returned in training mode (0 without projectors)."""
        return 0 if self.projectors is None else len(self.projectors)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """The head's maps that the projectors take, ``[(B, C_s, h_s, w_s)]`` highest resolution
        first; present with or without projectors (e.g. to compare a CE model's features)."""
        return list(self.head(self.backbone(x)).features)

    def forward(self, x: Tensor) -> SegmentationOutput:
        size = x.shape[-2:]
        out = self.head(self.backbone(x))
        logits = resize(out.logits, size)
        aux = resize(out.aux_logits, size) if self.training and out.aux_logits is not None else None
        embeddings: list[Tensor] = []
        if self.training and self.projectors is not None:
            if self.project_sampled:
                maps = [proj.trunk(f) for proj, f in zip(self.projectors, out.features, strict=True)]
                return SegmentationOutput(logits, aux, [], maps, [proj.project_rows for proj in self.projectors])
            embeddings = [proj(f) for proj, f in zip(self.projectors, out.features, strict=True)]
        return SegmentationOutput(logits, aux, embeddings)
