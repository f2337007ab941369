"""Tests for scalecontrast.models: every head on tiny backbones, wrap_model, weights, counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scalecontrast.models import (
    SegmentationOutput,
    adaptive_avg_pool2d,
    create_model,
    list_heads,
    wrap_model,
)

K = 5  # classes
EMBED = 32  # small projector width for speed
TINY_SWIN = {"embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 3, 6)}

# (head, backbone, small head options, has aux logits, number of embedding maps)
CASES = [
    ("deeplabv3", "resnet18", {"channels": 32}, False, 3),
    ("hrnet", "hrnet_w18_small", {}, False, 4),
    ("ocrnet", "hrnet_w18_small", {"channels": 32, "key_channels": 16}, True, 4),
    ("ocrnet", "resnet18", {"channels": 32, "key_channels": 16}, True, 2),
    ("upernet", "swin_tiny_patch4_window7_224", {"channels": 32, "aux_channels": 16}, True, 4),
    ("upernet", "resnet18", {"channels": 32, "aux_channels": 16}, True, 4),
    ("upernet", "convnext_atto", {"channels": 32, "aux_channels": 16}, True, 4),
    ("fpn", "tf_efficientnet_lite0", {"channels": 32, "seg_channels": 16}, False, 4),
]


def build(head: str, backbone: str, opts: dict, **kw) -> nn.Module:
    if backbone.startswith("swin"):
        kw["backbone_kwargs"] = TINY_SWIN
    torch.manual_seed(0)
    return create_model(head, backbone, K, **opts, **kw)


def blocky_labels(b: int, h: int, w: int) -> torch.Tensor:
    """Top half class 0, bottom half classes 1 | 2, ignored last column: ``(b, h, w)`` int64.

    Even the stride-32 map of a 64x96 input keeps >= 2 pixels of classes 0 and 1 per image.
    """
    y = torch.zeros(b, h, w, dtype=torch.long)
    y[:, h // 2 :, : w // 2 + 1] = 1
    y[:, h // 2 :, w // 2 + 1 :] = 2
    y[:, :, -1] = 255
    return y


def test_list_heads():
    assert set(list_heads()) == {"deeplabv3", "hrnet", "ocrnet", "upernet", "fpn"}
    with pytest.raises(ValueError, match="unknown head"):
        create_model("segformer", "resnet18", K)


@pytest.mark.parametrize(("head", "backbone", "opts", "has_aux", "n_scales"), CASES, ids=lambda v: v)
def test_head_train_backward_eval(head, backbone, opts, has_aux, n_scales):
    from scalecontrast.losses import ContrastiveHead

    model = build(head, backbone, opts).train()
    assert not any("projector" in name for name, _ in model.named_parameters())  # the head owns them
    x = torch.randn(2, 3, 64, 96)
    y = blocky_labels(2, 64, 96)
    out = model(x)
    assert isinstance(out, SegmentationOutput)
    assert out.logits.shape == (2, K, 64, 96)
    assert (out.aux_logits is not None) == has_aux
    if has_aux:
        assert out.aux_logits.shape == (2, K, 64, 96)
    assert len(out.features) == n_scales == len(model.feature_channels)
    assert [f.shape[1] for f in out.features] == model.feature_channels
    areas = [e.shape[-2] * e.shape[-1] for e in out.features]
    assert areas == sorted(areas, reverse=True)  # highest resolution first
    assert areas[0] == 16 * 24  # the first map is at stride 4

    contrast_head = ContrastiveHead(model.feature_channels, embed_dim=EMBED, min_views=2)
    loss = F.cross_entropy(out.logits, y, ignore_index=255)
    if has_aux:
        loss = loss + 0.4 * F.cross_entropy(out.aux_logits, y, ignore_index=255)
    contrast = contrast_head(out.features, y)
    assert torch.isfinite(contrast) and contrast > 0
    (loss + 0.1 * contrast).backward()
    first_param = next(model.backbone.parameters())
    assert first_param.grad is not None and first_param.grad.abs().sum() > 0
    for proj in contrast_head.projectors:
        assert proj[0].weight.grad is not None and proj[0].weight.grad.abs().sum() > 0

    # eval mode: the same kind of output (features too), deterministic
    model.eval()
    with torch.no_grad():
        out = model(x)
        again = model(x)
    assert out.logits.shape == (2, K, 64, 96)
    assert (out.aux_logits is not None) == has_aux
    assert [tuple(f.shape) for f in out.features] == [tuple(f.shape) for f in again.features]
    torch.testing.assert_close(out.logits, again.logits)


@pytest.mark.parametrize("size", [(64, 96), (96, 64), (160, 32)])
def test_swin_upernet_any_multiple_of_32(size):
    model = build("upernet", "swin_tiny_patch4_window7_224", {"channels": 16, "aux_channels": 8}).train()
    out = model(torch.randn(2, 3, *size))  # batch >= 2: BatchNorm on the 1x1 pooled PPM branch
    assert out.logits.shape == (2, K, *size)
    h, w = size
    assert [tuple(e.shape[-2:]) for e in out.features] == [(h // s, w // s) for s in (4, 8, 16, 32)]


def test_every_head_picks_backbone_maps_by_embed_indices():
    x = torch.randn(2, 3, 64, 64)
    for head, kw in (("upernet", {"channels": 16, "aux_channels": 8}), ("fpn", {"channels": 16}),
                     ("deeplabv3", {"channels": 16}), ("ocrnet", {"channels": 16, "key_channels": 8})):
        model = build(head, "resnet18", {**kw, "embed_indices": (0, 3)}).train()
        assert model.feature_channels == [64, 512], head
        assert [f.shape[1] for f in model(x).features] == [64, 512], head
    assert build("upernet", "resnet18", {"channels": 16, "aux_channels": 8}).feature_channels == [16] * 4  # P2..P5
    assert build("deeplabv3", "resnet18", {"channels": 16}).feature_channels == [64, 256, 512]


def test_deeplabv3_is_dilated_to_stride_8():
    model = build("deeplabv3", "resnet18", {"channels": 16})
    assert model.backbone.reductions == [4, 8, 8, 8]
    assert model.head.aspp.branches[1][0].dilation == (12, 12)


def test_projector_layout():
    from scalecontrast.losses import ContrastiveHead

    model = build("hrnet", "hrnet_w18_small", {})
    head = ContrastiveHead(model.feature_channels)
    proj = head.projectors[0]
    assert [type(m) for m in proj] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.Conv2d]
    assert proj[0].bias is None and proj[0].in_channels == proj[0].out_channels == 16
    assert proj[3].out_channels == 256
    assert model.backbone.channels == [16, 32, 64, 128]  # native HRNet branch channels


def test_normalisation_attributes():
    assert build("fpn", "resnet18", {}).mean == (0.485, 0.456, 0.406)
    assert build("fpn", "resnet18", {}).std == (0.229, 0.224, 0.225)
    lite = build("fpn", "tf_efficientnet_lite0", {})
    assert lite.mean == lite.std == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("size", [(16, 16), (13, 22), (7, 5), (6, 6)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_adaptive_avg_pool2d_matches_torch(size, bins):
    x = torch.randn(2, 3, *size)
    torch.testing.assert_close(adaptive_avg_pool2d(x, bins), F.adaptive_avg_pool2d(x, bins))


# --- wrap_model -------------------------------------------------------------------------------


def test_wrap_torchvision_deeplabv3():
    from torchvision.models.segmentation import deeplabv3_resnet50

    from scalecontrast.losses import ContrastiveHead

    base = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=K, aux_loss=True)
    model = wrap_model(base, ["backbone.layer4", "backbone.layer1", "backbone.layer3"])
    assert model.taps == ["backbone.layer1", "backbone.layer4", "backbone.layer3"]  # highest res first
    assert model.feature_channels == [256, 2048, 1024] and model.num_classes == K
    assert not any("projector" in n for n, _ in model.named_parameters())
    model.train()
    x = torch.randn(2, 3, 64, 64)
    y = blocky_labels(2, 64, 64)
    out = model(x)
    assert out.logits.shape == out.aux_logits.shape == (2, K, 64, 64)
    assert [tuple(e.shape) for e in out.features] == [(2, 256, 16, 16), (2, 2048, 8, 8), (2, 1024, 8, 8)]
    head = ContrastiveHead(model.feature_channels, embed_dim=EMBED, min_views=2)
    loss = F.cross_entropy(out.logits, y, ignore_index=255) + 0.1 * head(out.features, y)
    loss.backward()
    assert head.projectors[0][0].weight.grad is not None
    assert base.backbone.layer1[0].conv1.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model(x)
        plain = base(x)
    # eval mode: the same output kind; the logits are the plain model's
    assert len(out.features) == 3 and out.logits.shape == (2, K, 64, 64)
    torch.testing.assert_close(out.logits, plain["out"])
    torch.testing.assert_close(out.aux_logits, plain["aux"])


def test_wrap_plain_tensor_model():
    base = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, K, 1),
    )
    model = wrap_model(base, ["0", "2"]).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, K, 32, 32)  # upsampled to the input size
    assert out.aux_logits is None
    assert [tuple(e.shape) for e in out.features] == [(2, 8, 16, 16), (2, 16, 8, 8)]
    assert model.mean == (0.485, 0.456, 0.406)
    with pytest.raises(ValueError, match="no submodule"):
        wrap_model(base, ["nope"])
    # deep copies (EMA, SWA) and pickling work: the copy's hooks feed the copy
    import copy
    import io

    clone = copy.deepcopy(model)
    assert [tuple(e.shape) for e in clone(torch.randn(2, 3, 32, 32)).features] == [(2, 8, 16, 16), (2, 16, 8, 8)]
    torch.save(model, io.BytesIO())
    assert len(model.eval()(torch.randn(1, 3, 32, 32)).features) == 2


def test_wrap_warns_when_a_tap_is_changed_in_place():
    base = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.Conv2d(8, K, 1))
    model = wrap_model(base, ["1"])
    with pytest.warns(UserWarning, match=r"taps \['1'\] were changed in place"):
        model(torch.randn(2, 3, 16, 16))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(torch.randn(2, 3, 16, 16))  # once only
        wrap_model(base, ["2"])(torch.randn(2, 3, 16, 16))  # tapping the ReLU is fine


class _Output(dict):
    """Like transformers' ModelOutput: a dict whose values are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err


