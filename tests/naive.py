"""Reference implementations written directly from the formulas of docs/method.md (slow, for tests only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def naive_contrastive(
    feats: Tensor,
    labels: Tensor,
    contrast_feats: Tensor | None = None,
    contrast_labels: Tensor | None = None,
    *,
    temperature: float = 0.1,
    self_index: Tensor | None = None,
    reduction: str = "positive",
) -> Tensor:
    """L = mean_i [ -1/|P(i)| sum_{j in P(i)} ( s_ij - log( exp(s_ij) + sum_{k in Neg(i)} exp(s_ik) ) ) ].

    Within-set when ``contrast_feats`` is None (P(i) excludes i itself); otherwise cross-set,
    with ``self_index[i]`` (optional) naming the contrast entry that is anchor i itself (left out
    of both P(i) and Neg(i)). ``reduction="positive"``: the mean over anchors with a positive;
    ``"all"``: over every anchor, one without a positive counting 0.
    """
    z = F.normalize(feats, dim=1)
    if contrast_feats is None:
        zc, yc = z, labels
        self_index = torch.arange(len(labels))
    else:
        zc, yc = F.normalize(contrast_feats, dim=1), contrast_labels
    s = z @ zc.T / temperature
    per_anchor = []
    for i in range(len(labels)):
        positive = yc == labels[i]
        if self_index is not None:
            positive[int(self_index[i])] = False
        negative = yc != labels[i]
        if not positive.any():
            if reduction == "all":
                per_anchor.append(s[i].sum() * 0)
            continue
        neg_sum = torch.exp(s[i, negative]).sum()  # 0 when there is no negative
        terms = s[i, positive] - torch.log(torch.exp(s[i, positive]) + neg_sum)
        per_anchor.append(-terms.sum() / positive.sum())
    if not per_anchor:
        return (feats.sum() * 0).to(s.dtype)
    return torch.stack(per_anchor).mean()


def dense_contrastive(feats: Tensor, labels: Tensor, *, temperature: float = 0.1) -> Tensor:
    """The usual dense N x N within-set formulation (vectorised; the benchmark's baseline)."""
    z = F.normalize(feats.float(), dim=1)
    s = z @ z.T / temperature
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=feats.device)
    pos = same & ~eye
    neg = ~same
    logits = s - s.max(1, keepdim=True).values.detach()
    neg_sum = (torch.exp(logits) * neg).sum(1, keepdim=True)
    log_prob = logits - torch.log(torch.exp(logits) + neg_sum)
    n_pos = pos.sum(1)
    per_anchor = -(log_prob * pos).sum(1) / n_pos.clamp_min(1)
    keep = n_pos > 0
    return per_anchor[keep].mean()


def naive_per_image(feats, labels, images, others, other_labels, other_images, *, temperature,
                    reduction: str = "positive", same_set: bool = False) -> Tensor:
    """Every anchor contrasted with its own image's entries only. ``"positive"``: the mean over the
    anchors with a positive and a negative in their image; ``"all"``: over every anchor (others count 0)."""
    z, zc = F.normalize(feats, dim=1), F.normalize(others, dim=1)
    losses = []
    for i in range(len(labels)):
        mine = other_images == images[i]
        pos = mine & (other_labels == labels[i])
        if same_set:
            pos[i] = False
        neg = mine & (other_labels != labels[i])
        if not pos.any() or not neg.any():
            if reduction == "all":
                losses.append(z[i].sum() * 0)
            continue
        s = zc @ z[i] / temperature
        neg_sum = torch.exp(s[neg]).sum()
        losses.append(-(s[pos] - torch.log(torch.exp(s[pos]) + neg_sum)).mean())
    if not losses:
        return feats.sum() * 0
    return torch.stack(losses).mean()


def naive_multiscale(
    sets: list[tuple[Tensor, Tensor, Tensor]],
    *,
    scale_weights=(1.0, 0.7, 0.4, 0.1),
    temperature: float = 0.1,
    cross_weights=(1.0, 1.0),
    cross_temperature: float = 0.1,
    reduction: str = "all",
    detach_low_res: bool = False,
    cross_image: bool = True,
    memory: list[tuple[Tensor, Tensor] | None] | None = None,
) -> dict[str, Tensor]:
    """The within-scale and cross-scale terms of docs/method.md on given samples
    ``sets[s] = (feats (N_s, C), labels (N_s,), images (N_s,))``.

    ``memory[s]`` (optional) = ``(feats (Q, C), labels (Q,))`` appended (detached) to the contrast
    set of scale ``s``'s within-scale term. Returns the unweighted terms and ``"loss"``.
    """
    terms = {}
    for s, (f, y, im) in enumerate(sets):
        w = scale_weights[s]
        if w == 0:
            continue
        if not cross_image:
            terms[f"scale_{s}"] = naive_per_image(f, y, im, f, y, im, temperature=temperature, same_set=True)
            continue
        mem = memory[s] if memory is not None else None
        if mem is None:
            terms[f"scale_{s}"] = naive_contrastive(f, y, temperature=temperature)
        else:
            cf = torch.cat([f, mem[0].detach()])
            cy = torch.cat([y, mem[1]])
            terms[f"scale_{s}"] = naive_contrastive(f, y, cf, cy, temperature=temperature,
                                                    self_index=torch.arange(len(y)))
    n = len(sets)
    pairs = []
    if n >= 2:
        pairs.append(("cross_high_low", n - 1, cross_weights[0]))
        if n > 2:
            pairs.append(("cross_high_mid", n - 2, cross_weights[1]))
    f0, y0, im0 = sets[0]
    for name, s, w in pairs:
        if w == 0:
            continue
        fl, yl, iml = sets[s]
        if detach_low_res:
            fl = fl.detach()
        if cross_image:
            terms[name] = naive_contrastive(f0, y0, fl, yl, temperature=cross_temperature, reduction=reduction)
        else:
            terms[name] = naive_per_image(f0, y0, im0, fl, yl, iml, temperature=cross_temperature,
                                          reduction=reduction)
    total = sum(scale_weights[int(k[6:])] * v for k, v in terms.items() if k.startswith("scale_"))
    total = total + sum(w * terms[name] for name, _, w in pairs if name in terms)
    return {"loss": total, **terms}
