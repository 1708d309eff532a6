"""Calibrating a profile's estimate on real measurements.

Two sources of measurements, one fit:

- `calibrate_from_csv(PROFILE, FILE.csv)` (`nas profiles calibrate PROFILE --from FILE.csv`): energies
  measured anywhere (a published table, another lab's board), one network per row.
- `calibrate_profile(PROFILE)` (`nas profiles calibrate PROFILE`): on the device itself, a fixed set of
  reference networks (REFERENCE_MODELS; they exercise every operator kind the estimate has a
  coefficient for) measured with the profile's sensor meter and protocol.

The estimate (nas/energy/estimate.py) is linear in its coefficients, with features computed by the
estimate itself (fit and estimate never disagree on what runs and what moves); nas/fitting.py fits
them (bounded least squares on relative errors, a weak pull toward the profile's values) and reports
the out-of-sample quality by k-fold cross-validation.

The result is a profile YAML: the original, with the fitted coefficients written under
`estimate.runtimes.RUNTIME` (the runtime the measurements were taken in), each with its source
("calibrated by nas profiles calibrate from FILE (sha256 ...), N networks, ..."), and an
`estimate.runtimes.RUNTIME.calibration` record (file, SHA-256, networks, folds, held-out errors).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import torch

from nas.architecture import Architecture
from nas.calibration import (
    Calibration,
    CalibrationPoint,
    FittedCoefficient,
    calibrated_document,
    format_calibration,
    yaml_text,
)
from nas.config import PROFILES_DIR, parse_profile, read_yaml, resolve_named
from nas.deploy import Deployment, deploy, deployable, measure
from nas.energy import EnergyRecord, Meter, meter_class
from nas.energy.estimate import FITTED, Coefficients, coefficients, features, runtime_of
from nas.energy.opgraph import OperatorGraph, operator_graph
from nas.errors import ConfigError, MeterUnavailable
from nas.fitting import REGULARIZATION, Quality, cross_validate, fit
from nas.hardware import HardwareProfile
from nas.measurements import (
    INPUT_SHAPE,
    NUM_CLASSES,
    GraphCache,
    MeasuredNetwork,
    graph_of,
    read_measurements,
)
from nas.models import architecture_label, build_model, family_names, get_family


# ----------------------------------------------------------------------------------- reference set
@dataclass(frozen=True)
class ReferenceModel:
    """A named reference network (a genotype) for on-device calibration."""

    name: str
    architecture: dict[str, Any]


def reference_models() -> tuple[ReferenceModel, ...]:
    """Every registered family's reference networks (`Family.reference_networks`), plugins
    included, small to large (`ReferenceNetwork.order`): for the built-in families, fp32 weights from ~0.2 MB to
    ~120 MB (both sides of any cache from 1 MB to 50 MB), MAC-heavy convolutions against
    byte-heavy MLPs, and NAS-Bench-201 cells heavy in pooling, residual additions and operator calls."""
    refs = [ref for name in family_names() for ref in get_family(name).reference_networks()]
    return tuple(ReferenceModel(r.name, dict(r.architecture)) for r in sorted(refs, key=lambda r: (r.order, r.name)))


REFERENCE_MODELS: tuple[ReferenceModel, ...] = reference_models()


# ----------------------------------------------------------------------------------- columns
def _column(name: str, precision: str) -> str:
    """Fit columns: the energy per MAC is per precision; every other coefficient is shared."""
    return f"{name}[{precision}]" if name == "energy_per_mac_j" else name


def feature_row(graph: OperatorGraph, coefs: Coefficients, batch_size: int) -> dict[str, float]:
    """The estimate's features of one network, keyed by fit column."""
    return {_column(k, coefs.precision): v for k, v in features(graph, coefs, batch_size).items()}


def _priors(
    profile: HardwareProfile, runtime: str, precisions: Sequence[str]
) -> tuple[dict[str, float], dict[str, float], dict[str, Coefficients]]:
    coefs = {p: coefficients(profile, p, runtime) for p in precisions}
    prior: dict[str, float] = {}
    for p, c in coefs.items():
        for k in FITTED:
            prior.setdefault(_column(k, p), c.value(k))
    upper = {"static_power_w": profile.peak_power_w.value}
    return prior, upper, coefs


