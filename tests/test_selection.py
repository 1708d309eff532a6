"""Selection rules on a hand-built set of trials whose answers are worked out below."""

from __future__ import annotations

import pytest

from nas.errors import ConfigError, RunError
from nas.pareto import TrialRecord
from nas.selection import accuracy_energy_front, knee, parse_rule, select


def rec(n: int, acc: float, energy: float, latency: float | None = 1e-3, feasible: bool = True) -> TrialRecord:
    return TrialRecord(
        number=n,
        values={"accuracy": acc, "energy": energy},
        accuracy=acc,
        test_accuracy=acc - 0.01,
        energy_per_inference_j=energy,
        energy_method="estimated:analytical",
        latency_s=latency,
        params=0,
        macs=0,
        architecture={},
        feasible=feasible,
    )


# Front: #0, #1, #2, #3. #4 is dominated by #1 but has the lowest latency. #5 would dominate
# everything but is infeasible (over a budget), so no rule may pick it.
TRIALS = [
    rec(0, 0.50, 100e-9, latency=1e-3),
    rec(1, 0.80, 200e-9, latency=2e-3),
    rec(2, 0.85, 600e-9, latency=1e-3),
    rec(3, 0.90, 1000e-9, latency=5e-3),
    rec(4, 0.70, 500e-9, latency=0.5e-3),
    rec(5, 0.99, 10e-9, latency=0.1e-3, feasible=False),
]


def pick(rule: str):
    return select(rule, TRIALS)


def test_front_of_the_hand_built_trials():
    assert [r.number for r in accuracy_energy_front(TRIALS)] == [0, 1, 2, 3]


def test_knee_is_the_point_farthest_above_the_line_between_the_extremes():
    # normalised (energy, accuracy): #0 (0, 0), #1 (1/9, .75), #2 (5/9, .875), #3 (1, 1)
    # accuracy - energy: #1 0.639 > #2 0.319 > #0 = #3 = 0
    s = pick("knee")
    assert s.record.number == 1 and s.on_front
    assert "#0" in s.reason and "#3" in s.reason


def test_knee_does_not_depend_on_the_energy_unit():
    scaled = [rec(r.number, r.accuracy, r.energy_per_inference_j * 1e6, r.latency_s, r.feasible) for r in TRIALS]
    assert select("knee", scaled).record.number == 1


def test_knee_of_one_and_two_member_fronts():
    assert knee([rec(7, 0.5, 1.0)])[0].number == 7
    assert knee([rec(1, 0.9, 2.0), rec(2, 0.5, 1.0)])[0].number == 2  # tie goes to the cheaper


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("max-accuracy:energy<=600nJ", 2),
        ("max-accuracy:energy<=6e-7", 2),
        ("max-accuracy:energy<=599nJ", 1),
        ("max-accuracy:energy<=0.6uJ", 2),
        ("max-accuracy:energy<=1mJ", 3),
        ("max-accuracy:energy<=1uJ,latency<=2ms", 2),
        ("min-energy:accuracy>=0.8", 1),
        ("min-energy:accuracy>=85%", 2),
        ("min-energy:accuracy>=0.81", 2),
        ("min-energy:accuracy>=0.6,latency<=1ms", 4),  # #2 (600 nJ) and #4 (500 nJ) qualify
        ("trial:4", 4),
        ("3", 3),
        ("#0", 0),
    ],
)
def test_rules_pick_the_expected_trial(rule, expected):
    assert pick(rule).record.number == expected


def test_a_latency_cap_can_pick_a_trial_off_the_accuracy_energy_front():
    s = pick("max-accuracy:latency<=500us")
    assert s.record.number == 4
    assert not s.on_front


def test_infeasible_trials_are_never_picked_by_rules():
    with pytest.raises(RunError, match=r"highest accuracy of 5 trials: 0.9"):
        pick("min-energy:accuracy>=0.95")
    with pytest.raises(RunError, match="no feasible trial has energy<=5e-08"):
        pick("max-accuracy:energy<=50nJ")


def test_ties_prefer_lower_energy_then_higher_accuracy():
    trials = [rec(0, 0.9, 2.0), rec(1, 0.9, 1.0), rec(2, 0.8, 1.0), rec(3, 0.95, 3.0)]
    assert select("max-accuracy:energy<=2", trials).record.number == 1
    assert select("min-energy:accuracy>=0.8", trials).record.number == 1


def test_unknown_trial_number_says_what_exists():
    with pytest.raises(RunError, match="trial 99 is not a complete trial"):
        pick("trial:99")


@pytest.mark.parametrize(
    "rule, message",
    [
        ("best", "unknown rule 'best'"),
        ("knee:now", "takes no arguments"),
        ("max-accuracy", "needs energy<=E"),
        ("max-accuracy:accuracy>=0.5", "needs energy<=E"),
        ("min-energy:energy<=1", "needs accuracy>=A"),
        ("max-accuracy:energy>=1", "energy takes '<='"),
        ("max-accuracy:energy<=5kWh", "unknown unit 'kWh'"),
        ("min-energy:accuracy>=1.5", "fraction"),
        ("max-accuracy:power<=3", "unknown metric 'power'"),
        ("trial:x", "expected a trial number"),
        ("max-accuracy:energy<<3", "cannot read condition"),
    ],
)
def test_bad_rules_fail_with_one_clear_line(rule, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_rule(rule)
    assert "\n" not in str(e.value)


def test_units_are_converted_to_si():
    r = parse_rule("max-accuracy:energy<=200nJ,latency<=5ms")
    assert [(c.metric, c.op) for c in r.conditions] == [("energy", "<="), ("latency", "<=")]
    assert r.conditions[0].value == pytest.approx(2e-7)
    assert r.conditions[1].value == pytest.approx(5e-3)
    assert parse_rule("min-energy:accuracy>=95%").conditions[0].value == pytest.approx(0.95)
