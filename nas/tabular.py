"""Tabular mode: evaluate every architecture of a small discrete space once, then replay.

`nas bench build` (nas.search.bench) enumerates the space's decision tree (every architecture exactly once, conditional
parameters included), trains and measures each candidate with the normal trial code, and stores
the results in a JSON table. A search with `--table FILE` then looks evaluations up instead of
training, so sampler comparisons cost milliseconds per trial and are exactly repeatable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.architecture import Architecture
from nas.errors import ConfigError, RunError
from nas.searchspace import SearchSpace
from nas.space import sample

TABLE_VERSION = 1
# `nas bench build` defaults (the other settings default as in SearchSettings): a small fully
# discrete space, and every objective so that a table serves searches on any subset of them.
BENCH_SPACE = "bench-mlp"
BENCH_OBJECTIVES = ("accuracy", "energy", "latency", "params")


class _PathTrial:
    """Stands in for an Optuna trial: decision i takes option path[i] (0 past the path's end) and
    records how many options each decision had, so the caller can walk the tree like an odometer."""

    def __init__(self, path: Sequence[int]) -> None:
        self.path, self.sizes, self.params = list(path), [], {}

    def _pick(self, name: str, options: Sequence[Any]) -> Any:
        i = len(self.sizes)
        self.sizes.append(len(options))
        value = options[self.path[i] if i < len(self.path) else 0]
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._pick(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self._pick(name, list(range(low, high + 1, step)))

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        if step is None:
            raise ConfigError(f"parameter {name!r} is continuous: a tabular space needs choices or a step")
        n = int(round((high - low) / step))
        return self._pick(name, [round(low + i * step, 12) for i in range(n + 1)])


def enumerate_space(space: SearchSpace, limit: int = 100_000) -> Iterator[tuple[dict[str, Any], Architecture]]:
    """Every (optuna params, architecture) of a discrete space, each exactly once."""
    path: list[int] = []
    count = 0
    while True:
        trial = _PathTrial(path)
        arch = sample(trial, space)  # type: ignore[arg-type]
        yield trial.params, arch
        count += 1
        if count > limit:
            raise ConfigError(f"{space.source}: more than {limit} architectures; too large for a table")
        full = [path[i] if i < len(path) else 0 for i in range(len(trial.sizes))]
        i = len(full) - 1
        while i >= 0 and full[i] + 1 >= trial.sizes[i]:
            i -= 1
        if i < 0:
            return
        path = full[:i] + [full[i] + 1]


def key_of(params: dict[str, Any]) -> str:
    """The table key of one architecture: its Optuna parameters as sorted JSON."""
    return json.dumps(params, sort_keys=True)


@dataclass(frozen=True)
class Table:
    """A built table: the space and profile documents, the build settings, one row per architecture."""

    space_doc: dict[str, Any]  # the space YAML document the table enumerates
    profile_doc: dict[str, Any]
    settings: dict[str, Any]
    rows: dict[str, dict[str, Any]]  # key_of(params) -> trial values and user attrs
    build_s: float

    def lookup(self, params: dict[str, Any]) -> dict[str, Any]:
        """The row of the architecture with Optuna parameters `params` (RunError if absent)."""
        try:
            return self.rows[key_of(params)]
        except KeyError:
            raise RunError(f"architecture {params} is not in the table (was it built from this space?)") from None


def load_table(path: str | Path) -> Table:
    """Read a table written by `nas bench build`; ConfigError naming the file if it is not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: table file not found (build one with `nas bench build`)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a readable table ({e})") from None
    if not isinstance(doc, dict) or doc.get("version") != TABLE_VERSION or "rows" not in doc:
        raise ConfigError(f"{path}: field 'version': not an energy-nas table (version {TABLE_VERSION})")
    return Table(doc["space"], doc["profile"], doc["settings"], doc["rows"], float(doc.get("build_s", 0.0)))


def imported_dataset(settings: dict[str, Any]) -> Any:
    """A stand-in Dataset for an imported table's replay: no examples, the file named as the data
    (its accuracies were measured by whoever made the file, on their data)."""
    import torch

    from nas.data import Dataset

    empty = torch.zeros(0, 1)
    return Dataset(str(settings["dataset"]), empty, empty.long(), empty, empty.long(), empty, empty.long(), 0,
                   int(settings.get("split_seed", 0)))


__all__ = [
    "BENCH_OBJECTIVES", "BENCH_SPACE", "TABLE_VERSION", "Table", "enumerate_space", "imported_dataset", "key_of",
    "load_table",
]
