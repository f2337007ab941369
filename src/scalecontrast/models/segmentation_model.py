"""Backbone + head + per-scale projectors = one segmentation model."""

from __future__ import annotations

from torch import Tensor, nn

from .backbone import Backbone
from .layers import Projector, pad_to_multiple, resize, unpad
from .output import SegmentationOutput


class SegmentationModel(nn.Module):
    """A timm backbone, a decode head and (optionally) one projector per contrastive scale.

    ``forward(x)``: ``(B, 3, H, W)`` normalised with ``mean``/``std`` -> :class:`SegmentationOutput`
    with logits at ``(H, W)``; aux logits and embeddings only in training mode, so the eval graph is
    the plain model's (and exports to ONNX). Any ``H, W``: an input whose sides are not multiples of
    ``backbone.size_multiple`` (HRNet: 32) is zero-padded at the bottom and right (zero = the mean
    colour after normalisation); the logits are upsampled at the padded size and cropped back to
    ``(H, W)``, and each feature map is cropped to the ``ceil(h_s * H / H_padded)`` rows (likewise
    columns) that see the image, so labels downsampled to it stay aligned. No padding on multiples.

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
        padded = pad_to_multiple(x, getattr(self.backbone, "size_multiple", 1))
        features = self.head(self.backbone(padded)).features
        return [unpad(f, x.shape[-2:], padded.shape[-2:]) for f in features] if padded is not x else list(features)

    def forward(self, x: Tensor) -> SegmentationOutput:
        size = x.shape[-2:]
        padded = pad_to_multiple(x, getattr(self.backbone, "size_multiple", 1))
        out = self.head(self.backbone(padded))
        padded_size = padded.shape[-2:]

        def crop(t: Tensor) -> Tensor:  # a map of the padded input -> the part that sees the image
            return t if padded is x else unpad(t, size, padded_size)

        logits = crop(resize(out.logits, padded_size))
        aux = crop(resize(out.aux_logits, padded_size)) if self.training and out.aux_logits is not None else None
        features = [crop(f) for f in out.features]
        embeddings: list[Tensor] = []
        if self.training and self.projectors is not None:
            if self.project_sampled:
                maps = [proj.trunk(f) for proj, f in zip(self.projectors, features, strict=True)]
                return SegmentationOutput(logits, aux, [], maps, [proj.project_rows for proj in self.projectors])
            embeddings = [proj(f) for proj, f in zip(self.projectors, features, strict=True)]
        return SegmentationOutput(logits, aux, embeddings)
