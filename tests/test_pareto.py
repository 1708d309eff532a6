"""The front: hand-built cases and agreement with Optuna's own best_trials."""

from __future__ import annotations

import random

import optuna
import pytest

from nas.objectives import parse_objectives
from nas.pareto import TrialRecord, dominates, pareto_front

OBJ = parse_objectives("accuracy,energy")


def rec(n: int, acc: float, energy: float, feasible: bool = True) -> TrialRecord:
    return TrialRecord(
        n, {"accuracy": acc, "energy": energy}, acc, None, energy, "estimated:analytical", None, 0, 0, {}, feasible
    )


def test_hand_built_front():
    records = [
        rec(0, 0.90, 5.0),  # front: most accurate
        rec(1, 0.80, 2.0),  # front
        rec(2, 0.70, 3.0),  # dominated by 1
        rec(3, 0.50, 1.0),  # front: cheapest
        rec(4, 0.80, 2.5),  # dominated by 1 (same accuracy, more energy)
        rec(5, 0.95, 0.5, feasible=False),  # would dominate all, but infeasible
    ]
    front = pareto_front(records, OBJ)
    assert [r.number for r in front] == [3, 1, 0]  # sorted by energy


def test_dominance_is_strict():
    a, b = rec(0, 0.8, 1.0), rec(1, 0.8, 1.0)
    assert not dominates(a, b, OBJ) and not dominates(b, a, OBJ)
    assert [r.number for r in pareto_front([a, b], OBJ)] == [0, 1]  # ties are both kept


def test_front_matches_optuna_best_trials():
    rng = random.Random(3)
    study = optuna.create_study(directions=["maximize", "minimize"])
    records = []
    for i in range(200):
        acc, energy = round(rng.random(), 2), round(rng.random() * 10, 1)
        study.add_trial(optuna.trial.create_trial(values=[acc, energy]))
        records.append(rec(i, acc, energy))
    ours = {r.number for r in pareto_front(records, OBJ)}
    assert ours == {t.number for t in study.best_trials}


def test_three_objectives():
    obj = parse_objectives("accuracy,energy,params")
    a = TrialRecord(0, {"accuracy": 0.9, "energy": 1.0, "params": 100}, 0.9, None, 1.0, "", None, 100, 0, {})
    b = TrialRecord(1, {"accuracy": 0.9, "energy": 1.0, "params": 50}, 0.9, None, 1.0, "", None, 50, 0, {})
    c = TrialRecord(2, {"accuracy": 0.8, "energy": 0.5, "params": 500}, 0.8, None, 0.5, "", None, 500, 0, {})
    assert {r.number for r in pareto_front([a, b, c], obj)} == {1, 2}


# ------------------------------------------------------------------------------ the sorted front at scale
def by_definition(records, objectives):
    pool = [r for r in records if r.feasible]
    front = [r for r in pool if not any(dominates(o, r, objectives) for o in pool)]
    return sorted(front, key=lambda r: (r.energy_per_inference_j, r.number))


def record(i: int, acc: float, energy: float, latency: float, feasible: bool) -> TrialRecord:
    return TrialRecord(
        i,
        {"accuracy": acc, "energy": energy, "latency": latency},
        acc,
        None,
        energy,
        "estimated:analytical",
        latency,
        0,
        0,
        {},
        feasible=feasible,
    )


@pytest.mark.parametrize("names", [("accuracy", "energy"), ("accuracy", "energy", "latency")])
def test_front_matches_pairwise_definition(names):
    objectives = parse_objectives(names)
    rng = random.Random(7)
    for _ in range(400):
        # few distinct values, so ties and chains of dominance are common
        records = [
            record(
                i, rng.choice([0.1, 0.5, 0.9]), rng.choice([1.0, 2.0, 3.0]), rng.choice([1.0, 2.0]), rng.random() > 0.2
            )
            for i in range(rng.randint(0, 25))
        ]
        assert pareto_front(records, objectives) == by_definition(records, objectives)


def test_large_study_front():
    """10,000 records over 500 distinct values: the front holds exactly the records whose value is
    non-dominated among the feasible values (computed pairwise over the distinct values)."""
    objectives = parse_objectives(("accuracy", "energy"))
    rng = random.Random(0)
    points = [(rng.random(), rng.random()) for _ in range(500)]
    records = [record(i, *rng.choice(points), 1.0, rng.random() > 0.05) for i in range(10_000)]
    values = {(r.accuracy, r.energy_per_inference_j) for r in records if r.feasible}
    best = {(a, e) for a, e in values if not any(oa >= a and oe <= e and (oa, oe) != (a, e) for oa, oe in values)}
    front = pareto_front(records, objectives)
    assert [r.number for r in front] == [
        r.number
        for r in sorted(
            (r for r in records if r.feasible and (r.accuracy, r.energy_per_inference_j) in best),
            key=lambda r: (r.energy_per_inference_j, r.number),
        )
    ]
