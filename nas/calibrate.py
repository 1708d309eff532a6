"""Calibrating a profile's estimate on real measurements.

Two sources of measurements, one fit:

- `calibrate_from_csv(PROFILE, FILE.csv)` (`nas profiles calibrate PROFILE --from FILE.csv`): energies
  measured anywhere (a published table, another lab's board), one network per row.
- `calibrate_profile(PROFILE)` (`nas profiles calibrate PROFILE`): on the device itself, a fixed set of
  reference networks (REFERENCE_MODELS; they exercise every operator kind the estimate has a
  coefficient for) measured with the profile's sensor meter and protocol.

The operator-level estimate (nas/energy/estimate.py) is linear in its coefficients (energy per MAC,
per element operation, per cache and DRAM byte, per operator call, per forward call, static power),
with features computed by the estimate itself (so fit and estimate never disagree on what runs and
what moves). They are fitted by bounded linear least squares on relative errors
(`scipy.optimize.lsq_linear`, every coefficient >= 0, static power at most the device's peak power),
with a weak pull toward the profile's own values (REGULARIZATION): a direction the measurements
cannot tell apart (e.g. two coefficients whose features move together in every measured network)
stays where the datasheet put it instead of drifting to an unphysical corner, while everything the
measurements do determine follows them. The quality reported is out-of-sample: k-fold
cross-validation (median absolute % error, share within +-10% and +-25%, Spearman rank correlation
of held-out predictions).

The result is a profile YAML: the original, with the fitted coefficients written under
`estimate.runtimes.RUNTIME` (the runtime the measurements were taken in), each with its source
("calibrated by nas profiles calibrate from FILE (sha256 ...), N networks, ..."), and an
`estimate.runtimes.RUNTIME.calibration` record (file, SHA-256, networks, folds, held-out errors).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nas.architecture import Architecture
from nas.config import PROFILES_DIR, parse_profile, read_yaml, resolve_named
from nas.deploy import Deployment, deploy, deployable, measure
from nas.energy import EnergyRecord, Meter, meter_class
from nas.energy.estimate import FITTED, Coefficients, coefficients, features, runtime_of
from nas.energy.opgraph import OperatorGraph, operator_graph
from nas.errors import ConfigError, MeterUnavailable
from nas.hardware import PRECISIONS, HardwareProfile

INPUT_SHAPE = (3, 32, 32)  # CIFAR-sized inputs: big enough that MLP widths reach DRAM-sized weights
NUM_CLASSES = 10
REGULARIZATION = 1e-7  # weight of the pull toward the profile's values (relative units; see docs/measurements.md)
FOLDS = 5


# ----------------------------------------------------------------------------------- reference set
@dataclass(frozen=True)
class ReferenceModel:
    """A named reference network (a genotype) for on-device calibration."""

    name: str
    architecture: dict[str, Any]


def _mlp(name: str, widths: Sequence[int]) -> ReferenceModel:
    return ReferenceModel(name, {"family": "mlp", "params": {"activation": "relu", "dropout": 0.0},
                                 "units": [{"width": w} for w in widths]})


def _cnn(name: str, stages: Sequence[tuple[str, int, int, int, int]], mult: float = 1.0) -> ReferenceModel:
    return ReferenceModel(name, {
        "family": "cnn", "params": {"activation": "relu", "width_multiplier": mult},
        "units": [{"block": b, "channels": c, "kernel": k, "repeats": r, "stride": s,
                   **({"expansion": 4} if b == "inverted_residual" else {})} for b, c, k, r, s in stages],
    })


def _nb201(name: str, cell: str, cells_per_stage: int = 5) -> ReferenceModel:
    from nas.models.nb201 import architecture_from_cell

    return ReferenceModel(name, architecture_from_cell(cell, cells_per_stage).to_dict())


# Fixed and ordered from small to large: weights from ~0.2 MB to ~120 MB in fp32 (so both sides of
# any cache from 1 MB to 50 MB are covered), MAC-heavy convolutions against byte-heavy MLPs, and
# NAS-Bench-201 cells heavy in pooling, residual additions, batch-norm and activations, and in
# operator calls (the skip/none cell: many tiny operators, few MACs).
REFERENCE_MODELS: tuple[ReferenceModel, ...] = (
    _mlp("mlp-64", [64]),
    _nb201("nb201-pool-skip", "|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|skip_connect~1|avg_pool_3x3~2|", 2),
    _mlp("mlp-512-256", [512, 256]),
    _cnn("cnn-dwsep-small", [("dwsep", 32, 3, 1, 2), ("dwsep", 64, 3, 1, 2)]),
    _nb201("nb201-1x1", "|nor_conv_1x1~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"),
    _cnn("cnn-conv-mid", [("conv", 32, 3, 2, 1), ("conv", 64, 3, 2, 2)]),
    _cnn("cnn-invres", [("inverted_residual", 24, 3, 2, 1), ("inverted_residual", 48, 5, 2, 2)]),
    _nb201("nb201-resnet", "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"),
    _mlp("mlp-1024x4", [1024, 1024, 1024, 1024]),
    _cnn("cnn-conv-wide", [("conv", 64, 3, 2, 1), ("conv", 128, 3, 2, 2), ("conv", 256, 3, 1, 2)]),
    _mlp("mlp-2048x2", [2048, 2048]),
    _mlp("mlp-4096x2", [4096, 4096]),
)


# ----------------------------------------------------------------------------------- the fit
@dataclass(frozen=True)
class FitResult:
    """Fitted coefficient values by column name, and a note per column (why kept, at a bound...)."""

    values: dict[str, float]
    notes: dict[str, str]


def fit(feature_rows: Sequence[Mapping[str, float]], measured: Sequence[float], prior: Mapping[str, float],
        upper: Mapping[str, float] | None = None, regularization: float = REGULARIZATION,
        fixed: Mapping[str, str] | None = None) -> FitResult:
    """Bounded least squares on relative errors with a weak pull toward `prior`.

    `feature_rows[i][c]` is what coefficient `c` multiplies for network i (J = sum c x feature);
    `measured[i]` its energy (J, > 0). Minimises sum_i ((pred_i - y_i) / y_i)^2 + regularization x
    sum_c ((value_c - prior_c) / prior_c)^2 subject to 0 <= value_c <= upper_c. A column no network
    exercises keeps its prior (noted); so does every column in `fixed` (column -> the reason). Raises
    ConfigError when there is no positive measurement.
    """
    from scipy.optimize import lsq_linear

    upper = upper or {}
    names = list(prior)
    y = np.asarray(measured, dtype=float)
    if len(y) == 0 or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ConfigError("calibration needs a positive measured energy for every network")
    x = np.array([[float(row.get(c, 0.0)) for c in names] for row in feature_rows], dtype=float)
    notes: dict[str, str] = {c: f"kept: {why}" for c, why in (fixed or {}).items() if c in prior}
    free = []
    for j, c in enumerate(names):
        if c in notes:
            continue
        if np.any(x[:, j] > 0):
            free.append(j)
        else:
            notes[c] = "kept from the profile: no measured network exercises it"
    values = {c: float(prior[c]) for c in names}
    if free:
        # unknowns z = value / scale; scale = the prior where positive, else what would explain
        # the median measurement alone
        scale = np.array([prior[names[j]] if prior[names[j]] > 0 else
                          float(np.median(y / np.maximum(x[:, j], 1e-300))) for j in free])
        held = [j for j in range(len(names)) if j not in free]
        rest = y - (x[:, held] @ np.array([prior[names[j]] for j in held]) if held else 0.0)
        a = x[:, free] * scale / y[:, None]
        b = rest / y
        target_prior = np.array([1.0 if prior[names[j]] > 0 else 0.0 for j in free])
        reg = math.sqrt(regularization * max(len(y), 1) / len(free)) if regularization > 0 else 0.0
        a_all = np.vstack([a, reg * np.eye(len(free))]) if reg else a
        b_all = np.concatenate([b, reg * target_prior]) if reg else b
        hi = np.array([upper.get(names[j], np.inf) / scale[k] for k, j in enumerate(free)])
        res = lsq_linear(a_all, b_all, bounds=(np.zeros(len(free)), hi), method="bvls")
        for k, j in enumerate(free):
            c = names[j]
            values[c] = float(res.x[k] * scale[k])
            if c in upper and values[c] >= upper[c] * (1 - 1e-6):
                notes[c] = "fitted, at its upper bound: the measurements barely determine it"
            elif values[c] <= 0:
                notes[c] = "fitted to 0: the measurements show no cost for it"
    return FitResult(values, notes)


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return float("nan")
    return float(spearmanr(a, b).statistic)


@dataclass(frozen=True)
class Quality:
    """Errors of predictions against measurements (relative errors, as fractions)."""

    networks: int
    median_abs_error: float
    within_10pct: float
    within_25pct: float
    spearman: float

    @classmethod
    def of(cls, predicted: Sequence[float], measured: Sequence[float]) -> Quality:
        """Quality of `predicted` against `measured` energies (same order, J)."""
        p, y = np.asarray(predicted, float), np.asarray(measured, float)
        err = np.abs(p / y - 1) if len(y) else np.zeros(0)
        return cls(len(y), float(np.median(err)) if len(y) else float("nan"),
                   float(np.mean(err <= 0.10)) if len(y) else float("nan"),
                   float(np.mean(err <= 0.25)) if len(y) else float("nan"), _spearman(p, y))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {"networks": self.networks, "median_abs_pct_error": round(self.median_abs_error * 100, 3),
                "within_10_pct": round(self.within_10pct, 4), "within_25_pct": round(self.within_25pct, 4),
                "spearman": round(self.spearman, 4) if math.isfinite(self.spearman) else None}

    def describe(self) -> str:
        """One line for people: median error, shares within 10% and 25%, Spearman."""
        return (f"median |error| {self.median_abs_error * 100:.1f}%, {self.within_10pct * 100:.0f}% within +-10%, "
                f"{self.within_25pct * 100:.0f}% within +-25%, Spearman {self.spearman:.3f} ({self.networks} networks)")


def cross_validate(feature_rows: Sequence[Mapping[str, float]], measured: Sequence[float], prior: Mapping[str, float],
                   upper: Mapping[str, float] | None = None, folds: int = FOLDS,
                   regularization: float = REGULARIZATION) -> tuple[Quality, int]:
    """k-fold cross-validated quality of `fit` (k = min(folds, networks)): networks sorted by energy
    are dealt round-robin into folds (each fold spans the energy range; deterministic); each fold is
    predicted by a fit on the others. Returns (quality over all held-out predictions, k)."""
    n = len(measured)
    k = max(2, min(folds, n))
    if n < 2:
        return Quality.of([], []), 0
    order = np.argsort(np.asarray(measured))
    fold_of = np.empty(n, dtype=int)
    fold_of[order] = np.arange(n) % k
    predicted = np.zeros(n)
    for f in range(k):
        train = [i for i in range(n) if fold_of[i] != f]
        test = [i for i in range(n) if fold_of[i] == f]
        result = fit([feature_rows[i] for i in train], [measured[i] for i in train], prior, upper, regularization)
        for i in test:
            predicted[i] = sum(feature_rows[i].get(c, 0.0) * v for c, v in result.values.items())
    return Quality.of(predicted, measured), k


# ----------------------------------------------------------------------------------- columns
def _column(name: str, precision: str) -> str:
    """Fit columns: the energy per MAC is per precision; every other coefficient is shared."""
    return f"{name}[{precision}]" if name == "energy_per_mac_j" else name


def feature_row(graph: OperatorGraph, coefs: Coefficients, batch_size: int) -> dict[str, float]:
    """The estimate's features of one network, keyed by fit column."""
    return {_column(k, coefs.precision): v for k, v in features(graph, coefs, batch_size).items()}