class _Net(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.cls = nn.Conv2d(8, K, 1)

    def forward(self, x):
        logits = self.cls(self.stem(x).relu())
        if self.kind == "tuple":
            return logits, x.mean()
        if self.kind == "logits":
            return _Output(logits=logits, hidden_states=None)
        if self.kind == "dict":
            return {"out": logits, "aux": logits * 2}
        return logits


@pytest.mark.parametrize("kind", ["tensor", "tuple", "logits", "dict"])
def test_wrap_output_kinds(kind):
    net = _Net(kind).eval()
    model = wrap_model(net, ["stem"])
    x = torch.randn(1, 3, 20, 30)
    out = model(x)
    assert out.logits.shape == (1, K, 20, 30) and model.num_classes == K
    assert [tuple(f.shape) for f in out.features] == [(1, 8, 10, 15)]
    assert (out.aux_logits is not None) == (kind == "dict")
    with torch.no_grad():
        ref = F.interpolate(net.cls(net.stem(x).relu()), size=(20, 30), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.logits, ref)


def test_wrap_bad_output_names_the_keys():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, K, 1)

        def forward(self, x):
            return {"pred": self.c(x)}

    with pytest.raises(TypeError, match=r"keys \['pred'\]"):
        wrap_model(Bad(), ["c"])


