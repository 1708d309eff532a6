"""Sampling an Architecture from a SearchSpace through an Optuna trial.

Optuna parameter names mirror the YAML: `activation`, `layers.count`, `layers.0.width`,
`stages.2.expansion`, and for nested groups `layers.1.experts.count`, `layers.1.experts.0.width`.
Per-unit parameters exist only for units that exist, and a parameter with a `when` condition only
where the condition holds, so samplers see a truly conditional space. When the family itself is a
choice, `family` is sampled first and the chosen family's names carry it as a prefix
(`transformer.layers.count`), so no two families share a parameter name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from nas.architecture import Architecture
from nas.searchspace import Param, Repeated, SearchSpace


def _active(param: Param, values: Mapping[str, Any]) -> bool:
    return all(values.get(key) in allowed for key, allowed in param.when)


def _suggest(trial: optuna.Trial, p: Param, name: str) -> Any:
    if p.kind == "choice":
        return trial.suggest_categorical(name, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)


def _units(trial: optuna.Trial, group: Repeated, prefix: str, outer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Sample `group`'s count, then per unit its parameters and nested groups."""
    count = _suggest(trial, group.count, f"{prefix}{group.name}.count")
    units = []
    for i in range(count):
        unit: dict[str, Any] = {}
        for p in group.params:
            if _active(p, {**outer, **unit}):
                unit[p.name] = _suggest(trial, p, f"{prefix}{group.name}.{i}.{p.name}")
        for g in group.groups:
            unit[g.name] = _units(trial, g, f"{prefix}{group.name}.{i}.", {**outer, **unit})
        units.append(unit)
    return units


def sample(trial: optuna.Trial, space: SearchSpace) -> Architecture:
    """Sample one architecture of `space` with `trial`'s sampler."""
    prefix = ""
    if space.families:
        chosen = trial.suggest_categorical("family", [f.family for f in space.families])
        space = next(f for f in space.families if f.family == chosen)
        prefix = f"{chosen}."
    params: dict[str, Any] = {}
    for p in space.params:
        if _active(p, params):
            params[p.name] = _suggest(trial, p, f"{prefix}{p.name}")
    assert space.repeated is not None
    units = _units(trial, space.repeated, prefix, params)
    return Architecture(family=space.family, params=params, units=tuple(units))