def _priors(profile: HardwareProfile, runtime: str, precisions: Sequence[str]) -> tuple[dict[str, float], dict[str, float], dict[str, Coefficients]]:
    coefs = {p: coefficients(profile, p, runtime) for p in precisions}
    prior: dict[str, float] = {}
    for p, c in coefs.items():
        for k in FITTED:
            prior.setdefault(_column(k, p), c.value(k))
    upper = {"static_power_w": profile.peak_power_w.value}
    return prior, upper, coefs


# ----------------------------------------------------------------------------------- CSV input
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
        raise ConfigError(f"not a JSON genotype nor a NAS-Bench-201 cell string (JSON: {e.msg} at char {e.pos})") from None
    arch = Architecture.from_dict(doc, "genotype")
    if arch.family not in FAMILIES:
        raise ConfigError(f"unknown family {arch.family!r} (valid: {', '.join(sorted(FAMILIES))})")
    return arch


def read_measurements(path: str | Path, *, input_shape: Sequence[int] = INPUT_SHAPE, num_classes: int = NUM_CLASSES,
                      batch_size: int = 1, precision: str = "fp32", require_energy: bool = True) -> list[MeasuredNetwork]:
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
        classes = _positive_int(value, "num_classes", num_classes, bad)
        batch = _positive_int(value, "batch_size", batch_size, bad)
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
                raise bad(arch_col, f"cannot build it for input {'x'.join(map(str, shape))}: "
                                    f"{str(e).splitlines()[0][:160]}") from None
            checked.add(key)
        rows.append(MeasuredNetwork(i, arch_text, arch, shape, classes, batch, prec, energy))
    if not rows:
        raise ConfigError(f"{path}: no data rows")
    return rows


