"""Multi-scale and cross-scale contrast inside a Hugging Face ``transformers.Trainer``.

:class:`ContrastiveTrainer` is a ``transformers.Trainer`` whose loss is the model's segmentation loss plus
``weight * (MS + CS)`` on the outputs of the model's submodules named by ``taps``::

    trainer = ContrastiveTrainer(model=model, taps=[f"segformer.stages.{i}" for i in range(4)],
                                 contrast={"weight": 1.0}, args=training_args, train_dataset=train_ds)
    trainer.train()
    trainer.save_model("out")  # the plain model: SegformerForSemanticSegmentation.from_pretrained("out")

The contrastive head (one projector per tap, see :class:`~scalecontrast.losses.ContrastiveHead`) lives beside
the model, never inside it: ``trainer.model`` and everything ``save_model`` writes are the model alone. The head
is trained by the Trainer's optimiser, placed on ``args.device``, its gradients averaged over processes under
DDP (``torchrun`` / ``accelerate launch``), and its weights saved in every Trainer checkpoint
(``checkpoint-N/contrastive_head.safetensors``) and restored by ``train(resume_from_checkpoint=...)``.

Needs the ``transformers`` extra: ``pip install 'scalecontrast[transformers]'`` (transformers + accelerate).
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

try:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from transformers import PreTrainedModel, Trainer, TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError("scalecontrast.integrations.transformers needs transformers and accelerate: "
                      "pip install 'scalecontrast[transformers]'") from err

from scalecontrast.engine.options import ContrastOptions, as_contrast_options
from scalecontrast.losses import ContrastiveHead, SegmentationLoss
from scalecontrast.models import model_logits, wrap_model

__all__ = ["ContrastiveTrainer", "ContrastiveHeadCheckpoint", "DEFAULT_WEIGHT", "HEAD_FILE"]

DEFAULT_WEIGHT = 1.0
"""``contrast["weight"]`` when not given: the weight the project's CamVid study chose on val (the paper uses 0.1;
see docs/results.md)."""

HEAD_FILE = "contrastive_head.safetensors"
"""The contrastive head's state (projectors, their BatchNorm statistics, the pixel memory) in a checkpoint folder."""

_DEFAULT_CONTRAST: Mapping[str, Any] = MappingProxyType({})


def _contrast_options(contrast: ContrastOptions | Mapping[str, Any] | None) -> ContrastOptions | None:
    if isinstance(contrast, Mapping):
        contrast = {"weight": DEFAULT_WEIGHT, **contrast}
    options = as_contrast_options(contrast)
    return options if options is not None and options.weight > 0 else None


