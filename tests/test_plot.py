"""Figures: what the Pareto plot labels."""

from __future__ import annotations

from nas.objectives import parse_objectives
from nas.pareto import TrialRecord, pareto_front
from nas.plot import pareto_figure


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


def test_plot_labels_each_front_point_once():
    objectives = parse_objectives(("accuracy", "energy"))
    records = [
        record(0, 0.9, 2.0, 1.0, True),
        record(1, 0.5, 1.0, 1.0, True),
        record(2, 0.9, 2.0, 1.0, True),
        record(3, 0.3, 3.0, 1.0, True),
        record(4, 0.9, 2.0, 1.0, True),
        record(5, 0.5, 1.0, 1.0, True),
    ]
    front = pareto_front(records, objectives)
    assert len(front) == 5  # trial 3 is dominated; the ties are all on the front
    fig = pareto_figure(records, front)
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    assert labels == ["#0 +2", "#1 +1"]