def _positive_int(value: Mapping[str, str], column: str, default: int, bad: Any) -> int:
    if not value.get(column):
        return int(default)
    try:
        n = int(value[column])
    except ValueError:
        raise bad(column, f"expected a positive integer, got {value[column]!r}") from None
    if n < 1:
        raise bad(column, f"expected a positive integer, got {n}")
    return n


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


# ----------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class FittedCoefficient:
    """One fitted coefficient: its value before (the profile's) and after, and a note."""

    name: str
    before: float
    after: float
    fitted: bool  # False: kept from the profile (not exercised)
    note: str


@dataclass(frozen=True)
class CalibrationPoint:
    """One measured network: its counts, measured energy and the calibrated estimate (J)."""

    name: str
    params: int
    macs: int
    measured_j: float
    fitted_j: float
    spread_j: float = 0.0

    @property
    def error(self) -> float:
        """(fitted - measured) / measured, a fraction."""
        return (self.fitted_j - self.measured_j) / self.measured_j


@dataclass(frozen=True)
class Calibration:
    """The outcome of a calibration: the calibrated profile (and its YAML document), the points,
    the coefficients before and after, the in-sample fit and the cross-validated quality."""

    profile: HardwareProfile
    document: dict[str, Any]
    runtime: str
    points: tuple[CalibrationPoint, ...]
    coefficients: tuple[FittedCoefficient, ...]
    fit_quality: Quality
    held_out: Quality
    folds: int
    source: str  # where the measurements came from: a CSV path, or the device and meter
    source_sha256: str | None
    device_name: str
    method: str
    based_on: str
    output: Path | None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def fit_error(self) -> float:
        """Root mean square of the in-sample relative errors."""
        errs = [p.error for p in self.points]
        return math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else float("nan")

    @property
    def max_error(self) -> float:
        """The largest in-sample |relative error|."""
        return max((abs(p.error) for p in self.points), default=float("nan"))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {
            "profile": self.profile.name,
            "based_on": self.based_on,
            "runtime": self.runtime,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "device_name": self.device_name,
            "method": self.method,
            "fit_error": self.fit_error,
            "max_error": self.max_error,
            "in_sample": self.fit_quality.to_dict(),
            "cross_validation": {"folds": self.folds, **self.held_out.to_dict()},
            "output": str(self.output) if self.output else None,
            "coefficients": [c.__dict__ for c in self.coefficients],
            "points": [{**p.__dict__, "error": p.error} for p in self.points],
        }


