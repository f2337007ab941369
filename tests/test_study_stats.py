"""Paired statistics against numbers worked by hand."""

from __future__ import annotations

import math

import pytest

from scalecontrast.study.runner import choose_setting, tie_order
from scalecontrast.study.stats import mean_std, paired_stats


def test_paired_stats_worked_by_hand():
    # differences 1, 2, 3: mean 2, sample std 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3 on 2 degrees of freedom,
    # whose two-sided p is 1 - |t| / sqrt(t^2 + 2) = 1 - 2 sqrt 3 / sqrt 14; t(0.975, 2) = 4.302653
    arm = {0: 11.0, 1: 12.0, 2: 13.0, 7: 99.0}  # seed 7 has no pair
    ref = {0: 10.0, 1: 10.0, 2: 10.0}
    ps = paired_stats(arm, ref)
    assert ps.seeds == (0, 1, 2) and ps.n == 3
    assert ps.diffs == (1.0, 2.0, 3.0)
    assert ps.mean == pytest.approx(2.0) and ps.std == pytest.approx(1.0)
    assert ps.wins == 3
    assert ps.p == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), abs=1e-9)  # 0.07418
    half = 4.302653 / math.sqrt(3)
    assert ps.ci95 == pytest.approx((2 - half, 2 + half), abs=1e-5)


def test_paired_stats_edge_cases():
    assert paired_stats({0: 1.0}, {1: 1.0}) is None
    one = paired_stats({0: 2.0}, {0: 1.0})
    assert one.mean == 1.0 and one.std == 0.0 and one.p is None and one.ci95 is None
    same = paired_stats({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})  # every pair +1: no spread
    assert same.p == 0.0 and same.ci95 == (1.0, 1.0)
    ties = paired_stats({0: 1.0, 1: 2.0}, {0: 1.0, 1: 1.0})
    assert ties.wins == 1  # an equal pair is not a win


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_choice_rule():
    weights = [{"w": 1.0}, {"w": 0.1}, {"w": 0.3}]
    assert tie_order(weights) == [1, 2, 0]
    assert choose_setting(weights, [62.0, 61.0, 61.5]) == 0  # the best mean
    assert choose_setting(weights, [62.0, 62.0, 61.0]) == 1  # a tie goes to the smaller value
    named = [{"r": "positive"}, {"r": "all"}]
    assert choose_setting(named, [50.0, 50.0]) == 0  # not numeric: to the setting listed first
    grid = [{"a": 1, "b": 2}, {"a": 0, "b": 2}]
    assert choose_setting(grid, [50.0, 50.0]) == 0  # several options: listed first
