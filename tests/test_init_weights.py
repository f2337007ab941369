"""Weights into a submodule of any model (``init_weights``): the offline Lite0 weights into smp's
Unet encoder, and clear errors."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch

from scalecontrast.engine import SegmentationModule
from scalecontrast.models import lite0_state_dict, load_weights


def unet():
    torch.manual_seed(0)
    return smp.Unet("tu-tf_efficientnet_lite0", encoder_weights=None, classes=3)


def test_lite0_into_smp_unet_encoder():
    net = unet()
    ref = lite0_state_dict()
    before = net.decoder.state_dict()
    load_weights(net, {"encoder.model": "lite0"})
    own = net.encoder.model.state_dict()
    assert torch.equal(own["conv_stem.weight"], ref["conv_stem.weight"])
    assert torch.equal(own["blocks.6.0.conv_pwl.weight"], ref["blocks.6.0.conv_pwl.weight"])
    assert torch.equal(own["bn1.running_var"], ref["bn1.running_var"])
    after = net.decoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing else touched


def test_package_file_is_renamed(tmp_path):
    from scalecontrast.models.weights import lite0_checkpoint_path

    net = unet()
    load_weights(net, {"encoder.model": lite0_checkpoint_path()})
    assert torch.equal(net.encoder.model.conv_stem.weight, lite0_state_dict()["conv_stem.weight"])


def test_errors_name_the_key_and_file(tmp_path):
    net = unet()
    with pytest.raises(ValueError, match="no submodule named 'encoder.modle'"):
        load_weights(net, {"encoder.modle": "lite0"})
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        load_weights(net, {"encoder.model": str(tmp_path / "nothere.pth")})
    bad = tmp_path / "other.pth"
    torch.save({"conv_stem.weight": torch.zeros(32, 3, 3, 3)}, bad)
    with pytest.raises(KeyError, match="other.pth does not fit encoder.model"):
        load_weights(net, {"encoder.model": str(bad)})
    wrong = tmp_path / "wrong.pth"
    torch.save({k: torch.zeros(1) for k in net.encoder.model.state_dict()}, wrong)
    with pytest.raises(RuntimeError, match="wrong.pth does not fit encoder.model"):
        load_weights(net, {"encoder.model": str(wrong)})
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"init_weights\['encoder.model'\]: cannot read weights from .*corrupt.pth"):
        load_weights(net, {"encoder.model": str(corrupt)})


def test_module_loads_them(tmp_path):
    taps = ["decoder.blocks.2", "decoder.blocks.1", "decoder.blocks.0", "encoder.model.blocks.6"]
    module = SegmentationModule(model=unet(), taps=taps, init_weights={"encoder.model": "lite0"})
    assert torch.equal(module.model.model.encoder.model.conv_stem.weight, lite0_state_dict()["conv_stem.weight"])
    assert module.hparams["init_weights"] == {"encoder.model": "lite0"}
    assert module.model.feature_channels == [64, 128, 256, 320]


def test_a_path_is_kept_as_a_string(tmp_path):
    from scalecontrast.models.weights import lite0_checkpoint_path

    src = tmp_path / "lite0.pth"
    src.write_bytes(open(lite0_checkpoint_path(), "rb").read())
    module = SegmentationModule(model=unet(), taps=["decoder.blocks.2"], init_weights={"encoder.model": src})
    assert module.hparams["init_weights"] == {"encoder.model": str(src)}  # loadable with weights_only=True