def _fit_and_build(profile: HardwareProfile, doc: Any, path: Path, runtime: str,
                   rows: Sequence[Mapping[str, float]], measured: Sequence[float], names: Sequence[str],
                   counts: Sequence[tuple[int, int]], spreads: Sequence[float], precisions: Sequence[str],
                   source: str, sha: str | None, device_name: str, method: str, output: str | Path | None,
                   write: bool, regularization: float = REGULARIZATION) -> Calibration:
    if len(measured) < 3:
        raise ConfigError(f"calibration needs at least 3 measured networks, got {len(measured)}")
    prior, upper, _ = _priors(profile, runtime, precisions)
    result = fit(rows, measured, prior, upper, regularization)
    held_out, folds = cross_validate(rows, measured, prior, upper, regularization=regularization)
    fitted_j = [sum(r.get(c, 0.0) * v for c, v in result.values.items()) for r in rows]
    points = tuple(CalibrationPoint(n, c[0], c[1], m, f, s)
                   for n, c, m, f, s in zip(names, counts, measured, fitted_j, spreads, strict=True))
    in_sample = Quality.of(fitted_j, measured)
    coefs = tuple(FittedCoefficient(c, prior[c], result.values[c], not result.notes.get(c, "").startswith("kept"),
                                    result.notes.get(c, "fitted")) for c in prior)
    provenance = {
        "date": date.today().isoformat(),
        "source": source,
        "sha256": sha,
        "device": device_name,
        "method": method,
        "networks": len(measured),
        "folds": folds,
        "held_out": held_out.to_dict(),
        "in_sample": in_sample.to_dict(),
    }
    stamp = (f"calibrated by nas profiles calibrate {provenance['date']} from {source}"
             f"{f' (sha256 {sha[:12]})' if sha else ''}, {len(measured)} networks ({method}); "
             f"{folds}-fold held-out: median |error| {held_out.median_abs_error * 100:.1f}%, "
             f"{held_out.within_10pct * 100:.0f}% within +-10%")
    new_doc = calibrated_document(doc, profile, runtime, result, stamp, provenance)
    out = Path(output) if output is not None else Path(f"{profile.name}-calibrated.yaml")
    calibrated = parse_profile(new_doc, str(out), out.stem)  # what we write must load
    cal = Calibration(calibrated, new_doc, runtime, points, coefs, in_sample, held_out, folds, source, sha,
                      device_name, method, str(path), out if write else None, provenance)
    if write:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_yaml_text(cal))
    return cal


