"""Multi-scale and cross-scale contrastive loss over a list of embedding maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from scalecontrast.losses.contrastive import contrast
from scalecontrast.losses.distributed import gather_with_local_grad
from scalecontrast.losses.memory import PixelMemory
from scalecontrast.losses.sampling import sample_anchors

__all__ = ["MultiScaleContrastiveLoss"]


class MultiScaleContrastiveLoss(nn.Module):
    """``sum_s w_s L_s`` (within each scale) plus the cross-scale terms.

    Cross-scale: the sampled embeddings of the highest-resolution scale are anchors, contrasted
    with the sampled embeddings of the lowest scale (weight ``cross_scale_weights[0]``) and,
    with more than two scales, of the second-lowest (``cross_scale_weights[1]``).
    Scales whose weight is 0 are not sampled (e.g. ``scale_weights=(0, 0, 0, 1)`` with
    ``cross_scale=False`` is single-scale contrast on the deepest map).

    Args:
        scale_weights: one weight per scale, highest resolution first; needs at least as many
            entries as embedding maps (the first ``S`` are used).
        temperature: ``tau`` of the within-scale terms.
        cross_scale: add the cross-scale terms.
        cross_scale_temperature: ``tau`` of the cross-scale terms.
        cross_scale_weights: ``(w_high_low, w_high_mid)``.
        cross_scale_reduction: ``"all"`` (the official code): each cross-scale term is the mean
            over all sampled high-resolution anchors, an anchor whose class is absent from the
            low-resolution sample counting 0. ``"positive"``: the mean over the anchors that
            have a positive. The within-scale terms always average over anchors with a positive.
        ignore_index, min_views, max_views, max_total: see :func:`sample_anchors`.
        hard_fraction: share of mispredicted ("hard") views per (image, class) pair, see
            :func:`sample_anchors`; ``> 0`` needs ``predictions`` in :meth:`forward`.
        memory_size: per scale with a within-scale term, a per-class queue (:class:`PixelMemory`,
            buffers under ``memory.<s>.``) of the last ``memory_size`` embeddings sampled at
            earlier training steps (detached, after ``projections``). Each within-scale term then
            contrasts this step's anchors with this step's samples plus the queue; the gradient
            reaches this step's samples only. The queue is filled after the loss, in training mode
            only, with every process's samples under ``gather_distributed``. 0: no memory.
        num_classes: number of classes ``K``, required with ``memory_size > 0`` (memory:
            ``K * memory_size * D`` floats per scale; ``D`` is taken at the first step).
        detach_low_res: stop the gradient through the cross-scale contrast sets.
        gather_distributed: contrast against the embeddings sampled on every process
            (anchors stay local; the gradient flows to the local part).
        cross_image: contrast each anchor with the embeddings sampled from every image of the
            batch (the paper). ``False`` restricts positives and negatives to the anchor's own
            image; each term is then the mean over the anchors that have a positive and a negative
            in their image.
    """

    def __init__(
        self,
        scale_weights: Sequence[float] = (1.0, 0.7, 0.4, 0.1),
        temperature: float = 0.1,
        cross_scale: bool = True,
        cross_scale_temperature: float = 0.1,
        cross_scale_weights: Sequence[float] = (1.0, 1.0),
        cross_scale_reduction: Literal["all", "positive"] = "all",
        ignore_index: int = 255,
        min_views: int = 5,
        max_views: int = 2500,
        max_total: int = 10000,
        hard_fraction: float = 0.0,
        memory_size: int = 0,
        detach_low_res: bool = False,
        gather_distributed: bool = False,
        cross_image: bool = True,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if temperature <= 0 or cross_scale_temperature <= 0:
            raise ValueError(
                f"temperatures must be > 0, got temperature={temperature}, "
                f"cross_scale_temperature={cross_scale_temperature}"
            )
        if len(cross_scale_weights) != 2:
            raise ValueError(
                f"cross_scale_weights must be (w_high_low, w_high_mid), got {cross_scale_weights}"
            )
        if cross_scale_reduction not in ("all", "positive"):
            raise ValueError(f"cross_scale_reduction must be 'all' or 'positive', got {cross_scale_reduction!r}")
        if not 0.0 <= hard_fraction <= 1.0:
            raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
        if memory_size < 0:
            raise ValueError(f"memory_size must be >= 0, got {memory_size}")
        if memory_size > 0 and (num_classes is None or num_classes < 1):
            raise ValueError(
                f"memory_size={memory_size} needs num_classes (the number of classes, without the ignore "
                f"label), got num_classes={num_classes}"
            )
        if memory_size > 0 and not cross_image:
            raise ValueError("memory_size > 0 needs cross_image=True (the memory holds pixels of other images)")
        if gather_distributed and not cross_image:
            raise ValueError("gather_distributed=True needs cross_image=True (gathering contrasts across images)")
        self.scale_weights = tuple(float(w) for w in scale_weights)
        self.temperature = float(temperature)
        self.cross_scale = cross_scale
        self.cross_scale_temperature = float(cross_scale_temperature)
        self.cross_scale_weights = tuple(float(w) for w in cross_scale_weights)
        self.cross_scale_reduction = cross_scale_reduction
        self.ignore_index = ignore_index
        self.min_views = min_views
        self.max_views = max_views
        self.max_total = max_total
        self.hard_fraction = float(hard_fraction)
        self.detach_low_res = detach_low_res
        self.gather_distributed = gather_distributed
        self.cross_image = cross_image
        self.memory_size = int(memory_size)
        self.num_classes = num_classes
        # one queue per scale that has a within-scale term (scales beyond the model's maps stay empty)
        self.memory = nn.ModuleDict(
            {str(s): PixelMemory(num_classes, memory_size) for s, w in enumerate(self.scale_weights) if w != 0}
        ) if memory_size > 0 else None

    def forward(
        self,
        embeddings: Sequence[Tensor],
        labels: Tensor,
        *,
        predictions: Tensor | None = None,
        return_terms: bool = False,
        generator: torch.Generator | None = None,
        projections: Sequence[Callable[[Tensor], Tensor]] | None = None,
    ) -> Tensor | dict[str, Tensor]:
        """Compute the loss.

        Args:
            embeddings: ``S`` maps ``(B, C, h_s, w_s)``, highest resolution first.
            labels: ``(B, H, W)`` integer labels at any resolution.
            predictions: ``(B, H', W')`` predicted classes at any resolution (e.g.
                ``logits.argmax(1)``); used (and required) when ``hard_fraction > 0``.
            return_terms: return a dict instead of the scalar: ``"loss"`` (the scalar, with its
                graph) and, detached: ``"scale_<s>"``, ``"cross_high_low"``, ``"cross_high_mid"``
                (the unweighted active terms); for every sampled scale ``s``, ``"pairs_<s>"`` (valid
                (image, class) pairs) and ``"anchors_<s>"`` (sampled embeddings, pairs x views) of
                this process, as float scalars on the embeddings' device (no host sync); with a
                pixel memory, ``"memory_<s>"`` (filled memory slots after this step).
            generator: optional generator for the anchor sampling.
            projections: optional, one callable per map applied to the sampled rows
                ``(N, C_s) -> (N, D)`` before the contrast (a projector's last pointwise layer;
                see ``ContrastiveHead``); the maps may then differ in ``C_s``.

        Returns:
            Scalar ``sum_s w_s L_s + w_hl L_hl + w_hm L_hm``, or the dict of terms.
        """
        n_scales = self._check(embeddings, labels, projections)
        if self.hard_fraction > 0 and predictions is None:
            raise ValueError(
                f"hard_fraction={self.hard_fraction} needs predictions (B, H, W), e.g. logits.argmax(1).detach()"
            )
        if self.hard_fraction == 0:
            predictions = None
        weights = self.scale_weights[:n_scales]
        cross = self.cross_scale and n_scales >= 2
        needed = {s for s, w in enumerate(weights) if w != 0}
        pairs: list[tuple[str, int, float]] = []
        if cross:
            pairs.append(("cross_high_low", n_scales - 1, self.cross_scale_weights[0]))
            if n_scales > 2:
                pairs.append(("cross_high_mid", n_scales - 2, self.cross_scale_weights[1]))
            pairs = [p for p in pairs if p[2] != 0]
            if pairs:
                needed |= {0, *(s for _, s, _ in pairs)}

        if not needed:
            raise ValueError(
                f"no contrastive term is active for {n_scales} embedding maps: scale_weights "
                f"{self.scale_weights} (the first {n_scales} are used) are all 0 and there is no cross-scale "
                "pair; give a non-zero weight to one of the maps this model returns"
            )
        project = list(projections) if projections is not None else [None] * n_scales
        sampled = {s: self._sample(embeddings[s], labels, generator, project[s], predictions) for s in sorted(needed)}
        # Zero that keeps the graph, so an all-ignore batch still back-propagates (summed in fp32:
        # an fp16 sum can overflow to inf, and inf * 0 is NaN); zero rows keep the projections in it.
        total = sum(e.sum(dtype=torch.float32) for e in embeddings) * 0.0
        if projections is not None:
            total = total + sum(p(e.new_zeros(0, e.shape[1])).sum(dtype=torch.float32)
                                for p, e in zip(project, embeddings))
        terms: dict[str, Tensor] = {}
        for s, w in enumerate(weights):
            if w == 0:
                continue
            feats, labs, images, all_feats, all_labels, offset, _ = sampled[s]
            if self.cross_image:
                self_index = torch.arange(feats.shape[0], device=feats.device) + offset
                others, other_labels, mask = self._with_memory(s, all_feats, all_labels)
                term = contrast(
                    feats, labs, others, other_labels, temperature=self.temperature, self_index=self_index,
                    contrast_mask=mask,
                )
            else:
                term = _per_image(feats, labs, images, feats, labs, images, temperature=self.temperature,
                                  num_images=labels.shape[0])
            terms[f"scale_{s}"] = term
            total = total + w * term
        for name, s, w in pairs:
            anchors, anchor_labels, anchor_images = sampled[0][:3]
            _, _, low_images, low_feats, low_labels, _, _ = sampled[s]
            if self.detach_low_res:
                low_feats = low_feats.detach()
            if self.cross_image:
                term = contrast(
                    anchors, anchor_labels, low_feats, low_labels, temperature=self.cross_scale_temperature,
                    reduction=self.cross_scale_reduction,
                )
            else:
                term = _per_image(anchors, anchor_labels, anchor_images, low_feats, low_labels, low_images,
                                  temperature=self.cross_scale_temperature, num_images=labels.shape[0],
                                  reduction=self.cross_scale_reduction)
            terms[name] = term
            total = total + w * term
        if self.memory is not None and self.training:
            for s, w in enumerate(weights):
                if w != 0:
                    self.memory[str(s)].push(sampled[s][3].detach(), sampled[s][4])
        if not return_terms:
            return total
        counts = {}
        for s in sorted(sampled):
            labs, n_pairs = sampled[s][1], sampled[s][6]
            counts[f"pairs_{s}"] = labs.new_full((), n_pairs, dtype=torch.float32)
            counts[f"anchors_{s}"] = labs.new_full((), labs.shape[0], dtype=torch.float32)
            if self.memory is not None and str(s) in self.memory:
                counts[f"memory_{s}"] = self.memory[str(s)].count.sum().float()
        return {"loss": total, **{k: v.detach() for k, v in terms.items()}, **counts}

    def _with_memory(self, scale: int, feats: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """The contrast set of a within-scale term: ``feats (n, D)`` plus the scale's filled memory slots."""
        memory = self.memory[str(scale)] if self.memory is not None else None
        if memory is None or memory.dim == 0:
            return feats, labels, None
        if memory.dim != feats.shape[1]:
            raise ValueError(f"the pixel memory of scale {scale} holds {memory.dim}-d embeddings, but this step's "
                             f"are {feats.shape[1]}-d")
        mem_feats, mem_labels, filled = (t.to(feats.device) for t in memory.contents())
        dtype = torch.promote_types(feats.dtype, mem_feats.dtype)
        others = torch.cat([feats.to(dtype), mem_feats.to(dtype)])
        mask = torch.cat([torch.ones_like(labels, dtype=torch.bool), filled])
        return others, torch.cat([labels, mem_labels]), mask

    def _sample(self, embedding: Tensor, labels: Tensor, generator: torch.Generator | None,
                project: Callable[[Tensor], Tensor] | None = None, predictions: Tensor | None = None):
        feats, labs, images = sample_anchors(
            embedding,
            labels,
            ignore_index=self.ignore_index,
            min_views=self.min_views,
            max_views=self.max_views,
            max_total=self.max_total,
            predictions=predictions,
            hard_fraction=self.hard_fraction,
            generator=generator,
            return_images=True,
        )
        feats = feats.reshape(-1, embedding.shape[1])  # (T*V, C)
        if project is not None:
            feats = project(feats)  # (T*V, D)
        n_pairs = labs.shape[0]
        views = feats.shape[0] // max(n_pairs, 1)
        labs, images = labs.repeat_interleave(views), images.repeat_interleave(views)  # (T*V,)
        if self.gather_distributed:
            all_feats, all_labels, offset = gather_with_local_grad(feats, labs)
        else:
            all_feats, all_labels, offset = feats, labs, 0
        return feats, labs, images, all_feats, all_labels, offset, n_pairs

    def _check(self, embeddings: Sequence[Tensor], labels: Tensor,
               projections: Sequence[Callable[[Tensor], Tensor]] | None = None) -> int:
        if isinstance(embeddings, Tensor) or len(embeddings) == 0:
            raise ValueError(
                "embeddings must be a non-empty list of (B, C, h, w) tensors (for a model's raw feature maps, "
                "use ContrastiveHead(model.feature_channels)(out.features, labels), which projects them)"
            )
        if labels.ndim != 3:
            raise ValueError(f"labels must have shape (B, H, W), got {tuple(labels.shape)}")
        shapes = [tuple(e.shape) for e in embeddings]
        for shape in shapes:
            other_c = projections is None and len(shape) == 4 and shape[1] != shapes[0][1]
            if len(shape) != 4 or shape[0] != labels.shape[0] or other_c:
                raise ValueError(
                    f"embeddings must all be (B, C, h, w) with B={labels.shape[0]} (from labels "
                    f"{tuple(labels.shape)}) and one C; got {shapes}"
                )
        if projections is not None and len(projections) != len(embeddings):
            raise ValueError(f"{len(embeddings)} embedding maps but {len(projections)} projections")
        if len(embeddings) > len(self.scale_weights):
            raise ValueError(
                f"{len(embeddings)} embedding maps but only {len(self.scale_weights)} scale_weights "
                f"{self.scale_weights}"
            )
        return len(embeddings)