# --- weights ----------------------------------------------------------------------------------


def test_local_checkpoint(tmp_path):
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    model = create_model("fpn", "resnet18", K, pretrained=str(path))
    torch.testing.assert_close(model.backbone.body.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)

    from safetensors.torch import save_file

    save_file(reference.state_dict(), tmp_path / "resnet18.safetensors")
    model = create_model("upernet", "resnet18", K, pretrained=tmp_path / "resnet18.safetensors", channels=16)
    torch.testing.assert_close(model.backbone.body.layer4[1].bn2.weight, reference.layer4[1].bn2.weight)

    torch.save({"layer1.0.conv1.weight": reference.layer1[0].conv1.weight}, path)
    with pytest.raises(KeyError, match="lacks"):
        create_model("fpn", "resnet18", K, pretrained=path)


def test_offline_lite0_weights_classify_a_cat():
    import timm
    from skimage.data import chelsea

    from scalecontrast.models import lite0_checkpoint_path, lite0_state_dict

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(lite0_state_dict())
    net.eval()
    img = torch.from_numpy(chelsea()).permute(2, 0, 1).float().div(255)[None]
    img = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        probs = net((img - 0.5) / 0.5).softmax(-1)[0]
    assert 281 <= int(probs.argmax()) <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert probs[281:286].sum() > 0.5

    # create_model(pretrained=True) on tf_efficientnet_lite0 loads the same tensors, offline.
    model = create_model("fpn", "tf_efficientnet_lite0", K, pretrained=True)
    torch.testing.assert_close(model.backbone.body.conv_stem.weight, net.conv_stem.weight)
    torch.testing.assert_close(model.backbone.body.blocks[6][0].conv_pwl.weight, net.blocks[6][0].conv_pwl.weight)
    # ... and so does the package's file given as a path.
    model = create_model("fpn", "tf_efficientnet_lite0", K, pretrained=lite0_checkpoint_path())
    torch.testing.assert_close(model.backbone.body.bn1.running_var, net.bn1.running_var)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_hrnetv2_w48_parameter_count_meta():
    with torch.device("meta"):
        model = create_model("hrnet", "hrnet_w48", 19)
    assert abs(count(model) / 65.9e6 - 1) < 0.05


@pytest.mark.parametrize("size", [(32, 32), (33, 31), (17, 50)])
def test_exportable_same_padding_matches_timm(size):
    from timm.layers import Conv2dSame

    from scalecontrast.models.backbone import ExportableConv2dSame

    for k, s in [(3, 2), (5, 2), (3, 1)]:
        conv = Conv2dSame(4, 6, k, stride=s)
        x = torch.randn(1, 4, *size)
        want = conv(x)
        conv.__class__ = ExportableConv2dSame
        torch.testing.assert_close(conv(x), want)


def test_models_layering_and_top_level_exports():
    import subprocess
    import sys

    code = (
        "import sys, scalecontrast.models as m, scalecontrast as s;"
        "assert s.create_model is m.create_model and s.wrap_model is m.wrap_model;"
        "assert s.SegmentationOutput is m.SegmentationOutput;"
        "bad = [n for n in sys.modules if n.split('.')[:2] in "
        "(['scalecontrast','losses'], ['scalecontrast','data'], ['scalecontrast','engine'], ['scalecontrast','cli'])];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("head", "backbone", "opts", "has_aux", "n_scales"), CASES, ids=lambda v: v)
def test_channels_last_gives_the_same_outputs(head, backbone, opts, has_aux, n_scales):
    import copy

    model = build(head, backbone, opts).eval()
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        want, got = model(x), fast(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-4)
    for a, b in zip(got.features, want.features, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
