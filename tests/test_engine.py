"""Engine units: inference (TTA, sliding window), metrics, schedules, optimiser groups, the
Lightning module's losses, ONNX export."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scalecontrast.engine import (
    SegmentationModule,
    WarmupPolyLR,
    format_scores,
    param_groups,
    predict,
    scores_from_confusion,
    sliding_window,
)
from scalecontrast.engine.metrics import SegmentationMetrics

TINY = {"head": "fpn", "backbone": "mobilenetv3_small_050", "model_kwargs": {"channels": 32, "seg_channels": 32}}


@pytest.fixture(scope="module")
def tiny_module() -> SegmentationModule:
    torch.manual_seed(0)
    module = SegmentationModule(num_classes=4, pretrained=False, contrast={"max_total": 500}, **TINY)
    return module.eval()


def test_tta_scale_one_no_flip_equals_plain(tiny_module):
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        plain = tiny_module.logits(x).softmax(1)
    tta = predict(tiny_module.logits, x, scales=(1.0,), flip=False)
    assert tta.shape == (2, 4, 64, 96)
    torch.testing.assert_close(tta, plain, rtol=0, atol=0)


def test_tta_multi_scale_flip_is_a_distribution(tiny_module):
    x = torch.rand(1, 3, 64, 64)
    probs = predict(tiny_module.logits, x, scales=(0.75, 1.0, 1.25), flip=True, out_size=(80, 70))
    assert probs.shape == (1, 4, 80, 70)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 80, 70))


def test_flip_tta_unflips_the_prediction():
    # a pointwise model commutes with flipping, so flip TTA must give exactly its own softmax
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        probs = predict(conv, x, scales=(1.0,), flip=True)
        torch.testing.assert_close(probs, conv(x).softmax(1))
        # a position-dependent model would not: the flipped view really is un-flipped before averaging
        ramp = torch.linspace(0, 5, 24).view(1, 1, 1, 24)
        tilted = predict(lambda im: conv(im) * ramp, x, scales=(1.0,), flip=True)
        assert not torch.allclose(tilted, (conv(x) * ramp).softmax(1))


def test_sliding_window_crop_larger_than_image_equals_whole(tiny_module):
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        whole = tiny_module.logits(x)
        slid = sliding_window(tiny_module.logits, x, crop_size=(128, 160), stride=(64, 64))
    torch.testing.assert_close(slid, whole, rtol=0, atol=0)
    probs = predict(tiny_module.logits, x, crop_size=(128, 160), stride=(64, 64))
    torch.testing.assert_close(probs, whole.softmax(1), rtol=0, atol=0)


def test_sliding_window_overlap_averages_a_pointwise_model():
    conv = nn.Conv2d(3, 5, 1)
    x = torch.rand(2, 3, 50, 70)
    with torch.no_grad():
        out = sliding_window(conv, x, crop_size=(32, 32), stride=(20, 24))
        torch.testing.assert_close(out, conv(x), rtol=1e-5, atol=1e-6)


def test_scores_from_confusion_by_hand():
    # rows = ground truth, cols = prediction
    cm = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    s = scores_from_confusion(cm, groups={"a": [0], "b": [1, 2]})
    assert s["iou"][0].item() == pytest.approx(5 / 8)
    assert s["iou"][1].item() == pytest.approx(3 / 6)
    assert math.isnan(s["iou"][2].item())  # absent class: left out of the mean
    assert s["mIoU"].item() == pytest.approx((5 / 8 + 3 / 6) / 2)
    assert s["pixel_acc"].item() == pytest.approx(8 / 11)
    assert s["mIoU_b"].item() == pytest.approx(0.5)
    table = format_scores(s, ["sky", "road", "car"])
    assert "sky" in table and "62.50" in table and "n/a" in table


def test_metrics_ignore_index():
    m = SegmentationMetrics(3)
    target = torch.tensor([[0, 1, 255], [2, 2, 255]])
    preds = torch.tensor([[0, 1, 2], [2, 0, 1]])
    m.update(preds, target)
    cm = m.compute()
    assert cm.sum().item() == 4
    assert m.scores()["pixel_acc"].item() == pytest.approx(3 / 4)


def _lrs(total: int, **kw) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupPolyLR(opt, total, **kw)
    lrs = []
    for _ in range(total + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_schedules():
    poly = _lrs(100, power=0.9)
    assert poly[0] == 1.0 and poly[100] == 0.0
    assert poly[50] == pytest.approx(0.5**0.9)
    warm = _lrs(100, warmup_steps=10, warmup_factor=1e-6, power=1.0)
    assert warm[0] == pytest.approx(1e-6)
    assert warm[5] == pytest.approx(1e-6 + (1 - 1e-6) * 0.5)
    assert warm[10] == pytest.approx(1.0)
    assert warm[55] == pytest.approx(0.5)
    assert warm[100] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="warmup"):
        WarmupPolyLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 10, warmup_steps=-1)


def test_no_weight_decay_on_norms_and_position_embeddings():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.ln = nn.LayerNorm(4)
            self.pos_embed = nn.Parameter(torch.zeros(1, 4))
            self.relative_position_bias_table = nn.Parameter(torch.zeros(3, 2))

    net = Net()
    decay, no_decay = param_groups(net)
    assert {id(p) for p in decay["params"]} == {id(net.conv.weight), id(net.conv.bias)}
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 6
    opt = torch.optim.AdamW(param_groups(net), lr=1e-3, weight_decay=0.05)  # the first group takes the default
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def _labels() -> torch.Tensor:
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 32:] = 1
    labels[:, :, 40:] = 2
    labels[0, :4] = 255
    return labels


def _quiet(module: SegmentationModule, logged: dict | None = None) -> SegmentationModule:
    logged = {} if logged is None else logged
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))  # type: ignore[method-assign]
    module.log_dict = lambda d, **kw: logged.update({k: float(v) for k, v in d.items()})  # type: ignore[method-assign]
    return module


def test_training_step_logs_every_term():
    torch.manual_seed(0)
    module = SegmentationModule(num_classes=3, pretrained=False, contrast={"max_total": 300}, **TINY)
    logged: dict[str, float] = {}
    _quiet(module, logged).train()
    loss = module.training_step({"image": torch.rand(2, 3, 64, 64), "mask": _labels()}, 0)
    loss.backward()
    assert torch.isfinite(loss)
    for key in ("train/loss", "train/ce", "train/contrastive", "train/contrastive_scale_0"):
        assert key in logged, key
    expected = logged["train/ce"] + 0.1 * logged["train/contrastive"]
    assert logged["train/loss"] == pytest.approx(expected, rel=1e-5)
    head = module.contrastive_head
    assert head is not None and head.in_channels == module.model.feature_channels
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert not any("projector" in n for n, _ in module.model.named_parameters())  # never inside the model
    # the optimiser trains the projectors too
    opt = module.configure_optimizers_for(10)["optimizer"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["lr"] == 0.01
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(module.parameters()))


def test_options_are_grouped_and_checked():
    from functools import partial

    module = SegmentationModule(num_classes=3, **TINY, contrast={"weight": 0.3, "temperature": 0.2},
                                optimizer=partial(torch.optim.AdamW, lr=1e-3), evaluation={"flip": True})
    assert module.contrast_options.loss_options["temperature"] == 0.2
    assert module.contrastive_head.loss.temperature == 0.2 and module.eval_options.flip
    assert isinstance(module.configure_optimizers_for(5)["optimizer"], torch.optim.AdamW)
    assert module.hparams["contrast"]["weight"] == 0.3  # plain values in the checkpoint
    assert module.hparams["optimizer"] is None  # a callable built in Python is not stored
    with pytest.raises(ValueError, match=r"unknown contrast option\(s\) \['temprature'\]"):
        SegmentationModule(num_classes=3, **TINY, contrast={"temprature": 0.2})
    with pytest.raises(ValueError, match="either `model` or `head`"):
        SegmentationModule(model=nn.Conv2d(3, 3, 1), **TINY)
    with pytest.raises(ValueError, match="give a model"):
        SegmentationModule(num_classes=3)
    with pytest.raises(ValueError, match="taps"):
        SegmentationModule(model=nn.Conv2d(3, 3, 1))  # contrast on, nothing to contrast
    ce = SegmentationModule(model=nn.Conv2d(3, 3, 1), contrast=None)
    assert ce.num_classes == 3 and ce.contrastive_head is None  # K from the model


def test_contrastive_warmup_ramps_the_weight():
    module = SegmentationModule(num_classes=3, pretrained=False, contrast={"weight": 0.2, "warmup_steps": 4},
                                **TINY)
    assert [module.contrastive_weight_at(s) for s in (0, 2, 4, 9)] == pytest.approx([0.0, 0.1, 0.2, 0.2])
    plain = SegmentationModule(num_classes=3, pretrained=False, contrast={"weight": 0.2}, **TINY)
    assert plain.contrastive_weight_at(0) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="warmup_steps"):
        SegmentationModule(num_classes=3, pretrained=False, contrast={"warmup_steps": -1}, **TINY)


def test_contrastive_off_twin_has_no_projectors():
    module = SegmentationModule(num_classes=3, pretrained=False, contrast=None, **TINY)
    assert module.contrastive_head is None
    assert not any("projector" in n for n in module.state_dict())
    # ... but its feature maps can still be compared with a contrastive model's
    feats = module.embeddings(torch.rand(1, 3, 64, 64), source="features")
    assert [f.shape[1] for f in feats] == module.model.feature_channels
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
    with pytest.raises(ValueError, match="no contrastive head"):
        module.embeddings(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="source"):
        module.embeddings(torch.rand(1, 3, 64, 64), source="logits")  # type: ignore[arg-type]


def test_embeddings_are_the_same_in_train_and_eval_mode_apart_from_bn():
    torch.manual_seed(0)
    module = SegmentationModule(num_classes=3, pretrained=False, contrast={"embed_dim": 16}, **TINY).eval()
    x = torch.rand(1, 3, 64, 64)
    emb = module.embeddings(x)
    assert [tuple(e.shape) for e in emb] == [(1, 16, 16, 16), (1, 16, 8, 8), (1, 16, 4, 4), (1, 16, 2, 2)]
    torch.testing.assert_close(emb[0], module.contrastive_head.project(module(x).features)[0])


def test_zero_terms_warn_once():
    from types import SimpleNamespace

    from scalecontrast.engine.callbacks import ZeroTermWatch

    torch.manual_seed(0)
    module = _quiet(SegmentationModule(num_classes=3, pretrained=False, contrast={"max_total": 300}, **TINY))
    module.train()
    watch = ZeroTermWatch(steps=3)
    # one class per image at stride 32 (2x2 map of a 64x64 crop) stays below min_views=5
    batch = {"image": torch.rand(2, 3, 64, 64), "mask": _labels()}
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for step in range(1, 7):
            module.training_step(batch, step)
            watch.on_train_batch_end(SimpleNamespace(global_step=step), module, None, batch, step)
    msgs = [str(w.message) for w in seen if "exactly 0" in str(w.message)]
    assert len(msgs) == 1 and "scale_3" in msgs[0] and "min_views=5" in msgs[0]


def test_onnx_matches_pytorch(tiny_module, tmp_path):
    from scalecontrast.engine import export_onnx
    from scalecontrast.engine.export import check_onnx

    # the TorchScript exporter (the fallback; the CLI test covers the default dynamo exporter)
    path = export_onnx(tiny_module, tmp_path / "m.onnx", sample_size=(64, 96), dynamo=False)
    worst = check_onnx(path, tiny_module, sizes=((64, 96), (96, 64), (72, 100)), atol=1e-4, rtol=1e-4)
    assert worst.dynamic_batch and worst.dynamic_size and not worst.failures
    worst = worst.max_diff
    assert worst < 1e-4


def test_channels_last_default_and_fallback():
    module = SegmentationModule(num_classes=3, contrast={"embed_dim": 8}, **TINY)
    assert module.channels_last
    conv = next(m for m in module.model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 64, 64)
    plain = SegmentationModule(num_classes=3, contrast={"embed_dim": 8}, channels_last=False, **TINY)
    plain.load_state_dict(module.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(module.eval().logits(x), plain.eval().logits(x), rtol=1e-4, atol=1e-4)

    class Viewing(nn.Module):  # a client model that cannot take a channels-last input
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y.view(y.shape[0], -1).view_as(y)

    with pytest.warns(UserWarning, match="channels-last"):
        fallback = SegmentationModule(model=Viewing(), contrast=None)
    assert not fallback.channels_last
    assert fallback.logits(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_validation_images_go_to_tensorboard():
    from types import SimpleNamespace

    from scalecontrast.engine.callbacks import ValidationImages

    class Writer:
        def __init__(self):
            self.images = {}

        def add_image(self, tag, image, step):
            self.images[tag] = (tuple(image.shape), step)

    writer = Writer()
    trainer = SimpleNamespace(loggers=[SimpleNamespace(experiment=writer)], sanity_checking=False,
                              is_global_zero=True, global_step=7)
    module = SimpleNamespace(num_classes=3, palette=[[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    batch = {"image": torch.rand(3, 3, 16, 20), "mask": torch.randint(0, 3, (3, 16, 20))}
    preds = torch.randint(0, 3, (3, 16, 20))
    ValidationImages(num_images=2).on_validation_batch_end(trainer, module, preds, batch, 0)
    assert writer.images == {"val_samples/0": ((3, 16, 60), 7), "val_samples/1": ((3, 16, 60), 7)}
    ValidationImages(num_images=2).on_validation_batch_end(trainer, module, preds, batch, 1)  # first batch only
    assert len(writer.images) == 2
