"""The LightningModule: model, losses, optimiser, schedule, metrics and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor, nn

from scalecontrast.constants import IMAGENET_MEAN, IMAGENET_STD
from scalecontrast.engine.inference import predict, resize_logits
from scalecontrast.engine.metrics import SegmentationMetrics, format_scores
from scalecontrast.engine.optim import build_optimizer, lr_lambda
from scalecontrast.losses import MultiScaleContrastiveLoss, SegmentationLoss

__all__ = ["SegmentationModule", "IMAGENET_MEAN", "IMAGENET_STD"]


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


class SegmentationModule(L.LightningModule):
    """Semantic segmentation with optional multi-scale / cross-scale contrastive supervision.

    Loss: ``CE + aux_weight * CE(aux) + contrastive_weight * (MS + CS)``; the contrastive part
    is on when ``contrastive`` is true and ``contrastive_weight > 0``. Images enter in [0, 1]
    RGB ``(B, 3, H, W)`` and are normalised here with ``mean``/``std`` (default: the model's own
    ``mean``/``std`` attributes, else ImageNet's), so checkpoints and exported graphs take raw
    images.

    Args:
        head, backbone, num_classes, pretrained, contrastive, embed_dim, model_kwargs:
            passed to :func:`scalecontrast.models.create_model`.
        contrastive_weight: the factor on the contrastive losses (0.1 in the paper).
        scale_weights ... cross_image: :class:`scalecontrast.losses.MultiScaleContrastiveLoss`.
        contrastive_warmup_steps: ramp ``contrastive_weight`` linearly from 0 over this many
            steps (0: full weight from the first step, as in the paper).
        project_sampled: run the projectors' last 1x1 conv on the sampled pixels only (same loss
            and gradients, cheaper; models built by ``create_model``).
        aux_weight, class_weights, ignore_index: the cross-entropy part.
        optimizer, lr, weight_decay, momentum, nesterov, betas: SGD or AdamW; norms and position
            embeddings get no weight decay.
        schedule, power, warmup_steps, warmup_ratio, min_lr_ratio, max_steps: per-iteration LR
            schedule; ``max_steps`` defaults to the trainer's estimated number of steps.
        eval_scales, eval_flip, eval_crop_size, eval_stride: evaluation (multi-scale + flip TTA,
            sliding window); logits are resized to the label size.
        class_names, palette, class_groups: class metadata (taken from the data module when
            not given; saved in checkpoints). ``class_groups`` adds ``mIoU_<group>`` numbers.
        log_images: how many validation predictions to send to TensorBoard per validation.
    """

    def __init__(
        self,
        head: str = "fpn",
        backbone: str = "tf_efficientnet_lite0",
        num_classes: int = 11,
        *,
        pretrained: bool | str = False,
        contrastive: bool = True,
        embed_dim: int = 256,
        model_kwargs: dict[str, Any] | None = None,
        contrastive_weight: float = 0.1,
        scale_weights: list[float] = [1.0, 0.7, 0.4, 0.1],  # noqa: B006 - jsonargparse shows the default
        temperature: float = 0.1,
        cross_scale: bool = True,
        cross_scale_temperature: float = 0.1,
        cross_scale_weights: list[float] = [1.0, 1.0],  # noqa: B006
        min_views: int = 5,
        max_views: int = 2500,
        max_total: int = 10000,
        detach_low_res: bool = False,
        gather_distributed: bool = False,
        cross_image: bool = True,
        contrastive_warmup_steps: int = 0,
        project_sampled: bool = True,
        aux_weight: float = 0.4,
        class_weights: list[float] | None = None,
        ignore_index: int = 255,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.01,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        nesterov: bool = False,
        betas: list[float] = [0.9, 0.999],  # noqa: B006
        schedule: Literal["poly", "warmup_poly", "constant"] = "poly",
        power: float = 0.9,
        warmup_steps: int = 0,
        warmup_ratio: float = 1e-6,
        min_lr_ratio: float = 0.0,
        max_steps: int | None = None,
        eval_scales: list[float] = [1.0],  # noqa: B006
        eval_flip: bool = False,
        eval_crop_size: list[int] | None = None,
        eval_stride: list[int] | None = None,
        class_names: list[str] | None = None,
        palette: list[list[int]] | None = None,
        class_groups: dict[str, list[int]] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        log_images: int = 4,
    ) -> None:
        super().__init__()
        from scalecontrast.models import create_model

        self.save_hyperparameters()
        if contrastive_warmup_steps < 0:
            raise ValueError(f"contrastive_warmup_steps must be >= 0, got {contrastive_warmup_steps}")
        use_contrast = bool(contrastive) and contrastive_weight > 0
        kwargs = {"project_sampled": bool(project_sampled), **(model_kwargs or {})}  # model_kwargs win
        self.model = create_model(head, backbone, num_classes, pretrained=pretrained,
                                  contrastive=use_contrast, embed_dim=embed_dim, **kwargs)
        mean_t = _triple(mean if mean is not None else getattr(self.model, "mean", None), IMAGENET_MEAN)
        std_t = _triple(std if std is not None else getattr(self.model, "std", None), IMAGENET_STD)
        # Saved in the checkpoint's hyper-parameters so inference from a checkpoint alone works.
        self.hparams["mean"], self.hparams["std"] = list(mean_t), list(std_t)
        self.register_buffer("pixel_mean", torch.tensor(mean_t).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std_t).view(1, 3, 1, 1), persistent=False)
        self.seg_loss = SegmentationLoss(aux_weight=aux_weight, ignore_index=ignore_index,
                                         class_weights=class_weights)
        self.contrastive_loss: nn.Module | None = None
        if use_contrast:
            self.contrastive_loss = MultiScaleContrastiveLoss(
                scale_weights=tuple(scale_weights), temperature=temperature, cross_scale=cross_scale,
                cross_scale_temperature=cross_scale_temperature,
                cross_scale_weights=tuple(cross_scale_weights), ignore_index=ignore_index,
                min_views=min_views, max_views=max_views, max_total=max_total,
                detach_low_res=detach_low_res, gather_distributed=gather_distributed, cross_image=cross_image)
        self.val_metrics = SegmentationMetrics(num_classes, ignore_index=ignore_index)
        self.test_metrics = SegmentationMetrics(num_classes, ignore_index=ignore_index)
        self.last_scores: dict[str, Tensor] = {}

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
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        classes = getattr(dm, "classes", None)
        if classes is not None:
            if len(classes) != self.num_classes:
                raise ValueError(f"model.num_classes={self.num_classes} but the data has {len(classes)} "
                                 f"classes ({list(classes)[:5]}...); set --model.num_classes {len(classes)}")
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
        return self.model(self.normalize(images))

    def logits(self, images: Tensor) -> Tensor:
        """``images (B, 3, H, W)`` in [0, 1] -> logits ``(B, K, H, W)``."""
        return resize_logits(self(images).logits, images.shape[-2:])

    def model_has_projectors(self) -> bool:
        """Whether the model emits contrastive embeddings (it was built with projectors)."""
        return bool(getattr(self.model, "num_scales", 0) or getattr(self.model, "projectors", None))

    @torch.no_grad()
    def embeddings(self, images: Tensor, *, source: Literal["projector", "features"] = "projector") -> list[Tensor]:
        """Per-scale maps ``[(B, C, h_s, w_s)]`` (highest resolution first) with inference-mode
        normalisation and dropout; the module's train/eval state is restored.

        ``source="projector"``: the projector embeddings the contrastive loss sees.
        ``source="features"``: the head's maps the projectors take (also for a model trained
        without projectors, e.g. the CE twin of a contrastive run).
        """
        was_training = self.training
        if source == "features":
            if not hasattr(self.model, "forward_features"):
                raise ValueError(f"{type(self.model).__name__} does not expose forward_features; "
                                 "use source='projector'")
            self.eval()
            try:
                return [f.float() for f in self.model.forward_features(self.normalize(images))]
            finally:
                self.train(was_training)
        if source != "projector":
            raise ValueError(f"source must be 'projector' or 'features', got {source!r}")
        self.train()
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) or "Drop" in type(m).__name__:
                m.eval()  # running statistics; no dropout / drop-path
        try:
            out = self(images)
            if out.projections is None:
                return [e.float() for e in out.embeddings]
            return [project(e.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).float()  # rows = pixels
                    for project, e in zip(out.projections, out.projector_maps, strict=True)]
        finally:
            self.train(was_training)

    def predict_probs(self, images: Tensor, *, out_size: Sequence[int] | None = None,
                      scales: Sequence[float] | None = None, flip: bool | None = None,
                      crop_size: Sequence[int] | None = None, stride: Sequence[int] | None = None) -> Tensor:
        """Evaluation-time probabilities ``(B, K, *out_size)`` with the configured (or given) TTA."""
        hp = self.hparams
        return predict(
            self.logits, images,
            scales=tuple(scales if scales is not None else hp.eval_scales),
            flip=bool(hp.eval_flip if flip is None else flip),
            crop_size=crop_size if crop_size is not None else hp.eval_crop_size,
            stride=stride if stride is not None else hp.eval_stride,
            out_size=out_size,
        )

    # ----------------------------------------------------------------------------------------
    # training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        images, masks = batch["image"], batch["mask"]
        out = self(images)
        seg = self.seg_loss(out.logits, masks, out.aux_logits)
        loss = seg["loss"]
        logs = {f"train/{k}": v.detach() for k, v in seg.items() if k != "loss"}
        maps, projections = out.contrastive_inputs()
        if self.contrastive_loss is not None and maps:
            terms = self.contrastive_loss(maps, masks, return_terms=True, projections=projections)
            weight = self.contrastive_weight_at(self.global_step)
            loss = loss + weight * terms["loss"]
            logs["train/contrastive_weight"] = torch.as_tensor(weight)
            for k, v in terms.items():
                key = "train/contrastive" if k == "loss" else f"train/contrastive_{k}"
                logs[key] = v.detach() if isinstance(v, Tensor) else torch.as_tensor(v)
        bs = images.shape[0]
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=bs)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=bs)
        opt = self.optimizers(use_pl_optimizer=False) if self._trainer is not None else None
        if opt is not None and not isinstance(opt, list):
            self.log("train/lr", float(opt.param_groups[0]["lr"]), on_step=True, on_epoch=False,
                     batch_size=bs)
        return loss

    def contrastive_weight_at(self, step: int) -> float:
        """``contrastive_weight``, ramped linearly from 0 over the first ``contrastive_warmup_steps``."""
        hp = self.hparams
        warmup = int(hp.get("contrastive_warmup_steps", 0))
        return float(hp.contrastive_weight) * (min(1.0, step / warmup) if warmup > 0 else 1.0)

    def configure_optimizers(self):
        hp = self.hparams
        opt = build_optimizer(self.model, name=hp.optimizer, lr=hp.lr, weight_decay=hp.weight_decay,
                              momentum=hp.momentum, nesterov=hp.nesterov, betas=hp.betas)
        max_steps = hp.max_steps
        if not max_steps:
            est = self.trainer.estimated_stepping_batches
            max_steps = int(est) if est != float("inf") else 1
        fn = lr_lambda(max_steps, schedule=hp.schedule, power=hp.power, warmup_steps=hp.warmup_steps,
                       warmup_ratio=hp.warmup_ratio, min_lr_ratio=hp.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # ----------------------------------------------------------------------------------------
    # evaluation
    def _eval_step(self, batch: dict[str, Any], metrics: SegmentationMetrics) -> Tensor:
        images, masks = batch["image"], batch["mask"]
        probs = self.predict_probs(images, out_size=masks.shape[-2:])
        preds = probs.argmax(dim=1)
        metrics.update(preds, masks)
        return preds

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        preds = self._eval_step(batch, self.val_metrics)
        if batch_idx == 0 and self.hparams.log_images and not self.trainer.sanity_checking:
            self._log_images(batch, preds)

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
        tb = self._tensorboard()
        if tb is not None and self.trainer.is_global_zero:
            for name, v in zip(self.class_names, scores["iou"].tolist(), strict=False):
                if v == v:
                    tb.add_scalar(f"{prefix}_iou/{name}", v, self.global_step)
        fn = getattr(self.trainer.state.fn, "value", str(self.trainer.state.fn))
        if fn in ("validate", "test") and self.trainer.is_global_zero:
            title = f"{prefix} results ({self.num_classes} classes)"
            print("\n" + format_scores(scores, self.class_names, title=title), flush=True)

    # ----------------------------------------------------------------------------------------
    # logging helpers
    def _tensorboard(self):
        if self._trainer is None:
            return None
        for logger in self.trainer.loggers:
            exp = getattr(logger, "experiment", None)
            if exp is not None and hasattr(exp, "add_image"):
                return exp
        return None

    @torch.no_grad()
    def _log_images(self, batch: dict[str, Any], preds: Tensor) -> None:
        tb = self._tensorboard()
        if tb is None or not self.trainer.is_global_zero:
            return
        palette = torch.tensor(self.palette + [[0, 0, 0]] * (256 - self.num_classes),
                               dtype=torch.float32, device=preds.device) / 255.0
        n = min(int(self.hparams.log_images), preds.shape[0])
        for i in range(n):
            image = resize_logits(batch["image"][i : i + 1].float(), preds.shape[-2:])[0].clamp(0, 1)
            gt = palette[batch["mask"][i].long().clamp(0, 255)].permute(2, 0, 1)
            pr = palette[preds[i].long()].permute(2, 0, 1)
            tb.add_image(f"val_samples/{i}", torch.cat([image, gt, pr], dim=2), self.global_step)
