"""Pareto front over trial records: pure functions, no Optuna, no plotting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas.objectives import Objective


@dataclass(frozen=True)
class TrialRecord:
    """What a finished trial contributed: objective values and what they were measured on."""

    number: int
    values: Mapping[str, float]  # by objective name
    accuracy: float
    test_accuracy: float | None
    energy_per_inference_j: float
    energy_method: str
    latency_s: float | None
    params: int
    macs: int
    architecture: Mapping[str, Any]
    feasible: bool = True
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The flat row written to pareto.json / pareto.csv."""
        return {
            "trial": self.number,
            "accuracy": self.accuracy,
            "test_accuracy": self.test_accuracy,
            "energy_per_inference_j": self.energy_per_inference_j,
            "energy_method": self.energy_method,
            "latency_s": self.latency_s,
            "params": self.params,
            "macs": self.macs,
            "architecture": dict(self.architecture),
        }


def _oriented(rec: TrialRecord, objectives: Sequence[Objective]) -> tuple[float, ...]:
    """Values turned so that smaller is better for every objective."""
    return tuple(
        -rec.values[o.name] if o.direction == "maximize" else rec.values[o.name] for o in objectives
    )


def dominates(a: TrialRecord, b: TrialRecord, objectives: Sequence[Objective]) -> bool:
    """True if `a` is no worse than `b` everywhere and better somewhere."""
    va, vb = _oriented(a, objectives), _oriented(b, objectives)
    return all(x <= y for x, y in zip(va, vb, strict=True)) and va != vb


def pareto_front(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """Non-dominated feasible records, sorted by energy (then trial number).

    Records with identical values are all kept, as Optuna's `best_trials` keeps them.
    """
    pool = [r for r in records if r.feasible]
    front = [r for r in pool if not any(dominates(o, r, objectives) for o in pool)]
    return sorted(front, key=lambda r: (r.energy_per_inference_j, r.number))
