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
    return tuple(-rec.values[o.name] if o.direction == "maximize" else rec.values[o.name] for o in objectives)


def dominates(a: TrialRecord, b: TrialRecord, objectives: Sequence[Objective]) -> bool:
    """True if `a` is no worse than `b` everywhere and better somewhere."""
    va, vb = _oriented(a, objectives), _oriented(b, objectives)
    return all(x <= y for x, y in zip(va, vb, strict=True)) and va != vb


def _network(r: TrialRecord) -> str:
    """The identity of a record's deployed network (its trial number when the architecture is unknown)."""
    import json

    return json.dumps(dict(r.architecture), sort_keys=True) if r.architecture else f"#{r.number}"


def pareto_front(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """Non-dominated feasible records, sorted by energy (then trial number).

    Records with identical values are all kept, as Optuna's `best_trials` keeps them, unless they
    are the same deployed network (same architecture: family, parameters, precision, pruning): each
    distinct network is listed once, by its first trial (a repeated genotype is reused, not
    retrained: nas.search.reuse).

    Sorted by their oriented values, a record can only be dominated by one before it, and then
    (dominance being transitive) by a front member before it; so each record is checked against
    the distinct front vectors found so far: O(n log n + n x front), where comparing all pairs took
    12 s for 10,000 trials (docs/benchmarks.md, "Scale").
    """
    pool = sorted(((_oriented(r, objectives), r) for r in records if r.feasible), key=lambda p: (p[0], p[1].number))
    kept: list[tuple[float, ...]] = []  # distinct value vectors of the front so far
    front = []
    networks: set[str] = set()  # the front's distinct deployed networks
    for v, r in pool:
        if kept and kept[-1] == v:  # equal vectors sort together: a tie with a front member
            net = _network(r)
            if net not in networks:
                networks.add(net)
                front.append(r)
        elif not any(all(a <= b for a, b in zip(k, v, strict=True)) for k in kept):
            kept.append(v)
            networks.add(_network(r))
            front.append(r)
    return sorted(front, key=lambda r: (r.energy_per_inference_j, r.number))
