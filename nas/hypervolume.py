"""Hypervolume of the accuracy-energy front, and its history over trials (pure functions).

The hypervolume is the area of the (energy, accuracy) plane that the trials dominate, bounded by a
reference point: every model with validation accuracy above `reference.accuracy` and energy per
inference below `reference.energy_per_inference_j` that some trial beats or equals. Its unit is
accuracy x joules; `fraction` divides it by the whole box (accuracy from the reference to 1, energy
from 0 to the reference), so 1.0 would be a perfect, free model.

It is always computed in the accuracy-energy plane, whatever extra objectives (latency, params) the
study had, so runs with different objective sets stay comparable.

Energy is never negative here: the reference point's energy is at least 0 J, and a trial whose
stored energy is negative (possible only in runs from before the protocol's guards, see
nas/energy/protocol.py) is counted at 0 J, so it can neither drag the box below zero nor add area
outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nas.pareto import TrialRecord

# The default energy bound sits 10% beyond the most expensive trial so that the extreme front point
# still adds area (with the bound at the maximum itself it would add none).
DEFAULT_ENERGY_MARGIN = 1.1


@dataclass(frozen=True)
class ReferencePoint:
    """The worst corner the hypervolume is measured from; its energy is clamped to >= 0 J."""

    accuracy: float  # validation accuracy, fraction correct
    energy_per_inference_j: float
    rule: str  # how it was chosen, printed beside every hypervolume

    def __post_init__(self) -> None:
        if self.energy_per_inference_j < 0:
            object.__setattr__(self, "energy_per_inference_j", 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the reference accuracy, energy per inference in J, and the rule that set them."""
        return {
            "accuracy": self.accuracy,
            "energy_per_inference_j": self.energy_per_inference_j,
            "rule": self.rule,
        }


@dataclass(frozen=True)
class HistoryPoint:
    """The hypervolume of all trials up to and including `trial` (by trial number)."""

    trial: int
    hypervolume: float
    fraction: float


@dataclass(frozen=True)
class HypervolumeSummary:
    """The hypervolume of the accuracy x energy-per-inference front (in accuracy x J), its fraction of
    the box between the reference point and a perfect free model, and its history over trials.
    """

    reference: ReferencePoint
    hypervolume: float  # accuracy x J
    fraction: float  # of the box between the reference point and (accuracy 1, energy 0)
    history: tuple[HistoryPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the plane and unit spelled out."""
        return {
            "plane": "validation accuracy (maximised) x energy per inference in J (minimised)",
            "reference": self.reference.to_dict(),
            "hypervolume": self.hypervolume,
            "unit": "accuracy x J",
            "fraction": self.fraction,
            "history": [{"trial": h.trial, "hypervolume": h.hypervolume, "fraction": h.fraction} for h in self.history],
        }


def hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Exact area dominated by `points` and bounded by `reference`, both coordinates minimised.

    Points not strictly better than the reference in both coordinates add nothing. Sweeping the
    points by the first coordinate, each one that lowers the running minimum of the second adds
    the rectangle between it, the reference's first coordinate and the previous minimum.
    """
    rx, ry = reference
    inside = sorted((x, y) for x, y in points if x < rx and y < ry)
    area, best_y = 0.0, ry
    for x, y in inside:
        if y < best_y:
            area += (rx - x) * (best_y - y)
            best_y = y
    return area


def default_reference(records: Sequence[TrialRecord], margin: float = DEFAULT_ENERGY_MARGIN) -> ReferencePoint:
    """Accuracy 0 and `margin` x the largest energy per inference among the feasible trials."""
    energies = [_energy(r) for r in records if r.feasible]
    top = max(energies) if energies else 0.0
    return ReferencePoint(
        accuracy=0.0,
        energy_per_inference_j=top * margin,
        rule=f"energy bound = {margin:g} x the largest energy per inference of the run's feasible trials",
    )


def _energy(r: TrialRecord) -> float:
    """A trial's energy per inference in the plane: never below 0 J."""
    return max(0.0, r.energy_per_inference_j)


def _box(reference: ReferencePoint) -> float:
    return max(0.0, 1.0 - reference.accuracy) * max(0.0, reference.energy_per_inference_j)


def hypervolume(records: Sequence[TrialRecord], reference: ReferencePoint) -> float:
    """Hypervolume of the feasible `records` in the accuracy-energy plane (accuracy x J)."""
    points = [(-r.accuracy, _energy(r)) for r in records if r.feasible]
    return hypervolume_2d(points, (-reference.accuracy, reference.energy_per_inference_j))


def hypervolume_history(records: Sequence[TrialRecord], reference: ReferencePoint) -> list[HistoryPoint]:
    """The hypervolume after each complete trial, in trial-number order.

    An infeasible trial repeats the previous value: it was run but cannot enter the front.
    """
    box = _box(reference)
    ref = (-reference.accuracy, reference.energy_per_inference_j)
    front: list[tuple[float, float]] = []  # the non-dominated points so far: all the area needs
    hv = 0.0
    out: list[HistoryPoint] = []
    for r in sorted(records, key=lambda r: r.number):
        p = (-r.accuracy, _energy(r))
        if r.feasible and not any(q[0] <= p[0] and q[1] <= p[1] for q in front):
            front = [q for q in front if not (p[0] <= q[0] and p[1] <= q[1])] + [p]
            hv = hypervolume_2d(front, ref)
        out.append(HistoryPoint(r.number, hv, hv / box if box > 0 else 0.0))
    return out


def summarize(records: Sequence[TrialRecord], reference: ReferencePoint | None = None) -> HypervolumeSummary | None:
    """Hypervolume, its fraction and history; None when no feasible trial exists."""
    if not any(r.feasible for r in records):
        return None
    ref = reference or default_reference(records)
    history = hypervolume_history(records, ref)
    final = history[-1]
    return HypervolumeSummary(ref, final.hypervolume, final.fraction, tuple(history))
