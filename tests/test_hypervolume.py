"""Hypervolume: exact 2-D areas worked out by hand, history, reference point, Optuna cross-check."""

from __future__ import annotations

import numpy as np
import pytest

from nas.hypervolume import (
    ReferencePoint,
    default_reference,
    hypervolume,
    hypervolume_2d,
    hypervolume_history,
    summarize,
)
from nas.pareto import TrialRecord


def rec(n: int, acc: float, energy: float, feasible: bool = True) -> TrialRecord:
    return TrialRecord(
        number=n,
        values={"accuracy": acc, "energy": energy},
        accuracy=acc,
        test_accuracy=None,
        energy_per_inference_j=energy,
        energy_method="estimated:analytical",
        latency_s=None,
        params=0,
        macs=0,
        architecture={},
        feasible=feasible,
    )


def test_single_point_is_its_box():
    assert hypervolume_2d([(1.0, 2.0)], (3.0, 5.0)) == pytest.approx(2.0 * 3.0)


def test_two_point_staircase_is_the_union_of_two_boxes():
    # boxes [1,4]x[3,4] (area 3) and [2,4]x[1,4] (area 6) overlap in [2,4]x[3,4] (area 2)
    assert hypervolume_2d([(1.0, 3.0), (2.0, 1.0)], (4.0, 4.0)) == pytest.approx(3 + 6 - 2)


def test_dominated_duplicate_and_outside_points_add_nothing():
    base = [(1.0, 3.0), (2.0, 1.0)]
    extra = [(3.0, 3.5), (2.0, 1.0), (5.0, 0.0), (0.0, 4.0), (4.0, 0.5)]
    assert hypervolume_2d(base + extra, (4.0, 4.0)) == pytest.approx(7.0)


def test_empty_set_has_zero_volume():
    assert hypervolume_2d([], (1.0, 1.0)) == 0.0


def test_records_in_the_accuracy_energy_plane():
    # A covers accuracy [0, .5] x energy [1, 4] = 1.5; B covers [0, 1] x [2, 4] = 2; overlap [0,.5]x[2,4] = 1
    ref = ReferencePoint(accuracy=0.0, energy_per_inference_j=4.0, rule="test")
    records = [rec(0, 0.5, 1.0), rec(1, 1.0, 2.0), rec(2, 0.99, 0.1, feasible=False)]
    assert hypervolume(records, ref) == pytest.approx(2.5)
    s = summarize(records, ref)
    assert s.hypervolume == pytest.approx(2.5)
    assert s.fraction == pytest.approx(2.5 / (1.0 * 4.0))  # the box is accuracy [0, 1] x energy [0, 4]


def test_history_follows_trial_order_and_infeasible_trials_repeat_the_value():
    ref = ReferencePoint(accuracy=0.0, energy_per_inference_j=4.0, rule="test")
    records = [rec(2, 1.0, 2.0), rec(0, 0.5, 1.0), rec(1, 0.9, 0.5, feasible=False)]
    hist = hypervolume_history(records, ref)
    assert [h.trial for h in hist] == [0, 1, 2]
    assert [h.hypervolume for h in hist] == pytest.approx([0.5 * 3.0, 0.5 * 3.0, 2.5])
    assert hist[-1].fraction == pytest.approx(2.5 / 4.0)


def test_default_reference_is_ten_percent_beyond_the_most_expensive_feasible_trial():
    records = [rec(0, 0.5, 1.0), rec(1, 0.9, 3.0), rec(2, 0.95, 100.0, feasible=False)]
    ref = default_reference(records)
    assert ref.accuracy == 0.0
    assert ref.energy_per_inference_j == pytest.approx(3.3)
    assert "1.1" in ref.rule


def test_summary_is_none_without_feasible_trials():
    assert summarize([rec(0, 0.5, 1.0, feasible=False)]) is None


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_optunas_hypervolume(seed):
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, size=(30, 2))
    ref = np.array([1.05, 1.1])
    ours = hypervolume_2d([tuple(p) for p in points], tuple(ref))
    assert ours == pytest.approx(compute_hypervolume(points, ref), rel=1e-12)


def test_history_equals_the_hypervolume_of_each_prefix():
    rng = np.random.default_rng(7)
    records = [
        rec(i, float(a), float(e), feasible=bool(f))
        for i, (a, e, f) in enumerate(
            zip(rng.uniform(size=200), rng.uniform(size=200), rng.uniform(size=200) > 0.2, strict=True)
        )
    ]
    ref = default_reference(records)
    hist = hypervolume_history(records, ref)
    for k in (1, 2, 10, 57, 200):
        assert hist[k - 1].hypervolume == pytest.approx(hypervolume(records[:k], ref), rel=1e-12)
    assert all(b.hypervolume >= a.hypervolume for a, b in zip(hist[:-1], hist[1:], strict=True))
