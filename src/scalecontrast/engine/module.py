"""The LightningModule: model, contrastive head, losses, optimiser, schedule, metrics and evaluation."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import lightning as L
import torch
from jsonargparse import lazy_instance
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from scalecontrast.constants import IMAGENET_MEAN, IMAGENET_STD
from scalecontrast.engine.callbacks import tensorboard
from scalecontrast.engine.inference import predict
from scalecontrast.engine.metrics import SegmentationMetrics, format_scores
from scalecontrast.engine.optim import WarmupPolyLR, param_groups
from scalecontrast.engine.options import ContrastOptions, EvalOptions, as_contrast_options, as_eval_options
from scalecontrast.losses import ContrastiveHead, SegmentationLoss
from scalecontrast.models.layers import resize
from scalecontrast.models.layout import runs_channels_last

__all__ = ["SegmentationModule", "IMAGENET_MEAN", "IMAGENET_STD", "ScheduleCallable"]

# A learning-rate schedule given by class path: called with the optimiser and the run's number of steps,
# e.g. ``torch.optim.lr_scheduler.PolynomialLR`` or :class:`~scalecontrast.engine.optim.WarmupPolyLR`.
ScheduleCallable = Callable[[Optimizer, int], LRScheduler]


def _triple(v: Any, default: Sequence[float]) -> tuple[float, float, float]:
    if v is None:
        return tuple(float(x) for x in default)  # type: ignore[return-value]
    if isinstance(v, Tensor):
        v = v.flatten().tolist()
    v = [float(x) for x in v]
    if len(v) == 1:
        v = v * 3
    if len(v) != 3:
        raise ValueError(f"mean/std must have 3 values, got {v}")
    return v[0], v[1], v[2]


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """``module.trainer``, or ``None`` when the module is used outside a trainer."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class SegmentationModule(L.LightningModule):
    """Semantic segmentation of any model, with optional multi-scale / cross-scale contrastive supervision.

    The model is either ``model`` (any ``nn.Module``, e.g. given by class path on the command line;
    ``taps`` name the submodules whose outputs are contrasted, see :func:`scalecontrast.wrap_model`) or
    ``head`` + ``backbone`` (:func:`scalecontrast.create_model`). The contrastive head (projectors + loss,
    :class:`~scalecontrast.losses.ContrastiveHead`) sits beside the model, never inside it.

    Loss: ``CE + aux_weight * CE(aux) + contrast.weight * (MS + CS)``; ``contrast=None`` (or a weight of
    0) trains with cross-entropy only. Images enter in [0, 1] RGB ``(B, 3, H, W)`` and are normalised
    here with ``mean``/``std`` (default: the model's own ``mean``/``std`` attributes, else ImageNet's), so
    checkpoints and exported graphs take raw images.

    Args:
        model: a segmentation model (output: a tensor, a dict with ``"out"``, an object with ``.logits``
            or a tuple; see :func:`scalecontrast.models.wrap.model_logits`).
        taps: submodule names of ``model`` whose outputs the contrastive head takes.
        head, backbone, pretrained, model_kwargs: :func:`scalecontrast.models.create_model`.
        init_weights: weights loaded into the model when it is built, ``{submodule: source}`` with the
            submodule named as in the given model (``""``: all of it) and the source a checkpoint file
            or ``"lite0"`` (the offline EfficientNet-Lite0 ImageNet weights), e.g.
            ``{"encoder.model": "lite0"}`` for smp's ``Unet("tu-tf_efficientnet_lite0")``; see
            :func:`scalecontrast.models.load_weights`. ``load_module`` and the commands that evaluate a
            checkpoint do not load them again; resuming ``fit`` does, before the checkpoint replaces
            them (so ``--ckpt_path last`` on a folder without checkpoints starts from them too), and so
            does Lightning's ``load_from_checkpoint`` unless given ``init_weights=None``.
        num_classes: K; default: the data's (or, with ``model``, the model's).
        contrast: the contrastive options (:class:`~scalecontrast.engine.options.ContrastOptions`:
            ``weight``, ``warmup_steps``, ``embed_dim`` and the options of
            :class:`~scalecontrast.losses.MultiScaleContrastiveLoss`; a dict of them in Python).
        aux_weight, class_weights, ignore_index: the cross-entropy part.
        optimizer: called with the parameter groups (:func:`~scalecontrast.engine.optim.param_groups`: no
            weight decay on norms and position embeddings); by class path on the command line
            (``--model.optimizer torch.optim.AdamW --model.optimizer.lr 0.001``). Default: SGD, lr 0.01,
            momentum 0.9, weight decay 5e-4.
        lr_scheduler: called with the optimiser and the run's number of optimiser steps, stepped every step
            (e.g. ``torch.optim.lr_scheduler.PolynomialLR``). Default: poly with power 0.9
            (:class:`~scalecontrast.engine.optim.WarmupPolyLR`).
        evaluation: :class:`~scalecontrast.engine.options.EvalOptions` (TTA, sliding window).
        class_names, palette, class_groups: class metadata (taken from the data module when not
            given; saved in checkpoints). ``class_groups`` adds ``mIoU_<group>`` numbers.
        mean, std: input normalisation.
        channels_last: run the model (and the contrastive head) in the channels-last memory format, with
            the input batches converted to it (1.4-1.75x faster convolutions on CPU, the fast path of
            tensor cores on GPU; same outputs up to float rounding). A wrapped model that fails in that
            layout (e.g. a ``.view`` on a non-contiguous tensor) keeps the default one, with a warning.
        compile: ``torch.compile`` the model's forward (off by default: see the docs for when it pays).

    The guards of a run (non-finite losses, contrastive terms that stay 0, validation images, checkpoints)
    are callbacks: :mod:`scalecontrast.engine.callbacks`.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        taps: list[str] | None = None,
        head: str | None = None,
        backbone: str | None = None,
        num_classes: int | None = None,
        *,
        pretrained: bool | str = False,
        model_kwargs: dict[str, Any] | None = None,
        init_weights: dict[str, str] | None = None,
        contrast: ContrastOptions | None = lazy_instance(ContrastOptions),  # noqa: B008 - shown by the CLI
        aux_weight: float = 0.4,
        class_weights: list[float] | None = None,
        ignore_index: int = 255,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: ScheduleCallable | None = None,
        evaluation: EvalOptions = EvalOptions(),  # noqa: B008
        class_names: list[str] | None = None,
        palette: list[list[int]] | None = None,
        class_groups: dict[str, list[int]] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        with warnings.catch_warnings():  # a model instance is dropped from the hyper-parameters below
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
            self.save_hyperparameters()
            if isinstance(self.hparams.get("model"), nn.Module):
                # Built in Python: the weights are in the state dict, the instance is not pickled with them
                # (load_module(ckpt, model=fresh_instance)), nor kept for the loggers. From the command line
                # the hyper-parameters hold the model's class path and init args, and it is rebuilt from those.
                self.save_hyperparameters(ignore=["model"])
                self.hparams["model"] = None
                from scalecontrast.models import WrappedModel

                if isinstance(model, WrappedModel) and not taps:
                    self.hparams["taps"] = list(model.taps)  # so a fresh plain instance reloads with them
        self._model_class = _class_path(model) if isinstance(model, nn.Module) else None
        contrast = as_contrast_options(contrast)
        evaluation = as_eval_options(evaluation)
        # Checkpoints hold plain values (loadable with weights_only=True, re-parsed by the CLI): the CLI gives
        # optimizer / lr_scheduler as class_path + init_args; callables built in Python are not stored.
        self.hparams["contrast"] = None if contrast is None else contrast.to_dict()
        self.hparams["evaluation"] = evaluation.to_dict()
        for key in ("optimizer", "lr_scheduler"):
            if not isinstance(self.hparams.get(key), Mapping | None):
                self.hparams[key] = None
        self.contrast_options = contrast if contrast is not None and contrast.weight > 0 else None
        self.optimizer_factory, self.scheduler_factory, self.eval_options = optimizer, lr_scheduler, evaluation
        self.model = self._build_model(model, taps, head, backbone, num_classes, pretrained, model_kwargs)
        if init_weights:
            from scalecontrast.models import WrappedModel, load_weights

            init_weights = {str(k): str(v) for k, v in init_weights.items()}  # paths: plain strings in checkpoints
            self.hparams["init_weights"] = init_weights
            load_weights(self.model.model if isinstance(self.model, WrappedModel) else self.model, init_weights)
        if num_classes is None:
            num_classes = self.model.num_classes
        elif num_classes != self.model.num_classes:
            raise ValueError(f"num_classes={num_classes} but the model returns {self.model.num_classes} "
                             "classes; set num_classes to match (or leave it unset)")
        self.hparams["num_classes"] = int(num_classes)
        mean_t = _triple(mean if mean is not None else getattr(self.model, "mean", None), IMAGENET_MEAN)
        std_t = _triple(std if std is not None else getattr(self.model, "std", None), IMAGENET_STD)
        # Saved in the checkpoint's hyper-parameters so inference from a checkpoint alone works.
        self.hparams["mean"], self.hparams["std"] = list(mean_t), list(std_t)
        self.register_buffer("pixel_mean", torch.tensor(mean_t).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std_t).view(1, 3, 1, 1), persistent=False)
        self.seg_loss = SegmentationLoss(aux_weight=aux_weight, ignore_index=ignore_index,
                                         class_weights=class_weights)
        self.contrastive_head: ContrastiveHead | None = None
        if self.contrast_options is not None:
            channels = list(self.model.feature_channels)
            if not channels:
                raise ValueError("contrast is on but the model offers no feature maps: name the submodules "
                                 "to contrast with `taps` (e.g. --model.taps '[encoder.layer1, ...]'), or "
                                 "train with cross-entropy only (--model.contrast null)")
            self.contrastive_head = ContrastiveHead(channels, embed_dim=self.contrast_options.embed_dim,
                                                    ignore_index=ignore_index, num_classes=int(num_classes),
                                                    **self.contrast_options.loss_options)
        self.val_metrics = SegmentationMetrics(int(num_classes), ignore_index=ignore_index)
        self.test_metrics = SegmentationMetrics(int(num_classes), ignore_index=ignore_index)
        self.last_scores: dict[str, Tensor] = {}
        self.last_terms: dict[str, Tensor] = {}  # this step's loss terms, detached (read by the callbacks)
        self.channels_last = bool(channels_last) and runs_channels_last(self.model)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
            if self.contrastive_head is not None:
                self.contrastive_head.to(memory_format=torch.channels_last)
        # Not a registered submodule: the compiled wrapper shares the model's parameters, and the
        # checkpoint keys stay those of the model.
        object.__setattr__(self, "_compiled", torch.compile(self.model) if compile else None)

    @staticmethod
    def _build_model(model, taps, head, backbone, num_classes, pretrained, model_kwargs) -> nn.Module:
        from scalecontrast.models import SegmentationModel, WrappedModel, create_model, wrap_model

        if model is not None:
            if head is not None or backbone is not None:
                raise ValueError("give either `model` or `head` + `backbone`, not both")
            if not isinstance(model, nn.Module):
                raise TypeError(f"model must be an nn.Module, got {type(model).__name__} (on the command line: "
                                "class_path + init_args)")
            if isinstance(model, SegmentationModel | WrappedModel):
                if taps:
                    raise ValueError("taps are for a plain model; this model already returns its features")
                return model
            return wrap_model(model, list(taps or []))
        if taps:
            raise ValueError("taps name submodules of `model`; models built from head + backbone return "
                             "their features already")
        if head is None or backbone is None:
            raise ValueError("give a model: `model` (any nn.Module, + `taps` for contrast) or `head` + "
                             "`backbone` (e.g. head='fpn', backbone='tf_efficientnet_lite0')")
        if num_classes is None:
            raise ValueError("num_classes is needed to build a model from head + backbone (the command line "
                             "takes it from the data)")
        return create_model(head, backbone, int(num_classes), pretrained=pretrained, **(model_kwargs or {}))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets load_module name the class to pass when the model was built in Python.
        checkpoint["scalecontrast"] = {"model_class": self._model_class or _class_path(self.model)}

    # ----------------------------------------------------------------------------------------
    # metadata
    @property
    def num_classes(self) -> int:
        return int(self.hparams.num_classes)

    @property
    def class_names(self) -> list[str]:
        names = self.hparams.get("class_names")
        return list(names) if names else [f"class_{i}" for i in range(self.num_classes)]

    @property
    def palette(self) -> list[list[int]]:
        pal = self.hparams.get("palette")
        if pal:
            return [list(map(int, c)) for c in pal]
        gen = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (self.num_classes, 3), generator=gen).tolist()

    def setup(self, stage: str) -> None:
        dm = getattr(attached_trainer(self), "datamodule", None)
        classes = getattr(dm, "classes", None)
        if classes is not None:
            if len(classes) != self.num_classes:
                if self.hparams.get("head") is not None:
                    fix = f"set --model.num_classes {len(classes)} (or leave it unset: it follows the data)"
                else:
                    fix = ("build the model with that many classes (its own argument, e.g. "
                           f"--model.model.init_args.classes {len(classes)} for segmentation_models_pytorch)")
                raise ValueError(f"the model returns {self.num_classes} classes but the data has {len(classes)} "
                                 f"({', '.join(map(str, list(classes)[:5]))}, ...): {fix}; a trained checkpoint "
                                 "is scored on data with the classes it was trained on")
            if not self.hparams.get("class_names"):
                self.hparams["class_names"] = [str(c) for c in classes]
            palette = getattr(dm, "palette", None)
            if not self.hparams.get("palette") and palette is not None:
                self.hparams["palette"] = [[int(v) for v in c] for c in palette]
            groups = getattr(dm, "class_groups", None)
            if self.hparams.get("class_groups") is None and groups:
                self.hparams["class_groups"] = groups

    # ----------------------------------------------------------------------------------------
    # forward
    def normalize(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> normalised with ``mean``/``std``."""
        return (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)

    def forward(self, images: Tensor):
        """``images (B, 3, H, W)`` in [0, 1] -> the model's ``SegmentationOutput``."""
        x = self.normalize(images)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self._compiled or self.model)(x)

    def logits(self, images: Tensor) -> Tensor:
        """``images (B, 3, H, W)`` in [0, 1] -> logits ``(B, K, H, W)``."""
        return resize(self(images).logits, images.shape[-2:])

    @torch.no_grad()
    def embeddings(self, images: Tensor, *, source: Literal["projector", "features"] = "projector") -> list[Tensor]:
        """Per-scale maps ``[(B, C, h_s, w_s)]`` (highest resolution first), as in the module's current
        mode (call ``.eval()`` first for inference-mode statistics).

        ``source="features"``: the model's feature maps (``model(x).features``; also for a model trained
        without the contrastive head, e.g. the CE twin of a contrastive run).
        ``source="projector"``: those maps through the contrastive head's projectors.
        """
        if source not in ("projector", "features"):
            raise ValueError(f"source must be 'projector' or 'features', got {source!r}")
        features = self(images).features
        if not features:
            raise ValueError(f"{type(self.model).__name__} offers no feature maps (a wrapped model without taps)")
        if source == "features":
            return [f.float() for f in features]
        if self.contrastive_head is None:
            raise ValueError("this module has no contrastive head (trained with cross-entropy only); "
                             "use source='features'")
        return [e.float() for e in self.contrastive_head.project(features)]

    def predict_probs(self, images: Tensor, *, out_size: Sequence[int] | None = None,
                      scales: Sequence[float] | None = None, flip: bool | None = None,
                      crop_size: Sequence[int] | None = None, stride: Sequence[int] | None = None) -> Tensor:
        """Evaluation-time probabilities ``(B, K, *out_size)`` with the configured (or given) TTA."""
        ev = self.eval_options
        return predict(
            self.logits, images,
            scales=tuple(scales if scales is not None else ev.scales),
            flip=bool(ev.flip if flip is None else flip),
            crop_size=crop_size if crop_size is not None else ev.crop_size,
            stride=stride if stride is not None else ev.stride,
            out_size=out_size,
        )

    # ----------------------------------------------------------------------------------------
    # training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        images, masks = batch["image"], batch["mask"]
        out = self(images)
        seg = self.seg_loss(out.logits, masks, out.aux_logits)
        loss = seg["loss"]
        terms = {k: v.detach() for k, v in seg.items() if k != "loss"}
        if self.contrastive_head is not None:
            predictions = out.logits.detach().argmax(dim=1) if self.contrastive_head.loss.hard_fraction > 0 else None
            contrast = self.contrastive_head(out.features, masks, predictions=predictions, return_terms=True)
            weight = self.contrastive_weight_at(self.global_step)
            loss = loss + weight * contrast["loss"]
            terms["contrastive_weight"] = torch.as_tensor(weight)
            for k, v in contrast.items():
                terms["contrastive" if k == "loss" else f"contrastive_{k}"] = v.detach()
        terms["loss"] = loss.detach()
        self.last_terms = terms
        bs = images.shape[0]
        self.log("train/loss", terms["loss"], on_step=True, on_epoch=False, prog_bar=True, batch_size=bs)
        if self.logger_writes_now():
            # Each self.log call costs about a millisecond of Lightning's bookkeeping; the ~15 terms go to it
            # only on the steps its loggers write (every trainer.log_every_n_steps), not on every step.
            logs = {f"train/{k}": v for k, v in terms.items() if k != "loss"}
            trainer = attached_trainer(self)
            if trainer is not None and isinstance(opt := self.optimizers(use_pl_optimizer=False), Optimizer):
                logs["train/lr"] = torch.as_tensor(float(opt.param_groups[0]["lr"]))
            self.log_dict(logs, on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def logger_writes_now(self) -> bool:
        """Whether the trainer's loggers write this training step's values (Lightning writes every
        ``log_every_n_steps`` optimiser steps and when training stops); ``True`` outside a trainer."""
        trainer = attached_trainer(self)
        if trainer is None:
            return True
        return (self.global_step + 1) % max(int(trainer.log_every_n_steps), 1) == 0 or bool(trainer.should_stop)

    def contrastive_weight_at(self, step: int) -> float:
        """``contrast.weight``, ramped linearly from 0 over the first ``contrast.warmup_steps``."""
        return 0.0 if self.contrast_options is None else self.contrast_options.weight_at(step)

    def configure_optimizers(self):
        steps = self.trainer.estimated_stepping_batches
        return self.configure_optimizers_for(int(steps) if steps != float("inf") else 1)

    def configure_optimizers_for(self, total_steps: int) -> dict[str, Any]:
        """The optimiser over the model and the contrastive head (:func:`~scalecontrast.engine.optim.param_groups`)
        and its learning-rate schedule over ``total_steps`` optimiser steps, stepped every step."""
        trainable = nn.ModuleList([m for m in (self.model, self.contrastive_head) if m is not None])
        groups = param_groups(trainable)
        for name, given in (("optimizer", self.optimizer_factory), ("lr_scheduler", self.scheduler_factory)):
            if isinstance(given, Mapping):  # settings read back from a checkpoint (load_module), not a callable
                raise TypeError(f"{name} is the stored setting {given}, not a callable: to train this module, "
                                f"give {name} as one (e.g. functools.partial(torch.optim.SGD, lr=0.01)) or resume "
                                "through the command line (fit --ckpt_path)")
        if self.optimizer_factory is None:
            opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9, weight_decay=5e-4)
        else:
            opt = self.optimizer_factory(groups)
        make = self.scheduler_factory or WarmupPolyLR
        sched = make(opt, int(total_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # ----------------------------------------------------------------------------------------
    # evaluation
    def _eval_step(self, batch: dict[str, Any], metrics: SegmentationMetrics) -> Tensor:
        images, masks = batch["image"], batch["mask"]
        probs = self.predict_probs(images, out_size=masks.shape[-2:])
        preds = probs.argmax(dim=1)
        metrics.update(preds, masks)
        return preds

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Updates the metrics; returns the predictions ``(B, H, W)`` (for :class:`ValidationImages`)."""
        return self._eval_step(batch, self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """``{"pred": (B, H, W) class indices, "stem": names}`` with the configured TTA."""
        images = batch["image"] if isinstance(batch, dict) else batch
        size = batch["mask"].shape[-2:] if isinstance(batch, dict) and "mask" in batch else None
        pred = self.predict_probs(images, out_size=size).argmax(dim=1)
        return {"pred": pred, "stem": batch.get("stem") if isinstance(batch, dict) else None}

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._end_eval("test", self.test_metrics)

    def _end_eval(self, prefix: str, metrics: SegmentationMetrics) -> None:
        if self.trainer.sanity_checking:
            metrics.reset()
            return
        scores = metrics.scores(self.hparams.get("class_groups"))
        metrics.reset()
        self.last_scores = {k: v.detach().cpu() for k, v in scores.items()}
        summary = {f"{prefix}/{k}": v for k, v in scores.items() if k != "iou"}
        for k, v in summary.items():
            # already summed over processes by torchmetrics; the mean of equal values is a no-op
            self.log(k, v.to(self.device), prog_bar=k.endswith("/mIoU"), sync_dist=True)
        tb = tensorboard(self.trainer)
        if tb is not None and self.trainer.is_global_zero:
            for name, v in zip(self.class_names, scores["iou"].tolist(), strict=False):
                if v == v:
                    tb.add_scalar(f"{prefix}_iou/{name}", v, self.global_step)
        fn = getattr(self.trainer.state.fn, "value", str(self.trainer.state.fn))
        if fn in ("validate", "test") and self.trainer.is_global_zero:
            title = f"{prefix} results ({self.num_classes} classes)"
            print("\n" + format_scores(scores, self.class_names, title=title), flush=True)