def _model_ignore_index(model: nn.Module) -> int | None:
    """The ignore label of the model's own loss (transformers configs name it differently per model)."""
    config = getattr(model, "config", None)
    for key in ("semantic_loss_ignore_index", "loss_ignore_index"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def save_head(head: nn.Module, folder: str | os.PathLike) -> str:
    """Write ``head.state_dict()`` to ``folder/contrastive_head.safetensors`` (atomically); returns the path."""
    path = os.path.join(folder, HEAD_FILE)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    tmp = f"{path}.tmp"
    save_file(state, tmp, metadata={"format": "pt", "library": "scalecontrast"})
    os.replace(tmp, path)
    return path


def load_head(head: nn.Module, folder: str | os.PathLike) -> bool:
    """Load ``folder/contrastive_head.safetensors`` into ``head`` (on its device); ``False`` when the folder has
    no such file."""
    path = os.path.join(folder, HEAD_FILE)
    if not os.path.isfile(path):
        return False
    device = next(head.parameters()).device
    try:
        head.load_state_dict(load_file(path, device=str(device)))
    except Exception as err:  # noqa: BLE001 - safetensors and load_state_dict raise several types
        raise ValueError(f"cannot restore the contrastive head from {path}: {err}") from err
    return True


class ContrastiveHeadCheckpoint(TrainerCallback):
    """Saves the contrastive head next to each checkpoint the Trainer writes (``checkpoint-N/``)."""

    def __init__(self, head: nn.Module) -> None:
        self.head = head

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if os.path.isdir(folder):
                save_head(self.head, folder)
        return control


class ContrastiveTrainer(Trainer):
    """A ``transformers.Trainer`` that adds multi-scale and cross-scale supervised contrast to a semantic
    segmentation model's own loss.

    Loss per training step: the model's loss (``outputs.loss`` when the model computes one from ``labels``, e.g.
    SegFormer's CE on logits upsampled bilinearly to the label size; otherwise CE on the logits resized the same
    way) + ``weight * (MS + CS)`` on the tapped feature maps. Evaluation loss is the model's loss alone. Logged
    with Trainer's own logging, averaged over the steps since the last log and over processes: ``ce``,
    ``contrastive``, ``contrastive_scale_<s>``, the cross-scale terms, ``contrastive_weight``.

    Args:
        model: a segmentation model whose output has per-pixel ``logits`` ``(B, K, h, w)`` (transformers'
            ``SemanticSegmenterOutput``, a tensor, a dict with ``"out"``, ...), taking the batch's keys
            (``pixel_values``, ``labels``) as keyword arguments. ``model_init`` is not supported.
        *args: the positional arguments of ``transformers.Trainer`` after ``model`` (``args``, ...).
        taps: names of submodules (``dict(model.named_modules())``) whose ``(B, C, h, w)`` outputs are
            contrasted, any order; for SegFormer ``[f"segformer.stages.{i}" for i in range(4)]``.
        contrast: ``weight`` (default :data:`DEFAULT_WEIGHT`), ``warmup_steps`` (a linear ramp of the weight
            over the first optimiser steps), ``embed_dim`` and any option of
            :class:`~scalecontrast.losses.MultiScaleContrastiveLoss`; ``None`` (or weight 0) trains with the
            model's loss only, as a plain Trainer.
        ignore_index: the label that is never an anchor; default: the model's config
            (``semantic_loss_ignore_index``), else 255.
        probe_size: ``(h, w)`` of the zero image the taps' channels are found with (see
            :func:`scalecontrast.wrap_model`).
        **kwargs: ``transformers.Trainer`` keyword arguments. An optimiser given through ``optimizers`` gets the
            contrastive head's parameters added as new parameter groups (its schedule must be left to the Trainer:
            ``optimizers=(optimizer, None)``); ``optimizer_cls_and_kwargs`` works as in Trainer.

    Batches must hold the masks as ``labels`` ``(B, H, W)`` (class indices, the ignore label elsewhere).
    Not supported: DeepSpeed, FSDP, ``torch.nn.DataParallel`` (several GPUs without a distributed launcher: use
    ``torchrun`` or ``accelerate launch``), ``compute_loss_func``, label smoothing. Gradient clipping
    (``max_grad_norm``) applies to the model's parameters, as in Trainer; the projectors' gradients are not clipped.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *args: Any,
        taps: Sequence[str] | None = None,
        contrast: ContrastOptions | Mapping[str, Any] | None = _DEFAULT_CONTRAST,
        ignore_index: int | None = None,
        probe_size: tuple[int, int] = (64, 64),
        **kwargs: Any,
    ) -> None:
        if model is None or kwargs.get("model_init") is not None:
            raise ValueError("ContrastiveTrainer needs `model` (an instance; `model_init` is not supported: the "
                             "contrastive head is built from the model's feature maps)")
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError("ContrastiveTrainer computes the loss itself (the model's loss + the contrastive terms); "
                             "`compute_loss_func` is not supported")
        self.contrast_options = _contrast_options(contrast)
        own = _model_ignore_index(model)
        if ignore_index is not None and own is not None and ignore_index != own:
            raise ValueError(f"ignore_index={ignore_index} but the model's own loss ignores {own} (its config); "
                             "give the same label to both")
        self.ignore_index = int(ignore_index if ignore_index is not None else own if own is not None else 255)
        self.wrapped = None
        self.contrastive_head: ContrastiveHead | None = None
        if self.contrast_options is not None:
            if not taps:
                raise ValueError("ContrastiveTrainer: name the submodules to contrast with `taps` (for SegFormer "
                                 "[f'segformer.stages.{i}' for i in range(4)]), or pass contrast=None to train "
                                 "with the model's loss only")
            self.wrapped = wrap_model(model, list(taps), probe_size=probe_size)
            opts = self.contrast_options
            self.contrastive_head = ContrastiveHead(self.wrapped.feature_channels, embed_dim=opts.embed_dim,
                                                    ignore_index=self.ignore_index,
                                                    num_classes=int(self.wrapped.num_classes), **opts.loss_options)
            optimizer, scheduler = kwargs.get("optimizers") or (None, None)
            if optimizer is not None and scheduler is not None:
                raise ValueError("ContrastiveTrainer adds the contrastive head's parameters to the optimiser before "
                                 "the learning-rate schedule is built: pass optimizers=(optimizer, None) and the "
                                 "schedule through TrainingArguments (lr_scheduler_type), or use "
                                 "optimizer_cls_and_kwargs")
        accepts = inspect.signature(model.forward).parameters
        self.model_takes_labels = "labels" in accepts or any(p.kind is p.VAR_KEYWORD for p in accepts.values())
        self.seg_loss = SegmentationLoss(aux_weight=0.0, ignore_index=self.ignore_index)
        self.term_sums: dict[str, Tensor] = {}
        self.term_steps = 0
        super().__init__(model, *args, **kwargs)
        self.loss_is_scaled_for_ga = False  # a per-batch mean: Trainer divides it over accumulation steps
        if self.contrastive_head is not None:
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                raise ValueError("ContrastiveTrainer does not support DeepSpeed or FSDP (the contrastive head is "
                                 "kept beside the model); use DDP (torchrun or accelerate launch)")
            if self.args.n_gpu > 1:
                raise ValueError(f"{self.args.n_gpu} GPUs in one process (torch.nn.DataParallel) are not supported: "
                                 "launch one process per GPU with torchrun or accelerate launch (DDP)")
            if self.args.label_smoothing_factor:
                raise ValueError("ContrastiveTrainer does not support label_smoothing_factor")
            self.contrastive_head.to(self.args.device)
            self.add_callback(ContrastiveHeadCheckpoint(self.contrastive_head))

    @property
    def taps(self) -> list[str]:
        """The contrasted submodules, highest resolution first (``[]`` without contrast)."""
        return list(self.wrapped.taps) if self.wrapped is not None else []

    # ---- loss
    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Tensor | int | None = None):
        labels = inputs.get("labels")
        if not isinstance(labels, Tensor):
            raise ValueError(f"ContrastiveTrainer needs the masks as `labels` (B, H, W) in every batch (ignore label "
                             f"{self.ignore_index}); the batch has {sorted(inputs)}")
        call = dict(inputs) if self.model_takes_labels else {k: v for k, v in inputs.items() if k != "labels"}
        contrast = self.contrastive_head is not None and model.training
        if contrast:
            with self.wrapped.capture() as store:
                outputs = model(**call)
            missing = [t for t in self.wrapped.taps if t not in store]
            if missing:
                raise RuntimeError(f"the taps {missing} were not called in the model's forward")
        else:
            outputs = model(**call)
        own = outputs.get("loss") if isinstance(outputs, Mapping) else None
        logits = model_logits(outputs)[0]
        seg = own if isinstance(own, Tensor) else self.seg_loss.ce(logits, labels)
        loss = seg
        if contrast:
            head = self.contrastive_head.train()
            predictions = logits.detach().argmax(dim=1) if head.loss.hard_fraction > 0 else None
            features = [store[t] for t in self.wrapped.taps]
            terms = head(features, labels, predictions=predictions, return_terms=True)
            weight = self.contrast_options.weight_at(self.state.global_step)
            loss = seg + weight * terms["loss"]
            logged = {"ce": seg, "contrastive_weight": torch.tensor(weight)}
            logged.update({"contrastive" if k == "loss" else f"contrastive_{k}": v for k, v in terms.items()})
            self.record_terms(logged)
        return (loss, outputs) if return_outputs else loss

    def record_terms(self, terms: Mapping[str, Tensor]) -> None:
        """Add this step's terms to the sums that the next training log averages (no host synchronisation)."""
        for key, value in terms.items():
            value = value.detach().float().to(self.args.device)
            self.term_sums[key] = self.term_sums[key] + value if key in self.term_sums else value
        self.term_steps += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self.term_steps:  # a training log: the terms' means since the last one
            keys = sorted(self.term_sums)
            means = torch.stack([self.term_sums[k] for k in keys]) / self.term_steps
            means = self.accelerator.reduce(means, reduction="mean")  # every process logs: averaged over them
            logs.update({k: float(v) for k, v in zip(keys, means.tolist(), strict=True)})
            self.term_sums, self.term_steps = {}, 0
        super().log(logs, start_time)

    # ---- optimiser, gradients, resume
    def create_optimizer(self, model: nn.Module | None = None):
        optimizer = super().create_optimizer(model)
        head = self.contrastive_head
        if head is not None and optimizer is not None:
            held = {id(p) for group in optimizer.param_groups for p in group["params"]}
            params = [p for p in head.parameters() if p.requires_grad and id(p) not in held]
            decay = [p for p in params if p.ndim > 1]  # conv weights; BatchNorm and biases without weight decay
            rest = [p for p in params if p.ndim <= 1]
            for group, wd in ((decay, self.args.weight_decay), (rest, 0.0)):
                if group:
                    optimizer.add_param_group({"params": group, "weight_decay": wd})
        return optimizer

    def training_step(self, model: nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: Tensor | int | None = None) -> Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.contrastive_head is not None and self.accelerator.num_processes > 1 and self.accelerator.sync_gradients:
            _average_gradients(self.contrastive_head)  # DDP averages the model's; the head is outside it
        return loss

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None,
              ignore_keys_for_eval: list[str] | None = None, **kwargs: Any):
        head = self.contrastive_head
        folder = resume_from_checkpoint
        if folder is True:
            folder = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
        if not isinstance(folder, str | os.PathLike) or not os.path.isdir(folder):
            folder = None  # Trainer reports a missing checkpoint itself
        if folder is not None:
            self.restore_renamed_weights(folder)
        if head is not None:
            if folder is not None and not load_head(head, folder):
                warnings.warn(f"{folder} holds no {HEAD_FILE} (a checkpoint written without the contrastive head): "
                              "the projectors start from their initial weights", stacklevel=2)
            _broadcast(head)  # every process starts from the same projectors
        return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial,
                             ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)

    def restore_renamed_weights(self, folder: str | os.PathLike) -> bool:
        """Load the model weights of a checkpoint folder whose ``model.safetensors`` names them otherwise than the
        model's state dict; returns whether it did.

        ``save_pretrained`` of transformers 5 writes some models' weights under their original (legacy) names, e.g.
        SegFormer's ``segformer.encoder.block.*`` for ``segformer.stages.*``, and Trainer's resume loads the file by
        those names, so such a model would resume from its initial weights (seen with transformers 5.25). Loading the
        folder with the model class's ``from_pretrained`` maps the names."""
        path = os.path.join(folder, "model.safetensors")
        if not isinstance(self.model, PreTrainedModel) or not os.path.isfile(path):
            return False
        with safe_open(path, framework="pt") as f:
            stored = set(f.keys())
        if stored <= set(self.model.state_dict()):
            return False  # Trainer restores these itself
        loaded = type(self.model).from_pretrained(folder)
        self.model.load_state_dict(loaded.state_dict())
        return True


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


@torch.no_grad()
def _average_gradients(module: nn.Module) -> None:
    """Average the gradients of ``module`` over processes in one collective (a missing gradient counts as 0)."""
    if not _distributed():
        return
    params = [p for p in module.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    torch.distributed.all_reduce(flat)
    flat /= torch.distributed.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        mean = flat[offset:offset + n].view_as(p)
        if p.grad is None:
            p.grad = mean.clone()
        else:
            p.grad.copy_(mean)
        offset += n


@torch.no_grad()
def _broadcast(module: nn.Module) -> None:
    """Process 0's parameters and buffers on every process."""
    if not _distributed():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        torch.distributed.broadcast(tensor.data, src=0)