def _per_image(
    feats: Tensor,
    labels: Tensor,
    images: Tensor,
    others: Tensor,
    other_labels: Tensor,
    other_images: Tensor,
    *,
    temperature: float,
    num_images: int,
    reduction: Literal["positive", "all"] = "positive",
) -> Tensor:
    """Contrast every anchor only with the embeddings of its own image.

    ``feats (N, C)``, ``labels``/``images (N,)``; ``others (M, C)``, ``other_labels``/``other_images (M,)``;
    rows grouped by image (as :func:`sample_anchors` returns them). Passing the same tensors as
    anchors and contrast set excludes each anchor from its own set.

    Returns the mean per-anchor loss (a scalar) over the anchors that have at least one positive
    *and* one negative in their own image (``reduction="positive"``). Anchors without a negative
    (an image showing one class) have a loss of exactly 0 by the formula; they are left out of the
    mean instead of diluting it. ``reduction="all"`` averages over all ``N`` anchors instead, those
    without a positive or a negative in their image counting 0. Two host syncs, plus those of each
    per-image :func:`contrast`.
    """
    same_set = others is feats
    total = feats.sum(dtype=torch.float32) * 0.0
    if labels.numel() == 0 or other_labels.numel() == 0:
        return total
    n_labels = int(torch.maximum(labels.max(), other_labels.max())) + 1
    key_a, key_b = images * n_labels + labels, other_images * n_labels + other_labels
    same_label = torch.bincount(key_b, minlength=num_images * n_labels)[key_a] - int(same_set)  # positives
    cols = torch.bincount(other_images, minlength=num_images)
    negatives = cols[images] - same_label - int(same_set)
    has_pos = same_label > 0
    stats = torch.stack([
        torch.bincount(images, minlength=num_images),
        cols,
        torch.bincount(images[has_pos], minlength=num_images),
        torch.bincount(images[has_pos & (negatives > 0)], minlength=num_images),
    ]).tolist()
    n_valid = sum(stats[3])
    if n_valid == 0:
        return total
    if reduction == "all":
        n_valid = labels.shape[0]
    row0 = col0 = 0
    for n_rows, n_cols, n_pos, valid in zip(*stats):
        rows, cols_ = slice(row0, row0 + n_rows), slice(col0, col0 + n_cols)
        row0, col0 = row0 + n_rows, col0 + n_cols
        if valid == 0:
            continue
        if same_set:
            sub = feats[rows]
            term = contrast(sub, labels[rows], sub, labels[rows], temperature=temperature,
                            self_index=torch.arange(n_rows, device=feats.device))
        else:
            term = contrast(feats[rows], labels[rows], others[cols_], other_labels[cols_], temperature=temperature)
        total = total + n_pos * term  # contrast averages over the anchors with a positive
    return total / n_valid