def _load(name_or_path: str | Path) -> tuple[Path, Any, HardwareProfile]:
    path = resolve_named(name_or_path, PROFILES_DIR, "hardware profile")
    doc = read_yaml(path)
    return path, doc, parse_profile(doc, str(path), path.stem)


def calibrate_from_csv(name_or_path: str | Path, csv_path: str | Path, output: str | Path | None = None, *,
                       runtime: str | None = None, input_shape: Sequence[int] = INPUT_SHAPE,
                       num_classes: int = NUM_CLASSES, batch_size: int = 1, precision: str = "fp32",
                       write: bool = True, regularization: float = REGULARIZATION) -> Calibration:
    """Fit the profile's estimate to the energies of a measurements CSV (see `read_measurements`;
    the other arguments are the defaults of its optional columns) measured in `runtime` (default:
    the profile's), and write the calibrated profile to `output` (default NAME-calibrated.yaml here).
    `regularization`: the weight of the pull toward the profile's values (see `fit`).

    Raises ConfigError (one line: file, row, column) on bad input; nothing is written then.
    """
    path, doc, profile = _load(name_or_path)
    runtime = runtime or runtime_of(profile)
    measurements = read_measurements(csv_path, input_shape=input_shape, num_classes=num_classes,
                                     batch_size=batch_size, precision=precision)
    cache = GraphCache()
    rows, counts = [], []
    precisions = sorted({m.precision for m in measurements})
    coefs = {p: coefficients(profile, p, runtime) for p in precisions}
    for m in measurements:
        graph, params = cache.get(m.architecture, m.input_shape, m.num_classes)
        rows.append(feature_row(graph, coefs[m.precision], m.batch_size))
        counts.append((params, graph.macs))
    sha = hashlib.sha256(Path(csv_path).read_bytes()).hexdigest()
    names = [_short_name(m) for m in measurements]
    return _fit_and_build(profile, doc, path, runtime, rows, [m.energy_j for m in measurements], names, counts,
                          [0.0] * len(rows), precisions, str(csv_path), sha, "measurements file",
                          "measured (from file)", output, write, regularization)


