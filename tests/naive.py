"""Reference implementations written directly from DESIGN.md's formulas (slow, for tests only)."""

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
) -> Tensor:
    """L = mean_i [ -1/|P(i)| sum_{j in P(i)} ( s_ij - log( exp(s_ij) + sum_{k in Neg(i)} exp(s_ik) ) ) ].

    Within-set when ``contrast_feats`` is None (P(i) excludes i itself); otherwise cross-set,
    with ``self_index[i]`` (optional) naming the contrast entry that is anchor i itself.
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
