"""Not spending energy on candidates we can rule out: budgets checked before training, and an
early-stopping rule that works for multi-objective studies (Optuna's pruners do not).

Early-stopping rule (opt-in, `--early-stop`): after epoch e, a candidate with validation accuracy
a_e and energy per inference E stops training when at least `min_dominators` finished trials that
reached epoch e had, at epoch e, a higher validation accuracy at an energy no higher than E. Those
trials dominate it at the same point of training, so more epochs would most likely leave it
dominated. Energy does not change with training (dense models), so only accuracy is compared over
epochs. The stopped trial keeps its partial result and is marked `stopped_early_at_epoch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Budget:
    """Limits a candidate must meet before it is trained (None = no limit)."""

    energy_j: float | None = None
    latency_s: float | None = None

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return self.energy_j is not None or self.latency_s is not None

    def violations(self, energy_j: float, latency_s: float) -> dict[str, float]:
        """Optuna constraint values: relative excess over each limit (<= 0 means within it)."""
        out = {}
        if self.energy_j is not None:
            out["energy_budget"] = (energy_j - self.energy_j) / self.energy_j
        if self.latency_s is not None:
            out["latency_budget"] = (latency_s - self.latency_s) / self.latency_s
        return out


@dataclass(frozen=True)
class EarlyStopRule:
    """Stop training a candidate once `min_dominators` finished trials dominate it at the same
    epoch: no more energy per inference and a higher validation accuracy after that many epochs.
    """

    min_dominators: int = 3

    def should_stop(
        self, epoch: int, accuracy: float, energy_j: float, finished: Iterable[tuple[float, Sequence[float]]]
    ) -> bool:
        """`finished`: (energy per inference, validation accuracy per epoch) of finished trials."""
        dominators = sum(
            1 for e, history in finished if len(history) >= epoch and e <= energy_j and history[epoch - 1] > accuracy
        )
        return dominators >= self.min_dominators


def savings_summary(trial_attrs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Training energy a search spent and avoided: over-budget candidates never trained, and
    epochs not run by early-stopped ones. Each figure keeps the method it came from."""
    spent = skipped = stopped = 0
    spent_j = saved_budget_j = saved_early_j = 0.0
    methods: set[str] = set()
    for a in trial_attrs:
        training = a.get("training") or {}
        if training.get("energy_j") is not None:
            spent += 1
            spent_j += float(training["energy_j"])
            methods.add(str(training.get("method")))
        if a.get("over_budget"):
            skipped += 1
            saved_budget_j += float(a.get("training_saved_j", 0.0))
            methods.add(str(a.get("training_saved_method")))
        elif a.get("stopped_early_at_epoch"):
            stopped += 1
            saved_early_j += float(a.get("training_saved_j", 0.0))
    return {
        "trained": spent,
        "training_energy_j": spent_j,
        "over_budget_not_trained": skipped,
        "training_energy_saved_by_budget_j": saved_budget_j,
        "stopped_early": stopped,
        "training_energy_saved_by_early_stop_j": saved_early_j,
        "methods": sorted(m for m in methods if m and m != "None"),
    }
