"""`nas bench import`: a table of architectures and their metrics (CSV) as a replayable table.

A published benchmark (NAS-Bench-201 cells with their CIFAR-100 accuracy and measured Raspberry Pi 5
energy, `shared/data/nb201-pi5/cifar100-onnx.csv`) becomes a table that `nas search --table`
replays like one built by `nas bench build`: each row's architecture is turned into the Optuna
parameters the search space's own sampling code would suggest for it, and looked up by them.

Columns (names configurable): the architecture (a NAS-Bench-201 cell string for the `nb201` family,
or the JSON genotype `nas.architecture.Architecture.to_dict` writes, for any family), the accuracy
(a fraction, or percent when the column name ends in `_pct`), the energy per inference in J and,
optionally, the latency per inference in s (`latency_s` when present). The energies are the file's own: every replayed trial
records `energy_method` "imported" and the file as `energy_source`, never a meter of ours.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.architecture import Architecture
from nas.config import SearchSpace
from nas.errors import ConfigError, NasError
from nas.runs import write_json
from nas.tabular import TABLE_VERSION, Table, key_of

ENERGY_METHOD = "imported"


def _nb201(text: str, space: SearchSpace) -> Architecture:
    from nas.models.nb201 import architecture_from_cell

    return architecture_from_cell(text, int(space.repeated.count.low))


# families whose benchmark tables name architectures in their own notation (others: JSON genotypes)
NOTATIONS: dict[str, Callable[[str, SearchSpace], Architecture]] = {"nb201": _nb201}


class _ArchTrial:
    """Answers `nas.space.sample`'s suggestions from an architecture, checking each value against
    the space's choices, so the recorded params are exactly those a search would suggest."""

    def __init__(self, arch: Architecture, space: SearchSpace) -> None:
        self.arch, self.space, self.params = arch, space, {}
        self.group = space.repeated.name

    def _value(self, name: str) -> Any:
        if name == f"{self.group}.count":
            return len(self.arch.units)
        if name.startswith(f"{self.group}."):
            _, i, key = name.split(".", 2)
            unit = self.arch.units[int(i)]
            if key not in unit:
                raise ConfigError(f"unit {i} has no {key!r}")
            return unit[key]
        if name not in self.arch.params:
            raise ConfigError(f"no value for parameter {name!r}")
        return self.arch.params[name]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        value = self._value(name)
        if value not in list(choices):
            raise ConfigError(f"{name} = {value!r} is not one of the space's choices {list(choices)}")
        self.params[name] = value
        return value

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        value = self._value(name)
        if not isinstance(value, int) or not low <= value <= high or (value - low) % step:
            raise ConfigError(f"{name} = {value!r} is outside the space's range [{low}, {high}] step {step}")
        self.params[name] = value
        return value

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        value = self._value(name)
        if not isinstance(value, (int, float)) or not low <= value <= high:
            raise ConfigError(f"{name} = {value!r} is outside the space's range [{low}, {high}]")
        self.params[name] = value
        return value


def params_of(arch: Architecture, space: SearchSpace) -> dict[str, Any]:
    """The Optuna parameters `nas.space.sample` suggests for `arch` in `space`.

    Raises:
        ConfigError: when `arch` is not a point of `space` (other family, a value outside the choices,
            a depth outside the count range, a missing value).
    """
    from nas.space import sample

    if arch.family != space.family:
        raise ConfigError(f"family {arch.family!r} is not the space's ({space.family!r})")
    trial = _ArchTrial(arch, space)
    if sample(trial, space) != Architecture(
        arch.family, {k: v for k, v in arch.params.items() if k in {p.name for p in space.params}}, arch.units
    ):
        raise ConfigError("the architecture has values the space does not sample")
    return trial.params


