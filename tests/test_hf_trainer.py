"""ContrastiveTrainer: MS+CS inside a transformers.Trainer, on a tiny SegFormer built from its config (CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

transformers = pytest.importorskip("transformers", reason="the transformers extra (in the dev extra) is not installed")
pytest.importorskip("accelerate", reason="the transformers extra (in the dev extra) is not installed")

from transformers import SegformerConfig, SegformerForSemanticSegmentation, TrainingArguments  # noqa: E402

from scalecontrast.integrations.transformers import HEAD_FILE, ContrastiveTrainer  # noqa: E402

TAPS = [f"segformer.stages.{i}" for i in range(4)]
SIZE = 128  # the deepest stage (stride 32) is 4x4: two classes of 8 pixels each pass min_views=5


def tiny_segformer(seed: int = 0) -> SegformerForSemanticSegmentation:
    torch.manual_seed(seed)
    config = SegformerConfig(num_channels=3, num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1],
                             hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2],
                             decoder_hidden_size=16, num_labels=3, semantic_loss_ignore_index=255)
    return SegformerForSemanticSegmentation(config)


class Halves(Dataset):
    """Images whose left half is class 0 and right half class 1 or 2, a stripe of ignore (255) between;
    every class has 8 labelled pixels at stride 32."""

    def __init__(self, n: int = 8) -> None:
        gen = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(n):
            labels = torch.zeros(SIZE, SIZE, dtype=torch.long)
            labels[:, SIZE // 2:] = 1 + i % 2
            labels[:, SIZE // 2 - 3: SIZE // 2] = 255  # the stride-32 grid (columns 0, 32, 64, 96) misses it
            image = torch.rand(3, SIZE, SIZE, generator=gen) * 0.2 + labels.clamp(max=3).float()[None] / 4
            self.items.append({"pixel_values": image, "labels": labels})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


def training_args(out: Path, **kw) -> TrainingArguments:
    base = dict(output_dir=str(out), per_device_train_batch_size=2, learning_rate=1e-3, max_steps=3,
                logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
                disable_tqdm=True, seed=0)
    base.update(kw)
    return TrainingArguments(**base)


def make_trainer(out: Path, model=None, **kw) -> ContrastiveTrainer:
    contrast = kw.pop("contrast", {"weight": 1.0, "max_views": 50, "max_total": 400})
    return ContrastiveTrainer(model=model or tiny_segformer(), taps=TAPS, contrast=contrast,
                              args=training_args(out, **kw), train_dataset=Halves())


def test_segformer_taps_are_its_stages(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=1)
    assert trainer.taps == TAPS
    assert trainer.contrastive_head.in_channels == [8, 16, 24, 32]


def test_trains_projectors_and_logs_every_term(tmp_path):
    trainer = make_trainer(tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.contrastive_head.state_dict().items()}
    grads = []
    trainer.contrastive_head.projectors[3][0].weight.register_hook(lambda g: grads.append(g.abs().sum().item()))
    trainer.train()
    assert grads and all(g > 0 for g in grads), grads  # the deepest projector gets a gradient every step
    after = trainer.contrastive_head.state_dict()
    for i in range(4):
        key = f"projectors.{i}.0.weight"
        assert not torch.equal(before[key], after[key]), f"projector {i} did not change"
    # the head is in the optimiser, with weight decay on its conv weights only
    held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in held for p in trainer.contrastive_head.parameters())
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3
    for entry in logs:
        for key in ("ce", "contrastive", "contrastive_scale_0", "contrastive_scale_3", "contrastive_weight"):
            assert key in entry and entry[key] == entry[key], (key, entry)  # present and not NaN
        assert torch.isfinite(torch.tensor(entry["loss"]))
        assert entry["contrastive"] > 0 and entry["contrastive_weight"] == 1.0
        # the Trainer's logged loss is this step's total
        assert entry["loss"] == pytest.approx(entry["ce"] + entry["contrastive"], rel=1e-4)
    assert any(k.startswith("contrastive_") and "scale_" not in k and k != "contrastive_weight" for k in logs[0])


def test_ce_term_is_the_models_own_loss(tmp_path):
    """SegFormer's own loss (logits at 1/4, upsampled bilinearly, CE ignoring 255) is the trainer's CE term;
    a model without a loss of its own gets the same CE from the trainer."""
    model = tiny_segformer().eval()
    batch = Halves(2)[0]
    x, y = batch["pixel_values"][None], batch["labels"][None]
    with torch.no_grad():
        out = model(pixel_values=x, labels=y)
        assert out.logits.shape[-1] == SIZE // 4
        trainer = make_trainer(tmp_path, model=model, max_steps=1)
        assert torch.allclose(trainer.seg_loss.ce(out.logits, y), out.loss, atol=1e-6)


def test_save_model_writes_the_plain_model(tmp_path):
    trainer = make_trainer(tmp_path / "run")
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    files = sorted(p.name for p in (tmp_path / "final").iterdir())
    assert "model.safetensors" in files and "config.json" in files and HEAD_FILE not in files
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "final" / "model.safetensors")).keys()
    assert not any("projector" in k or "contrastive" in k for k in keys)
    model = trainer.model.eval()
    # no hooks left behind: the same per-module hooks as a fresh model after one forward (transformers' own)
    fresh = tiny_segformer().eval()
    with torch.no_grad():
        fresh(pixel_values=torch.rand(1, 3, 64, 64))
    hooks = {n: len(m._forward_hooks) for n, m in model.named_modules()}
    assert hooks == {n: len(m._forward_hooks) for n, m in fresh.named_modules()}
    loaded = SegformerForSemanticSegmentation.from_pretrained(str(tmp_path / "final")).eval()
    x = torch.rand(2, 3, 96, 64)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, loaded(pixel_values=x).logits)


class Snapshot(transformers.TrainerCallback):
    """The head's and the model's state when training begins (after a resume has loaded them)."""

    def __init__(self, trainer: ContrastiveTrainer) -> None:
        self.trainer, self.head, self.model = trainer, None, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.head = {k: v.clone() for k, v in self.trainer.contrastive_head.state_dict().items()}
        self.model = {k: v.clone() for k, v in self.trainer.model.state_dict().items()}


def test_resume_restores_the_projectors_and_the_model(tmp_path):
    out = tmp_path / "run"
    first = make_trainer(out, max_steps=2, save_strategy="steps", save_steps=2)
    first.train()
    head = {k: v.clone() for k, v in first.contrastive_head.state_dict().items()}
    model = {k: v.clone() for k, v in first.model.state_dict().items()}
    ckpt = out / "checkpoint-2"
    assert (ckpt / HEAD_FILE).is_file()
    from safetensors import safe_open

    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        assert not any("projector" in k for k in f.keys())  # the checkpoint's model file is the plain model
    # a fresh trainer (other initial weights) resumed from the last checkpoint
    second = make_trainer(out, model=tiny_segformer(seed=1), max_steps=2, save_strategy="no")
    snap = Snapshot(second)
    second.add_callback(snap)
    assert not torch.equal(second.contrastive_head.state_dict()["projectors.0.0.weight"], head["projectors.0.0.weight"])
    second.train(resume_from_checkpoint=True)
    for key, value in head.items():
        assert torch.equal(snap.head[key], value), key
    for key, value in model.items():
        assert torch.equal(snap.model[key], value), key


def test_resume_from_a_checkpoint_without_head_warns(tmp_path):
    out = tmp_path / "run"
    make_trainer(out, max_steps=1, save_strategy="steps", save_steps=1).train()
    (out / "checkpoint-1" / HEAD_FILE).unlink()
    with pytest.warns(UserWarning, match="holds no contrastive_head.safetensors"):
        make_trainer(out, max_steps=1).train(resume_from_checkpoint=str(out / "checkpoint-1"))


def test_contrast_none_is_a_plain_trainer(tmp_path):
    trainer = ContrastiveTrainer(model=tiny_segformer(), taps=None, contrast=None,
                                 args=training_args(tmp_path, max_steps=1), train_dataset=Halves(2))
    assert trainer.contrastive_head is None
    trainer.train()
    assert [k for k in trainer.state.log_history[0] if k.startswith("contrastive")] == []


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="taps"):
        ContrastiveTrainer(model=tiny_segformer(), args=training_args(tmp_path))
    with pytest.raises(ValueError, match="unknown contrast option"):
        ContrastiveTrainer(model=tiny_segformer(), taps=TAPS, contrast={"temprature": 0.1},
                           args=training_args(tmp_path))
    with pytest.raises(ValueError, match="no submodule named"):
        ContrastiveTrainer(model=tiny_segformer(), taps=["segformer.encoder.block.0"], args=training_args(tmp_path))
    with pytest.raises(ValueError, match="ignores 255"):
        ContrastiveTrainer(model=tiny_segformer(), taps=TAPS, ignore_index=0, args=training_args(tmp_path))