def _short_name(m: MeasuredNetwork) -> str:
    return f"row {m.row}: {m.architecture.describe()}"


# ----------------------------------------------------------------------------------- on the device
def reference_deployment(
    ref: ReferenceModel, profile: HardwareProfile, meter: Meter, seed: int
) -> tuple[Deployment, torch.Tensor]:
    """The reference model deployed at the profile's precision, and one input batch (batch, *INPUT_SHAPE)."""
    from nas.models import build_model

    torch.manual_seed(seed)
    model = build_model(Architecture.from_dict(ref.architecture, ref.name), INPUT_SHAPE, NUM_CLASSES)
    gen = torch.Generator().manual_seed(seed)
    batch = torch.rand((profile.batch_size, *INPUT_SHAPE), generator=gen)
    return deploy(model, profile.precision, batch, meter.torch_device, input_shape=INPUT_SHAPE), batch


def sensor_meter(profile: HardwareProfile) -> Meter:
    """The profile's own sensor meter; never the estimate (calibrating an estimate is circular)."""
    cls = meter_class(profile.meter)
    probe = cls.probe(profile)
    if not probe.usable:
        raise MeterUnavailable(
            f"cannot calibrate profile {profile.name!r} here: its {profile.meter.upper()} sensor is "
            f"unavailable ({probe.reason}); run the calibration on the device the profile describes"
        )
    return cls(profile)


def calibrate_profile(
    name_or_path: str | Path, output: str | Path | None = None, *, meter: Meter | None = None,
    models: Sequence[ReferenceModel] = REFERENCE_MODELS, seed: int = 0, write: bool = True,
) -> Calibration:
    """Measure the reference models with the profile's sensor, fit (the same fit as
    `calibrate_from_csv`), and write the calibrated profile.

    `output` defaults to NAME-calibrated.yaml in the current folder. `meter` replaces the profile's
    own sensor meter (tests pass one driving a fake device); it must not be the estimate. Raises
    ConfigError for an estimate profile, MeterUnavailable when the sensor is absent.
    """
    path, doc, profile = _load(name_or_path)
    if profile.meter == "estimate" and meter is None:
        raise ConfigError(
            f"profile {profile.name!r} has no sensor (meter: estimate): calibration measures reference "
            f"models with the profile's sensor; calibrate a sensor profile (nvml, rapl) on its device, "
            f"or fit measurements taken elsewhere with --from FILE.csv"
        )
    if len(models) < 3:
        raise ConfigError(f"calibration needs at least 3 reference models, got {len(models)}")
    own = meter is None
    meter = meter or sensor_meter(profile)
    if meter.name == "estimate":
        raise ConfigError("calibration needs a sensor meter, not the estimate")
    why = deployable(profile.precision, profile, meter.torch_device)
    if why:
        raise ConfigError(f"profile {profile.name!r}: {why}")
    runtime = runtime_of(profile)
    coefs = coefficients(profile, profile.precision, runtime)
    records: list[EnergyRecord] = []
    rows, counts = [], []
    try:
        for i, ref in enumerate(models):
            deployment, batch = reference_deployment(ref, profile, meter, seed + i)
            records.append(measure(meter, deployment, batch))
            stats = deployment.stats
            graph = stats.operators if stats.operators is not None else operator_graph(deployment.model, INPUT_SHAPE)
            rows.append(feature_row(graph, coefs, profile.batch_size))
            counts.append((stats.params, stats.macs))
    finally:
        if own:
            meter.close()
    device_name = records[0].device_name
    return _fit_and_build(profile, doc, path, runtime, rows, [r.energy_per_inference_j for r in records],
                          [m.name for m in models], counts, [r.spread_j for r in records], [profile.precision],
                          f"{len(models)} reference networks measured on {device_name}", None, device_name,
                          f"{records[0].method}, {records[0].objective_uses} energy", output, write)