def import_table(
    csv_path: str | Path,
    settings: Any,
    out: str | Path,
    *,
    arch_column: str = "arch_str",
    accuracy_column: str = "accuracy_pct",
    energy_column: str = "energy_j",
    latency_column: str | None = None,
) -> Table:
    """Read `csv_path` into a table of `settings.space` (a nas.search.SearchSettings: space, profile)
    and write it to `out` (JSON, as `nas bench build` writes).

    Rows with the same architecture must agree (NAS-Bench-201 lists isomorphic cells as distinct
    rows: those are distinct genotypes here and stay distinct rows). Accuracies are fractions in
    [0, 1] (percent in [0, 100] when the column name ends in `_pct`); energies finite and > 0 J.

    Raises:
        ConfigError: one line naming the file, and the row (1-based, the header being row 1) and
            column of the first bad value, or the missing column.
    """
    from nas.config import PROFILES_DIR, load_space, parse_profile, read_yaml, resolve_named

    path = Path(csv_path)
    space = load_space(settings.space)
    profile_path = resolve_named(settings.profile, PROFILES_DIR, "hardware profile")
    profile_doc = read_yaml(profile_path)
    profile = parse_profile(profile_doc, str(profile_path), profile_path.stem)
    percent = accuracy_column.endswith("_pct")
    parse_arch = NOTATIONS.get(space.family)
    t0 = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    try:
        handle = path.open(newline="")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for col in (arch_column, accuracy_column, energy_column) + ((latency_column,) if latency_column else ()):
            if col not in header:
                raise ConfigError(f"{path}: no column {col!r} (columns: {', '.join(header) or 'none'})")
        if latency_column is None and "latency_s" in header:
            latency_column = "latency_s"
        for n, row in enumerate(reader, start=2):

            def bad(column: str, why: str, n: int = n) -> ConfigError:
                return ConfigError(f"{path}: row {n}, column {column!r}: {why}")

            text = (row.get(arch_column) or "").strip()
            try:
                if text.startswith("{"):
                    arch = Architecture.from_dict(json.loads(text))
                elif parse_arch is not None:
                    arch = parse_arch(text, space)
                else:
                    raise ConfigError(f"expected a JSON genotype for family {space.family!r}")
                params = params_of(arch, space)
            except (NasError, json.JSONDecodeError, ValueError) as e:
                raise bad(arch_column, str(e)) from None
            acc = _number(
                row.get(accuracy_column),
                lambda v: 0 <= v <= (100 if percent else 1),
                f"expected an accuracy in [0, {100 if percent else 1}]",
                bad,
                accuracy_column,
            )
            acc = acc / 100 if percent else acc
            energy = _number(
                row.get(energy_column), lambda v: v > 0, "expected an energy in J, > 0", bad, energy_column
            )
            latency = (
                _number(row.get(latency_column), lambda v: v > 0, "expected a latency in s, > 0", bad, latency_column)
                if latency_column
                else None
            )
            key = key_of(params)
            values = {"accuracy": acc, "energy": energy, **({"latency": latency} if latency is not None else {})}
            if key in rows and rows[key]["values"] != values:
                raise bad(
                    arch_column,
                    f"the same architecture as row {rows[key]['user_attrs']['source_row']} with different figures",
                )
            rows[key] = {
                "values": values,
                "user_attrs": {
                    "architecture": arch.to_dict(),
                    "arch": _label(arch),
                    "val_accuracy": acc,
                    "test_accuracy": None,
                    "energy_per_inference_j": energy,
                    "energy_method": ENERGY_METHOD,
                    "energy_source": path.name,
                    "latency_s": latency,
                    "source_row": n,
                },
            }
    if not rows:
        raise ConfigError(f"{path}: no rows")
    objectives = ["accuracy", "energy"] + (["latency"] if latency_column else [])
    resolved = {
        "space": space.name,
        "profile": profile.name,
        "dataset": f"imported:{path.name}",
        "objectives": objectives,
        "epochs": None,
        "batch_size": None,
        "lr": None,
        "split_seed": 0,
        "allow_estimate": True,
        "imported": {
            "file": path.name,
            "columns": {
                "architecture": arch_column,
                "accuracy": accuracy_column,
                "energy": energy_column,
                "latency": latency_column,
            },
            "accuracy_unit": "percent" if percent else "fraction",
        },
    }
    table = Table(space.to_dict(), profile_doc, resolved, rows, time.perf_counter() - t0)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(
        Path(out),
        {
            "version": TABLE_VERSION,
            "space": table.space_doc,
            "profile": table.profile_doc,
            "settings": resolved,
            "build_s": table.build_s,
            "rows": rows,
        },
    )
    return table


def _number(
    text: str | None, ok: Callable[[float], bool], expected: str, bad: Callable[[str, str], ConfigError], column: str
) -> float:
    try:
        value = float(text) if text is not None and text.strip() else math.nan
    except ValueError:
        raise bad(column, f"{expected}, got {text!r}") from None
    if not math.isfinite(value) or not ok(value):
        raise bad(column, f"{expected}, got {text!r}")
    return value


def _label(arch: Architecture) -> str:
    """The family's label of `arch` (nas.models imports torch: only when a row is stored)."""
    from nas.models import architecture_label

    return architecture_label(arch)
