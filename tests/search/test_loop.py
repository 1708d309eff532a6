"""The search loop: the progress bar's incremental front."""

from __future__ import annotations

import random
from types import SimpleNamespace

import optuna

from nas.objectives import parse_objectives
from nas.pareto import TrialRecord, dominates
from nas.search.loop import Progress


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


def test_progress_bar_front_size_counts_ties():
    """The search's progress bar tracks the front incrementally; its size is the front's, ties included."""
    objectives = parse_objectives(("accuracy", "energy"))
    ctx = SimpleNamespace(objectives=objectives, settings=SimpleNamespace(trials=10))
    rng = random.Random(3)
    for _ in range(100):
        progress = Progress(ctx, optuna.create_study(directions=["maximize", "minimize"]), enabled=False)
        records = [
            record(i, rng.choice([0.1, 0.5, 0.9]), rng.choice([1.0, 2.0, 3.0]), 1.0, rng.random() > 0.2)
            for i in range(rng.randint(0, 20))
        ]
        for r in records:
            progress._add(r)
        assert progress.front_size == len(by_definition(records, objectives))
