"""Sampling an Architecture from a SearchSpace through an Optuna trial.

Optuna parameter names mirror the YAML: `activation`, `layers.count`, `layers.0.width`,
`stages.2.expansion`. Per-unit parameters exist only for units that exist, and a parameter with a
`when` condition only where the condition holds, so samplers see a truly conditional space.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from nas.architecture import Architecture
from nas.searchspace import Param, SearchSpace


def _active(param: Param, values: Mapping[str, Any]) -> bool:
    return all(values.get(key) in allowed for key, allowed in param.when)


def _suggest(trial: optuna.Trial, p: Param, name: str) -> Any:
    if p.kind == "choice":
        return trial.suggest_categorical(name, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)


def sample(trial: optuna.Trial, space: SearchSpace) -> Architecture:
    """Sample one architecture of `space` with `trial`'s sampler."""
    params: dict[str, Any] = {}
    for p in space.params:
        if _active(p, params):
            params[p.name] = _suggest(trial, p, p.name)
    group = space.repeated
    count = _suggest(trial, group.count, f"{group.name}.count")
    units = []
    for i in range(count):
        unit: dict[str, Any] = {}
        for p in group.params:
            if _active(p, {**params, **unit}):
                unit[p.name] = _suggest(trial, p, f"{group.name}.{i}.{p.name}")
        units.append(unit)
    return Architecture(family=space.family, params=params, units=tuple(units))