# ----------------------------------------------------------------------------------- output
def calibrated_document(doc: Any, profile: HardwareProfile, runtime: str, result: FitResult, stamp: str,
                        provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The profile document with the fitted values under `estimate.runtimes.RUNTIME` (each with
    `stamp` as its source; kept ones keep their value and say so) and the provenance record."""
    new = copy.deepcopy(doc)
    new["name"] = f"{profile.name}-calibrated"
    new["description"] = f"{profile.description} (calibrated, {runtime})".strip()
    est = new.setdefault("estimate", {})
    section = est.setdefault("runtimes", {}).setdefault(runtime, {})
    for column, value in result.values.items():
        note = result.notes.get(column, "")
        source = stamp if not note.startswith("kept") else f"{note} (unchanged)"
        entry = {"value": float(f"{value:.6g}"), "source": source}
        if column.startswith("energy_per_mac_j["):
            section.setdefault("energy_per_mac_j", {})[column[len("energy_per_mac_j["):-1]] = entry
        else:
            section[column] = entry
    section["calibration"] = json.loads(json.dumps(dict(provenance)))
    if runtime != runtime_of(profile):
        new["runtime"] = runtime
    return new


def _yaml_text(c: Calibration) -> str:
    head = [
        f"# Calibrated by `nas profiles calibrate` from {c.based_on}, runtime {c.runtime}:",
        f"# measurements: {c.source}" + (f" (sha256 {c.source_sha256})" if c.source_sha256 else ""),
        f"# {c.folds}-fold cross-validated (held out): {c.held_out.describe()}",
        f"# in sample: {c.fit_quality.describe()}",
        f"# The fitted coefficients are under estimate.runtimes.{c.runtime}; everything else is the original profile's.",
    ]
    return "\n".join(head) + "\n" + yaml.safe_dump(c.document, sort_keys=False, width=120)


def format_calibration(c: Calibration, max_rows: int = 40) -> str:
    """The per-network table (first `max_rows`), the coefficients before and after, the quality."""
    lines = [f"calibrated {c.based_on} as {c.profile.name} (runtime {c.runtime}) from {c.source}",
             f"{'network':<40} {'params':>11} {'MACs':>13} {'measured J':>11} {'fitted J':>11} {'error':>7}"]
    for p in c.points[:max_rows]:
        name = p.name if len(p.name) <= 40 else p.name[:37] + "..."
        lines.append(f"{name:<40} {p.params:>11,} {p.macs:>13,} {p.measured_j:>11.4e} {p.fitted_j:>11.4e} "
                     f"{p.error * 100:>+6.1f}%")
    if len(c.points) > max_rows:
        lines.append(f"... {len(c.points) - max_rows} more (--json lists all)")
    lines.append("coefficients:")
    for f in c.coefficients:
        lines.append(f"  {f.name:<28} {f.before:.4g} -> {f.after:.4g}  ({f.note})")
    lines.append(f"fit error: {c.fit_error * 100:.1f}% RMS, {c.max_error * 100:.1f}% max (relative, in sample)")
    lines.append(f"held out ({c.folds}-fold cross-validation): {c.held_out.describe()}")
    if c.output is not None:
        lines.append(f"wrote {c.output}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- nas estimate
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
        return {"row": self.row, "architecture": self.architecture, **self.estimate.to_dict(),
                "measured_energy_j": self.measured_j, "error": self.error}


def estimate_networks(profile: str | Path | HardwareProfile, *, csv_path: str | Path | None = None,
                      architecture: str | None = None, runtime: str | None = None,
                      input_shape: Sequence[int] = INPUT_SHAPE, num_classes: int = NUM_CLASSES,
                      batch_size: int | None = None, precision: str | None = None) -> list[EstimatedNetwork]:
    """The estimate of every network of a CSV (`csv_path`, columns as `read_measurements`, `energy_j`
    optional) or of one `architecture` (JSON genotype or NAS-Bench-201 cell string), in input order.

    Batch size and precision default to the CSV's columns, then to the arguments, then to the
    profile's. Raises ConfigError on bad input (one line naming file, row and column, or the flag).
    """
    from nas.config import load_profile
    from nas.energy.estimate import estimate_graph

    prof = profile if isinstance(profile, HardwareProfile) else load_profile(profile)
    if (csv_path is None) == (architecture is None):
        raise ConfigError("give exactly one of --from FILE.csv and --arch JSON")
    batch = batch_size or prof.batch_size
    prec = precision or prof.precision
    if csv_path is not None:
        networks = read_measurements(csv_path, input_shape=input_shape, num_classes=num_classes,
                                     batch_size=batch, precision=prec, require_energy=False)
    else:
        try:
            arch = parse_architecture(architecture or "")
        except ConfigError as e:
            raise ConfigError(f"--arch: {e}") from None
        networks = [MeasuredNetwork(1, architecture or "", arch, tuple(input_shape), num_classes, batch, prec, None)]
    cache = GraphCache()
    coefs: dict[str, Coefficients] = {}
    out = []
    for m in networks:
        if m.precision not in coefs:
            coefs[m.precision] = coefficients(prof, m.precision, runtime)
        try:
            graph, params = cache.get(m.architecture, m.input_shape, m.num_classes)
        except (RuntimeError, ValueError) as e:
            where = f"{csv_path}: row {m.row}, column 'architecture'" if csv_path else "--arch"
            raise ConfigError(f"{where}: cannot build it for input {'x'.join(map(str, m.input_shape))}: "
                              f"{str(e).splitlines()[0][:160]}") from None
        out.append(EstimatedNetwork(m.row, m.text, estimate_graph(graph, params, coefs[m.precision], m.batch_size),
                                    m.energy_j))
    return out


def format_estimates(rows: Sequence[EstimatedNetwork], max_rows: int = 50) -> str:
    """The `nas estimate` table (first `max_rows` rows) and, where energies were given, the errors."""
    if not rows:
        return "no networks"
    first = rows[0].estimate
    lines = [f"profile {first.coefficients.profile}, runtime {first.coefficients.runtime} "
             f"(estimated:analytical; energy per inference)",
             f"{'row':>5} {'energy/inf J':>12} {'MACs':>13} {'params':>10} {'calls':>6} {'measured J':>11} "
             f"{'error':>7}  architecture"]
    for r in rows[:max_rows]:
        e = r.estimate
        measured = f"{r.measured_j:>11.4e}" if r.measured_j is not None else f"{'-':>11}"
        error = f"{r.error * 100:>+6.1f}%" if r.error is not None else f"{'-':>7}"
        lines.append(f"{r.row:>5} {e.energy_per_inference_j:>12.4e} {e.macs:>13,} {e.params:>10,} "
                     f"{int(e.terms['operator_calls']):>6} {measured} {error}  {r.architecture[:90]}")
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more rows (--json lists all)")
    measured = [r for r in rows if r.measured_j is not None]
    if measured:
        q = Quality.of([r.estimate.energy_per_inference_j for r in measured], [r.measured_j for r in measured])
        lines.append(f"against the measured energies: {q.describe()}")
    return "\n".join(lines)


__all__ = ["FOLDS", "REFERENCE_MODELS", "Calibration", "CalibrationPoint", "EstimatedNetwork", "FitResult", "GraphCache",
           "MeasuredNetwork", "Quality", "ReferenceModel", "calibrate_from_csv", "calibrate_profile",
           "cross_validate", "estimate_networks", "fit", "format_calibration", "format_estimates", "parse_architecture", "parse_input_shape",
           "read_measurements"]
