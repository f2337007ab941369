"""Loading a checkpoint never runs code it carries: a pickled payload and a class path outside the trusted
packages are refused by every command and by ``load_module`` unless the user passes the trust flag."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_cli import synthetic_args

from scalecontrast.cli import main
from scalecontrast.engine import UntrustedCheckpointError, load_module, read_checkpoint
from scalecontrast.engine.checkpoint import check_class_paths, stored_class_paths


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: the file appearing means code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[str], Path]:
    root = tmp_path_factory.mktemp("safety_run")
    args = synthetic_args(root)
    main(["fit", *args, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
          "--checkpoint.every_n_train_steps", "2"])
    return root, args, root / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def files(run, tmp_path_factory) -> dict[str, Path]:
    """``pickle``: a real checkpoint with a payload beside the weights; ``class_path``: a real checkpoint whose
    model is a class of a module (on a temporary path) that writes a marker when imported or built;
    ``legacy``: a real checkpoint holding a harmless object the weights-only unpickler refuses."""
    _, _, ckpt_path = run
    out = tmp_path_factory.mktemp("payloads")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    pickled = dict(ckpt, extra=_Payload(out / "MARKER_pickle"))
    torch.save(pickled, out / "pickle.ckpt")
    pkg = out / "pythonpath"
    pkg.mkdir()
    (pkg / "evilpkg.py").write_text(textwrap.dedent(f"""
        open({str(out / "MARKER_import")!r}, "w").close()
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                open({str(out / "MARKER_init")!r}, "w").close()
    """))
    hp = dict(ckpt["hyper_parameters"], model={"class_path": "evilpkg.Net", "init_args": {}}, head=None,
              backbone=None, taps=["a", "b"])
    torch.save(dict(ckpt, hyper_parameters=hp), out / "class_path.ckpt")
    torch.save(dict(ckpt, extra=Path("made/by/an/older/version")), out / "legacy.ckpt")
    return {"pickle": out / "pickle.ckpt", "class_path": out / "class_path.ckpt", "legacy": out / "legacy.ckpt",
            "pythonpath": pkg, "out": out}


def _markers(files) -> list[str]:
    return sorted(p.name for p in files["out"].glob("MARKER_*"))


def _commands(kind: str, ckpt: Path, run, tmp_path: Path) -> list[list[str]]:
    root, args, _ = run
    images = tmp_path / "images"
    if not images.exists():
        main(["data", "synthetic", "--root", str(images), "--num", "1", "--size", "64"])
    return [
        ["segment", "--ckpt_path", str(ckpt), "--input", str(images), "--output", str(tmp_path / "seg")],
        ["export", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "m.onnx"), "--height", "64", "--width", "64"],
        ["embed", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "t.png"), "--num_images", "2"],
        ["test", *args, "--ckpt_path", str(ckpt)],
        ["fit", *synthetic_args(tmp_path / f"fit_{kind}"), "--trainer.max_steps", "3", "--ckpt_path", str(ckpt)],
    ]


@pytest.mark.parametrize("kind", ["pickle", "class_path"])
def test_every_command_refuses_a_payload(kind, run, files, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(files["pythonpath"]))  # the class path could be imported if tried
    ckpt = files[kind]
    for argv in _commands(kind, ckpt, run, tmp_path):
        with pytest.raises(SystemExit) as info:
            main(argv)
        message = str(info.value.code)
        assert info.value.code not in (0, None) and message.startswith(f"scalecontrast {argv[0]}: "), argv[0]
        assert str(ckpt) in message and "--trust_checkpoint true" in message, (argv[0], message)
        assert _markers(files) == [], argv[0]
    with pytest.raises(UntrustedCheckpointError, match="trust=True"):
        load_module(ckpt)
    with pytest.raises(UntrustedCheckpointError):
        read_checkpoint(ckpt)
    assert _markers(files) == []


def test_class_path_refused_in_a_fresh_process(files, tmp_path):
    """The console script itself, with the payload's module importable through PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(files["pythonpath"]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "scalecontrast.cli", "export", "--ckpt_path", str(files["class_path"]),
                           "--output", str(tmp_path / "m.onnx")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "evilpkg.Net" in proc.stderr and str(files["class_path"]) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _markers(files) == []


def test_normal_and_trusted_legacy_checkpoints_still_serve(run, files, tmp_path, capsys):
    _, _, ckpt = run
    for argv in _commands("normal", ckpt, run, tmp_path):
        main(argv)
    capsys.readouterr()
    legacy = files["legacy"]
    with pytest.raises(UntrustedCheckpointError, match="PosixPath"):
        load_module(legacy)
    module = load_module(legacy, trust=True)
    assert module.num_classes > 0
    for argv in _commands("legacy", legacy, run, tmp_path / "legacy"):
        (tmp_path / "legacy").mkdir(exist_ok=True)
        main([*argv, "--trust_checkpoint", "true"])
    assert "test/mIoU" in capsys.readouterr().out
    assert _markers(files) == []


def test_weights_only_false_needs_the_trust_flag(run):
    root, args, ckpt = run
    with pytest.raises(SystemExit, match="--trust_checkpoint true"):
        main(["test", *args, "--ckpt_path", str(ckpt), "--weights_only", "false"])


def test_class_path_check_reads_nested_configs_and_imports_nothing():
    config = {"model": {"class_path": "transformers.SegformerForSemanticSegmentation",
                        "init_args": {"config": {"class_path": "transformers.SegformerConfig"}}},
              "other": [{"class_path": "somewhere_else.Thing"}]}
    assert [p for _, p in stored_class_paths(config)] == [
        "transformers.SegformerForSemanticSegmentation", "transformers.SegformerConfig", "somewhere_else.Thing"]
    with pytest.raises(UntrustedCheckpointError, match=r"somewhere_else\.Thing.*other\[0\]\.class_path"):
        check_class_paths(config, "f.ckpt")
    with pytest.raises(UntrustedCheckpointError, match="'Thing'"):
        check_class_paths({"class_path": "Thing"}, "f.ckpt")  # a bare name is resolved by importing: refused
    check_class_paths(config, "f.ckpt", trust=True)
    check_class_paths({"m": {"class_path": "torchvision.models.segmentation.fcn_resnet50"}}, "f.ckpt")
    assert "somewhere_else" not in sys.modules
