"""Measurements files: networks, one per CSV row, with how they ran and (for calibration) their
measured energy; and `nas estimate`, the estimate of every network of such a file.

Columns: `architecture` (or NAS-Bench-201's `arch_str`): a JSON genotype or a NAS-Bench-201 cell
string (recognised by its leading `|`); `energy_j`: energy per inference in J; optional
`input_shape` (`3x32x32`), `num_classes`, `batch_size`, `precision`. Bad rows fail with one line
naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas.architecture import Architecture
from nas.energy.estimate import Coefficients, coefficients
from nas.energy.opgraph import OperatorGraph, operator_graph
from nas.errors import ConfigError
from nas.fitting import Quality
from nas.hardware import PRECISIONS, HardwareProfile
from nas.yamldoc import MAX_INT

INPUT_SHAPE = (3, 32, 32)  # CIFAR-sized inputs, NAS-Bench-201's
NUM_CLASSES = 10
MAX_BATCH = 65536  # as a profile's batch_size: beyond it the estimate's float arithmetic overflows


@dataclass(frozen=True)
class MeasuredNetwork:
    """One row of a measurements CSV: a network, how it ran, and (for calibration) its energy (J)."""

    row: int  # 1-based data row (the header is line 1, so this is on line row + 1)
    text: str  # the architecture as written
    architecture: Architecture
    input_shape: tuple[int, ...]
    num_classes: int
    batch_size: int
    precision: str
    energy_j: float | None


ARCH_COLUMNS = ("architecture", "arch_str")  # arch_str: NAS-Bench-201's own column name


def parse_input_shape(text: str) -> tuple[int, ...]:
    """`3x32x32` -> (3, 32, 32). Raises ValueError with what is expected."""
    parts = str(text).strip().lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected CxHxW such as 3x32x32, got {text!r}") from None
    if not shape or any(s < 1 for s in shape) or len(shape) > 4:
        raise ValueError(f"expected 1 to 4 positive sizes such as 3x32x32, got {text!r}")
    return shape


def parse_architecture(text: str) -> Architecture:
    """A genotype as JSON (`{"family": ..., "params": ..., "units": ...}`) or a NAS-Bench-201 cell
    string (recognised by its leading `|`). Raises ConfigError saying what is wrong."""
    from nas.models import FAMILIES
    from nas.models.nb201 import architecture_from_cell

    text = text.strip()
    if text.startswith("|"):
        return architecture_from_cell(text)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"not a JSON genotype nor a NAS-Bench-201 cell string (JSON: {e.msg} at char {e.pos})"
        ) from None
    arch = Architecture.from_dict(doc, "genotype")
    if arch.family not in FAMILIES:
        raise ConfigError(f"unknown family {arch.family!r} (valid: {', '.join(sorted(FAMILIES))})")
    return arch


def read_measurements(
    path: str | Path,
    *,
    input_shape: Sequence[int] = INPUT_SHAPE,
    num_classes: int = NUM_CLASSES,
    batch_size: int = 1,
    precision: str = "fp32",
    require_energy: bool = True,
) -> list[MeasuredNetwork]:
    """The rows of a measurements CSV.

    Columns: `architecture` (or `arch_str`): a JSON genotype or a NAS-Bench-201 cell string;
    `energy_j`: energy per inference in J (> 0; required when `require_energy`); optional
    `input_shape` (`3x32x32`), `num_classes`, `batch_size`, `precision`, whose defaults are the
    arguments. Other columns are ignored. Raises ConfigError, one line naming the file, the row and
    the column, for a missing column, an unparsable architecture, a non-positive energy, ...; each
    architecture is built once to check it.
    """
    from nas.models import build_model

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read file ({e.__class__.__name__}: {e})") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise ConfigError(f"{path}: empty file: expected a header with columns 'architecture' and 'energy_j'")
    reader.fieldnames = header
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise ConfigError(f"{path}: column '{twice[0]}' appears more than once in the header")
    arch_col = next((c for c in ARCH_COLUMNS if c in header), None)
    if arch_col is None:
        raise ConfigError(f"{path}: missing column 'architecture' (columns: {', '.join(header)})")
    if require_energy and "energy_j" not in header:
        raise ConfigError(f"{path}: missing column 'energy_j' (columns: {', '.join(header)})")
    rows: list[MeasuredNetwork] = []
    checked: set[tuple[str, tuple[int, ...], int]] = set()
    for i, raw in enumerate(reader, start=1):

        def bad(column: str, why: str, row: int = i, line: int = reader.line_num) -> ConfigError:
            return ConfigError(f"{path}: row {row} (line {line}), column '{column}': {why}")

        if None in raw:
            raise bad(header[-1], f"more fields than the header's {len(header)}")
        value = {k: (v or "").strip() for k, v in raw.items()}
        arch_text = value.get(arch_col, "")
        if not arch_text:
            raise bad(arch_col, "empty")
        try:
            arch = parse_architecture(arch_text)
        except ConfigError as e:
            raise bad(arch_col, str(e)) from None
        try:
            shape = parse_input_shape(value["input_shape"]) if value.get("input_shape") else tuple(input_shape)
        except ValueError as e:
            raise bad("input_shape", str(e)) from None
        classes = _positive_int(value, "num_classes", num_classes, bad, MAX_INT)
        batch = _positive_int(value, "batch_size", batch_size, bad, MAX_BATCH)
        prec = value.get("precision") or precision
        if prec not in PRECISIONS:
            raise bad("precision", f"expected one of {', '.join(PRECISIONS)}, got {prec!r}")
        energy = None
        if "energy_j" in value and (require_energy or value["energy_j"]):
            try:
                energy = float(value["energy_j"])
            except ValueError:
                raise bad("energy_j", f"expected a number of joules, got {value['energy_j']!r}") from None
            if not math.isfinite(energy) or energy <= 0:
                raise bad("energy_j", f"expected a positive energy per inference (J), got {value['energy_j']}")
        key = (arch.to_json(), shape, classes)
        if key not in checked:
            try:
                with torch.device("meta"):
                    build_model(arch, shape, classes)
            except ConfigError as e:
                raise bad(arch_col, str(e)) from None
            except (RuntimeError, ValueError) as e:  # shapes that do not fit the input
                raise bad(
                    arch_col, f"cannot build it for input {'x'.join(map(str, shape))}: {str(e).splitlines()[0][:160]}"
                ) from None
            checked.add(key)
        rows.append(MeasuredNetwork(i, arch_text, arch, shape, classes, batch, prec, energy))
    if not rows:
        raise ConfigError(f"{path}: no data rows")
    return rows


def _positive_int(value: Mapping[str, str], column: str, default: int, bad: Any, most: int) -> int:
    if not value.get(column):
        return int(default)
    try:
        n = int(value[column])
    except ValueError:
        raise bad(column, f"expected a positive integer, got {value[column]!r}") from None
    if not 1 <= n <= most:
        raise bad(column, f"expected a positive integer of at most {most}, got {value[column][:40]}")
    return n


def graph_of(cache: GraphCache, m: MeasuredNetwork, csv_path: str | Path | None) -> tuple[OperatorGraph, int]:
    """`cache.get` for one input row; a network that cannot be built or run for the row's input (a
    shape that does not fit it, or weights too large for memory) is a ConfigError naming the row."""
    try:
        return cache.get(m.architecture, m.input_shape, m.num_classes)
    except (RuntimeError, ValueError, MemoryError) as e:
        where = f"{csv_path}: row {m.row}, column 'architecture'" if csv_path else "--arch"
        why = str(e).splitlines()[0][:160] if str(e) else e.__class__.__name__
        raise ConfigError(f"{where}: cannot build it for input {'x'.join(map(str, m.input_shape))}: {why}") from None


class GraphCache:
    """Operator graphs and parameter counts by (genotype, input shape, classes), built once each."""

    def __init__(self) -> None:
        self._graphs: dict[tuple[str, tuple[int, ...], int], tuple[OperatorGraph, int]] = {}
        self._memo: dict = {}  # recordings of repeated submodules, shared across networks

    def get(self, arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> tuple[OperatorGraph, int]:
        """(operator graph for one sample, parameter count) of the float network."""
        from nas.models import build_model

        key = (arch.to_json(), tuple(input_shape), int(num_classes))
        if key not in self._graphs:
            with torch.device("meta"):  # no weight initialisation
                model = build_model(arch, input_shape, num_classes)
            params = sum(int(p.numel()) for p in model.parameters())
            model = model.to_empty(device="cpu")
            with torch.no_grad():
                for t in [*model.parameters(), *model.buffers()]:
                    t.zero_()  # values do not matter; uninitialised memory could hold slow denormals
            self._graphs[key] = (operator_graph(model, input_shape, memo=self._memo), params)
        return self._graphs[key]


@dataclass(frozen=True)
class EstimatedNetwork:
    """One input row of `nas estimate`: the network, its estimate, and its measured energy when the
    input had one (then `error` = estimate / measured - 1)."""

    row: int
    architecture: str
    estimate: Any  # nas.energy.estimate.Estimate
    measured_j: float | None

    @property
    def error(self) -> float | None:
        """estimate / measured - 1 (None without a measured energy)."""
        if self.measured_j is None:
            return None
        return self.estimate.energy_per_inference_j / self.measured_j - 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {
            "row": self.row,
            "architecture": self.architecture,
            **self.estimate.to_dict(),
            "measured_energy_j": self.measured_j,
            "error": self.error,
        }


def estimate_networks(
    profile: str | Path | HardwareProfile,
    *,
    csv_path: str | Path | None = None,
    architecture: str | None = None,
    runtime: str | None = None,
    input_shape: Sequence[int] = INPUT_SHAPE,
    num_classes: int = NUM_CLASSES,
    batch_size: int | None = None,
    precision: str | None = None,
    cache: GraphCache | None = None,
) -> list[EstimatedNetwork]:
    """The estimate of every network of a CSV (`csv_path`, columns as `read_measurements`, `energy_j`
    optional) or of one `architecture` (JSON genotype or NAS-Bench-201 cell string), in input order.

    Batch size and precision default to the CSV's columns, then to the arguments, then to the
    profile's. `cache` shares built operator graphs between calls. Raises ConfigError on bad input
    (one line naming file, row and column, or the flag).
    """
    from nas.config import load_profile
    from nas.energy.estimate import estimate_graph

    prof = profile if isinstance(profile, HardwareProfile) else load_profile(profile)
    if (csv_path is None) == (architecture is None):
        raise ConfigError("give exactly one of --from FILE.csv and --arch JSON")
    batch = batch_size or prof.batch_size
    prec = precision or prof.precision
    if csv_path is not None:
        networks = read_measurements(
            csv_path,
            input_shape=input_shape,
            num_classes=num_classes,
            batch_size=batch,
            precision=prec,
            require_energy=False,
        )
    else:
        try:
            arch = parse_architecture(architecture or "")
        except ConfigError as e:
            raise ConfigError(f"--arch: {e}") from None
        networks = [MeasuredNetwork(1, architecture or "", arch, tuple(input_shape), num_classes, batch, prec, None)]
    cache = cache or GraphCache()
    coefs: dict[str, Coefficients] = {}
    out = []
    for m in networks:
        if m.precision not in coefs:
            coefs[m.precision] = coefficients(prof, m.precision, runtime)
        graph, params = graph_of(cache, m, csv_path)
        out.append(
            EstimatedNetwork(m.row, m.text, estimate_graph(graph, params, coefs[m.precision], m.batch_size), m.energy_j)
        )
    return out


def format_estimates(rows: Sequence[EstimatedNetwork], max_rows: int = 50) -> str:
    """The `nas estimate` table (first `max_rows` rows) and, where energies were given, the errors."""
    if not rows:
        return "no networks"
    first = rows[0].estimate
    lines = [
        f"profile {first.coefficients.profile}, runtime {first.coefficients.runtime} "
        f"(estimated:analytical; energy per inference)",
        f"{'row':>5} {'energy/inf J':>12} {'MACs':>13} {'params':>10} {'calls':>6} {'measured J':>11} "
        f"{'error':>7}  architecture",
    ]
    for r in rows[:max_rows]:
        e = r.estimate
        measured = f"{r.measured_j:>11.4e}" if r.measured_j is not None else f"{'-':>11}"
        error = f"{r.error * 100:>+6.1f}%" if r.error is not None else f"{'-':>7}"
        lines.append(
            f"{r.row:>5} {e.energy_per_inference_j:>12.4e} {e.macs:>13,} {e.params:>10,} "
            f"{int(e.terms['operator_calls']):>6} {measured} {error}  {r.architecture[:90]}"
        )
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more rows (--json lists all)")
    measured = [r for r in rows if r.measured_j is not None]
    if measured:
        q = Quality.of([r.estimate.energy_per_inference_j for r in measured], [r.measured_j for r in measured])
        lines.append(f"against the measured energies: {q.describe()}")
    return "\n".join(lines)


__all__ = [
    "ARCH_COLUMNS",
    "INPUT_SHAPE",
    "NUM_CLASSES",
    "EstimatedNetwork",
    "GraphCache",
    "MeasuredNetwork",
    "estimate_networks",
    "format_estimates",
    "graph_of",
    "parse_architecture",
    "parse_input_shape",
    "read_measurements",
]
