"""Segmentation metrics from a torchmetrics confusion matrix (synced across processes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from scalecontrast.data.cadis import cadis_groups  # re-exported: scores by class group

__all__ = ["SegmentationMetrics", "scores_from_confusion", "format_scores", "cadis_groups"]


class SegmentationMetrics(MulticlassConfusionMatrix):
    """Confusion matrix over labelled pixels (``ignore_index`` left out) with IoU read-outs.

    ``update(preds (B, H, W) int, target (B, H, W) int)``; ``compute()`` returns the ``(K, K)``
    matrix (rows = ground truth), summed over processes; :meth:`scores` turns it into numbers.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs) -> None:
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, normalize=None,
                         validate_args=False, **kwargs)

    def scores(self, groups: Mapping[str, Sequence[int]] | None = None) -> dict[str, Tensor]:
        return scores_from_confusion(self.compute(), groups=groups)


def scores_from_confusion(
    confmat: Tensor, groups: Mapping[str, Sequence[int]] | None = None
) -> dict[str, Tensor]:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU from a ``(K, K)`` matrix.

    Classes absent from both ground truth and prediction have IoU NaN and are left out of the
    means. ``groups`` maps a name to class indices and adds ``mIoU_<name>`` entries.
    """
    cm = confmat.double()
    tp = cm.diagonal()
    gt = cm.sum(dim=1)
    pred = cm.sum(dim=0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    total = cm.sum()
    out = {
        "mIoU": iou.nanmean(),
        "pixel_acc": tp.sum() / total if total > 0 else torch.tensor(float("nan"), dtype=cm.dtype),
        "mAcc": acc.nanmean(),
        "iou": iou,
    }
    for name, idx in (groups or {}).items():
        idx = [i for i in idx if i < len(iou)]
        out[f"mIoU_{name}"] = iou[idx].nanmean() if idx else torch.tensor(float("nan"))
    return {k: v.float() for k, v in out.items()}


def format_scores(scores: Mapping[str, Tensor], class_names: Sequence[str] | None = None,
                  title: str = "") -> str:
    """A plain-text table: per-class IoU with names, then the summary numbers (in %)."""
    iou = scores["iou"].tolist()
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(len(iou))]
    if len(names) != len(iou):
        names = [f"class_{i}" for i in range(len(iou))]
    width = max([len("mIoU_instruments"), *(len(n) for n in names)]) + 2
    rule = "-" * (width + 12)
    lines = [title] if title else []
    lines += [rule, f"{'class':<{width}}{'IoU (%)':>12}", rule]
    for name, v in zip(names, iou, strict=True):
        lines.append(f"{name:<{width}}{_pct(v):>12}")
    lines.append(rule)
    for key in ("mIoU", *sorted(k for k in scores if k.startswith("mIoU_")), "mAcc", "pixel_acc"):
        if key in scores:
            lines.append(f"{key:<{width}}{_pct(float(scores[key])):>12}")
    lines.append(rule)
    return "\n".join(lines)


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{100.0 * v:.2f}"
