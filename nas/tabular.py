"""Tabular mode: evaluate every architecture of a small discrete space once, then replay.

`nas bench build` (nas.search.bench) enumerates the space's decision tree (every architecture exactly once, conditional
parameters included), trains and measures each candidate with the normal trial code, and stores
the results in a JSON table. A search with `--table FILE` then looks evaluations up instead of
training, so sampler comparisons cost milliseconds per trial and are exactly repeatable.
"""

from __future__ import annotations

import json
import math
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


def check_replayable(
    table: Table,
    space: SearchSpace,
    shown: str,
    sampler: str,
    energy_budget_j: float | None = None,
    latency_budget_s: float | None = None,
) -> None:
    """Refuse (ConfigError, one line) a replay that would ask `table` for an architecture it lacks:
    a sampler other than measure-first (it draws from the whole space) on a table holding only part
    of its space, as an imported sample does; or measure-first (it draws from the table's rows) with
    budgets that no row meets."""
    from nas.budget import Budget

    if sampler != "measure-first":
        try:
            missing = next((p for p, _ in enumerate_space(space) if key_of(p) not in table.rows), None)
        except ConfigError:  # continuous or too large to enumerate: not the table's whole space either
            missing = {}
        if missing is not None:
            raise ConfigError(
                f"{shown}: holds {len(table.rows):,} architectures, only part of its space; --sampler {sampler} "
                "draws from the whole space and would ask for ones the table lacks: use --sampler measure-first, "
                "which draws from the table's rows"
            )
        return
    budget = Budget(energy_budget_j, latency_budget_s)
    if not budget.active:
        return

    def number(v: Any) -> float | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        return float(v) if ok else None

    costs = [
        (e, number(r["user_attrs"].get("latency_s")))
        for r in table.rows.values()
        if (e := number(r["user_attrs"].get("energy_per_inference_j", r["values"].get("energy")))) is not None
    ]
    if not any(max(budget.violations(e, lat or 0.0).values()) <= 0 for e, lat in costs):
        flags = " and ".join(
            f
            for f, v in (("--energy-budget", energy_budget_j), ("--latency-budget", latency_budget_s))
            if v is not None
        )
        lowest = f"energy per inference {min(e for e, _ in costs):.4g} J" if costs else "no energies recorded"
        latencies = [lat for _, lat in costs if lat is not None]
        if latency_budget_s is not None and latencies:
            lowest += f", latency {min(latencies):.4g} s"
        raise ConfigError(
            f"{shown}: none of its {len(table.rows):,} architectures is within {flags} (lowest: {lowest})"
        )


TABLE_SETTINGS = {
    "space": str,
    "profile": str,
    "dataset": str,
    "epochs": int,
    "batch_size": int,
    "lr": (int, float),
    "split_seed": int,
    "allow_estimate": bool,
    "objectives": list,
}
MAX_TABLE_BYTES = 512 << 20  # 4,662 architectures take about 20 MB


def load_table(path: str | Path) -> Table:
    """Read and validate a `nas bench build` table; ConfigError naming the file and field otherwise."""
    from nas.atomic import one_line

    shown = one_line(str(path))
    try:
        if Path(path).stat().st_size > MAX_TABLE_BYTES:
            raise ConfigError(f"{shown}: larger than {MAX_TABLE_BYTES:,} bytes; not an energy-nas table")
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{shown}: table file not found (build one with `nas bench build`)") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a folder, not a table file") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        reason = (str(e).splitlines() or [""])[0][:120]
        raise ConfigError(f"{shown}: not a readable table ({e.__class__.__name__}: {reason})") from None
    if not isinstance(doc, dict) or doc.get("version") != TABLE_VERSION or "rows" not in doc:
        raise ConfigError(f"{shown}: field 'version': not an energy-nas table (version {TABLE_VERSION})")
    _check_table(doc, shown)
    return Table(doc["space"], doc["profile"], doc["settings"], doc["rows"], float(doc.get("build_s", 0.0)))


def _check_table(doc: dict[str, Any], shown: str) -> None:
    """Field types of a table document: space/profile/settings mappings, rows of finite values."""

    def bad(field: str, expected: str) -> ConfigError:
        """The one-line error for `field` of the table."""
        return ConfigError(f"{shown}: field '{field}': {expected}")

    for key in ("space", "profile", "settings", "rows"):
        if not isinstance(doc.get(key), dict):
            raise bad(key, "expected a mapping")
    for key, kind in TABLE_SETTINGS.items():
        value = doc["settings"].get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise bad(f"settings.{key}", f"expected {getattr(kind, '__name__', 'a number')}, got {str(value)[:40]!r}")
    if not doc["rows"]:
        raise bad("rows", "expected at least one evaluated architecture")
    names = None
    for key, row in doc["rows"].items():
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("values"), dict)
            or not isinstance(row.get("user_attrs"), dict)
        ):
            raise bad(f"rows[{key[:40]!r}]", "expected a mapping with 'values' and 'user_attrs' mappings")
        for name, value in row["values"].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad(
                    f"rows[{key[:40]!r}].values.{str(name)[:40]}", f"expected a finite number, got {str(value)[:40]!r}"
                )
        if names is None:
            names = set(row["values"])
        elif set(row["values"]) != names:
            raise bad(f"rows[{key[:40]!r}].values", f"expected the objectives {sorted(names)} like the other rows")


def imported_dataset(settings: dict[str, Any]) -> Any:
    """A stand-in Dataset for an imported table's replay: no examples, the file named as the data
    (its accuracies were measured by whoever made the file, on their data)."""
    import torch

    from nas.data import Dataset

    empty = torch.zeros(0, 1)
    return Dataset(
        str(settings["dataset"]),
        empty,
        empty.long(),
        empty,
        empty.long(),
        empty,
        empty.long(),
        0,
        int(settings.get("split_seed", 0)),
    )


__all__ = [
    "BENCH_OBJECTIVES",
    "BENCH_SPACE",
    "TABLE_VERSION",
    "Table",
    "enumerate_space",
    "imported_dataset",
    "key_of",
    "load_table",
]