def _fit_and_build(
    profile: HardwareProfile,
    doc: Any,
    path: Path,
    runtime: str,
    rows: Sequence[Mapping[str, float]],
    measured: Sequence[float],
    names: Sequence[str],
    counts: Sequence[tuple[int, int]],
    spreads: Sequence[float],
    precisions: Sequence[str],
    source: str,
    sha: str | None,
    device_name: str,
    method: str,
    output: str | Path | None,
    write: bool,
    regularization: float = REGULARIZATION,
) -> Calibration:
    if len(measured) < 3:
        raise ConfigError(f"calibration needs at least 3 measured networks, got {len(measured)}")
    prior, upper, _ = _priors(profile, runtime, precisions)
    result = fit(rows, measured, prior, upper, regularization)
    held_out, folds = cross_validate(rows, measured, prior, upper, regularization=regularization)
    fitted_j = [sum(r.get(c, 0.0) * v for c, v in result.values.items()) for r in rows]
    points = tuple(
        CalibrationPoint(n, c[0], c[1], m, f, s)
        for n, c, m, f, s in zip(names, counts, measured, fitted_j, spreads, strict=True)
    )
    in_sample = Quality.of(fitted_j, measured)
    coefs = tuple(
        FittedCoefficient(
            c, prior[c], result.values[c], not result.notes.get(c, "").startswith("kept"), result.notes.get(c, "fitted")
        )
        for c in prior
    )
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
    stamp = (
        f"calibrated by nas profiles calibrate {provenance['date']} from {source}"
        f"{f' (sha256 {sha[:12]})' if sha else ''}, {len(measured)} networks ({method}); "
        f"{folds}-fold held-out: median |error| {held_out.median_abs_error * 100:.1f}%, "
        f"{held_out.within_10pct * 100:.0f}% within +-10%"
    )
    new_doc = calibrated_document(doc, profile, runtime, result, stamp, provenance)
    out = Path(output) if output is not None else Path(f"{profile.name}-calibrated.yaml")
    calibrated = parse_profile(new_doc, str(out), out.stem)  # what we write must load
    cal = Calibration(
        calibrated,
        new_doc,
        runtime,
        points,
        coefs,
        in_sample,
        held_out,
        folds,
        source,
        sha,
        device_name,
        method,
        str(path),
        out if write else None,
        provenance,
    )
    if write:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml_text(cal))
    return cal


def _load(name_or_path: str | Path) -> tuple[Path, Any, HardwareProfile]:
    path = resolve_named(name_or_path, PROFILES_DIR, "hardware profile")
    doc = read_yaml(path)
    return path, doc, parse_profile(doc, str(path), path.stem)


def calibrate_from_csv(
    name_or_path: str | Path,
    csv_path: str | Path,
    output: str | Path | None = None,
    *,
    runtime: str | None = None,
    input_shape: Sequence[int] = INPUT_SHAPE,
    num_classes: int = NUM_CLASSES,
    batch_size: int = 1,
    precision: str = "fp32",
    write: bool = True,
    regularization: float = REGULARIZATION,
    cache: GraphCache | None = None,
) -> Calibration:
    """Fit the profile's estimate to the energies of a measurements CSV (see `read_measurements`;
    the other arguments are the defaults of its optional columns) measured in `runtime` (default:
    the profile's), and write the calibrated profile to `output` (default NAME-calibrated.yaml here).
    `regularization`: the weight of the pull toward the profile's values (see `fit`); `cache`
    shares built operator graphs with other calls.

    Raises ConfigError (one line: file, row, column) on bad input; nothing is written then.
    """
    path, doc, profile = _load(name_or_path)
    runtime = runtime or runtime_of(profile)
    measurements = read_measurements(
        csv_path, input_shape=input_shape, num_classes=num_classes, batch_size=batch_size, precision=precision
    )
    cache = cache or GraphCache()
    rows, counts = [], []
    precisions = sorted({m.precision for m in measurements})
    coefs = {p: coefficients(profile, p, runtime) for p in precisions}
    for m in measurements:
        graph, params = graph_of(cache, m, csv_path)
        rows.append(feature_row(graph, coefs[m.precision], m.batch_size))
        counts.append((params, graph.macs))
    sha = hashlib.sha256(Path(csv_path).read_bytes()).hexdigest()
    names = [_short_name(m) for m in measurements]
    return _fit_and_build(
        profile,
        doc,
        path,
        runtime,
        rows,
        [m.energy_j for m in measurements],
        names,
        counts,
        [0.0] * len(rows),
        precisions,
        str(csv_path),
        sha,
        "measurements file",
        "measured (from file)",
        output,
        write,
        regularization,
    )


def _short_name(m: MeasuredNetwork) -> str:
    return f"row {m.row}: {architecture_label(m.architecture)}"


# ----------------------------------------------------------------------------------- on the device
def reference_deployment(
    ref: ReferenceModel, profile: HardwareProfile, meter: Meter, seed: int
) -> tuple[Deployment, torch.Tensor]:
    """The reference model deployed at the profile's precision, and one input batch (batch, *INPUT_SHAPE)."""
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
    name_or_path: str | Path,
    output: str | Path | None = None,
    *,
    meter: Meter | None = None,
    models: Sequence[ReferenceModel] = REFERENCE_MODELS,
    seed: int = 0,
    write: bool = True,
    regularization: float = REGULARIZATION,
) -> Calibration:
    """Measure the reference models with the profile's sensor, fit (the same fit as
    `calibrate_from_csv`), and write the calibrated profile.

    `output` defaults to NAME-calibrated.yaml in the current folder. `meter` replaces the profile's
    own sensor meter (tests pass one driving a fake device); it must not be the estimate.
    `regularization`: the weight of the pull toward the profile's values (see `nas.fitting.fit`). Raises
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
    return _fit_and_build(
        profile,
        doc,
        path,
        runtime,
        rows,
        [r.energy_per_inference_j for r in records],
        [m.name for m in models],
        counts,
        [r.spread_j for r in records],
        [profile.precision],
        f"{len(models)} reference networks measured on {device_name}",
        None,
        device_name,
        f"{records[0].method}, {records[0].objective_uses} energy",
        output,
        write,
        regularization,
    )


__all__ = [
    "INPUT_SHAPE",
    "NUM_CLASSES",
    "REFERENCE_MODELS",
    "reference_models",
    "Calibration",
    "ReferenceModel",
    "calibrate_from_csv",
    "calibrate_profile",
    "feature_row",
    "format_calibration",
]
