"""Paired statistics of a study: an arm against the reference arm, seed by seed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PairedStats", "mean_std", "paired_stats"]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


@dataclass(frozen=True)
class PairedStats:
    """``arm - reference`` over the seeds both have."""

    seeds: tuple[int, ...]
    diffs: tuple[float, ...]
    mean: float
    std: float
    wins: int              # seeds where the arm is strictly better
    p: float | None        # two-sided paired t-test (scipy.stats.ttest_rel); None below 2 pairs
    ci95: tuple[float, float] | None  # mean +- t(0.975, n-1) * std / sqrt(n); None below 2 pairs

    @property
    def n(self) -> int:
        return len(self.seeds)


def paired_stats(arm: Mapping[int, float], reference: Mapping[int, float]) -> PairedStats | None:
    """Paired comparison of two ``{seed: score}`` maps on their common seeds (None when they share none)."""
    from scipy import stats

    seeds = tuple(sorted(set(arm) & set(reference)))
    if not seeds:
        return None
    a = [float(arm[s]) for s in seeds]
    b = [float(reference[s]) for s in seeds]
    diffs = tuple(x - y for x, y in zip(a, b))
    mean, std = mean_std(list(diffs))
    wins = sum(d > 0 for d in diffs)
    p = ci = None
    n = len(seeds)
    if n >= 2:
        if std == 0.0:  # every pair differs by the same amount: the t statistic is undefined
            p = 1.0 if mean == 0.0 else 0.0
            ci = (mean, mean)
        else:
            p = float(stats.ttest_rel(a, b).pvalue)
            half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
            ci = (mean - half, mean + half)
    return PairedStats(seeds, diffs, mean, std, wins, p, ci)
