"""The objectives a search can optimise, as a registry of data."""

from __future__ import annotations

from dataclasses import dataclass

from nas.errors import ConfigError


@dataclass(frozen=True)
class Objective:
    """One search objective: the name users type, the metric stored in the study, its Optuna
    direction, and its axis label with unit.
    """

    name: str  # what the user types: --objectives accuracy,energy
    metric: str  # the metric name stored in the study (shown by optuna-dashboard)
    direction: str  # "maximize" | "minimize"
    label: str  # axis label, with unit


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("accuracy", "val_accuracy", "maximize", "validation accuracy"),
        Objective("energy", "energy_per_inference_j", "minimize", "energy per inference (J)"),
        Objective("latency", "latency_s", "minimize", "latency per batch (s)"),
        Objective("params", "params", "minimize", "parameters"),
    )
}
DEFAULT_OBJECTIVES = ("accuracy", "energy")


def parse_objectives(names: str | tuple[str, ...] | list[str]) -> tuple[Objective, ...]:
    """`accuracy,energy,latency` -> Objectives. Accuracy and energy are always included."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[str] = []
    for n in [*DEFAULT_OBJECTIVES, *names]:
        if n not in OBJECTIVES:
            raise ConfigError(f"unknown objective {n!r} (valid: {', '.join(OBJECTIVES)})")
        if n not in out:
            out.append(n)
    return tuple(OBJECTIVES[n] for n in out)
