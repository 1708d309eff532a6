"""The front: hand-built cases and agreement with Optuna's own best_trials."""

from __future__ import annotations

import random

import optuna

from nas.objectives import parse_objectives
from nas.pareto import TrialRecord, dominates, pareto_front

OBJ = parse_objectives("accuracy,energy")


def rec(n: int, acc: float, energy: float, feasible: bool = True) -> TrialRecord:
    return TrialRecord(n, {"accuracy": acc, "energy": energy}, acc, None, energy, "estimated:analytical",
                       None, 0, 0, {}, feasible)


def test_hand_built_front():
    records = [
        rec(0, 0.90, 5.0),   # front: most accurate
        rec(1, 0.80, 2.0),   # front
        rec(2, 0.70, 3.0),   # dominated by 1
        rec(3, 0.50, 1.0),   # front: cheapest
        rec(4, 0.80, 2.5),   # dominated by 1 (same accuracy, more energy)
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
