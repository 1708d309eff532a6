"""`nas profiles calibrate NAME`: fit a profile's estimate coefficients to real measurements.

On a machine with the profile's sensor, a fixed set of reference models (MLPs and CNNs from small
to larger than the last-level cache) is measured with the profile's meter and protocol. The
analytical estimate (nas/energy/estimate.py) is linear in its coefficients:

    energy per inference = e_mac x MACs + e_cache x cache bytes + e_dram x DRAM bytes
                           + static power x modelled latency per inference

where the byte counts (which bytes hit the cache, which DRAM) and the roofline latency come from the
model and the profile's cache size, peak throughput and bandwidth, which are not fitted. The four
coefficients are fitted by bounded least squares on relative errors (scipy.optimize.lsq_linear:
every coefficient >= 0, static power <= the profile's peak power), so small and large models weigh
alike. A coefficient the reference set cannot tell apart (its feature
is zero for every model) or that the fit drives to zero where the profile needs it positive keeps
the profile's value, and its source says so. The fitted value for the objective's figure (gross or
net, per `measurement.subtract_idle`) is what is fitted.

The result is a new profile YAML whose fitted numbers' `source` reads "calibrated on DEVICE DATE by
nas profiles calibrate, fit error X%", fit error being the root mean square of the relative errors.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nas.architecture import Architecture
from nas.config import (
    PROFILES_DIR,
    HardwareProfile,
    Sourced,
    parse_profile,
    read_yaml,
    resolve_named,
)
from nas.deploy import Deployment, deploy, deployable, measure
from nas.energy import EnergyRecord, Meter, meter_class
from nas.energy.estimate import inference_terms
from nas.errors import ConfigError, MeterUnavailable
from nas.models import build_model, family_names, get_family

INPUT_SHAPE = (3, 32, 32)  # CIFAR-sized inputs: big enough that MLP widths reach DRAM-sized weights
NUM_CLASSES = 10


@dataclass(frozen=True)
class ReferenceModel:
    """A model the calibration measures: its name and its architecture document (a genotype)."""

    name: str
    architecture: dict[str, Any]


def reference_models() -> tuple[ReferenceModel, ...]:
    """Every registered family's reference networks (`Family.reference_networks`), plugins
    included, small to large (`ReferenceNetwork.order`): for the built-in families, fp32 weights from ~0.2 MB to
    ~120 MB (both sides of any cache from 1 MB to 50 MB), MAC-heavy convolutions against
    byte-heavy MLPs."""
    refs = [ref for name in family_names() for ref in get_family(name).reference_networks()]
    return tuple(ReferenceModel(r.name, dict(r.architecture)) for r in sorted(refs, key=lambda r: (r.order, r.name)))


REFERENCE_MODELS: tuple[ReferenceModel, ...] = reference_models()


COEFFICIENTS = ("energy_per_mac_j", "energy_per_byte_cache_j", "energy_per_byte_dram_j", "static_power_w")
MUST_BE_POSITIVE = {"energy_per_mac_j", "energy_per_byte_cache_j", "energy_per_byte_dram_j"}


@dataclass(frozen=True)
class ReferencePoint:
    """One reference model: its counts, the estimate's features, measured and fitted energy."""

    name: str
    params: int
    macs: int
    features: dict[str, float]  # per inference: macs, cache bytes, DRAM bytes, modelled seconds
    measured_j: float
    fitted_j: float
    spread_j: float

    @property
    def error(self) -> float:
        """Relative error of the fitted energy against the measured one, (fitted - measured) / measured."""
        return (self.fitted_j - self.measured_j) / self.measured_j


@dataclass(frozen=True)
class FittedCoefficient:
    """One coefficient of the estimate before and after calibration (in its own unit: J per MAC,
    J per byte or W), whether it was fitted, and a note on how.
    """

    name: str
    before: float
    after: float
    fitted: bool  # False: kept from the profile (not identifiable, or fit to zero)
    note: str


@dataclass(frozen=True)
class Calibration:
    """The outcome of `calibrate_profile`: the calibrated profile and its YAML document, the reference
    points, the coefficients, and the fit's errors as fractions (RMS and largest relative error).
    """

    profile: HardwareProfile  # the calibrated profile
    document: dict[str, Any]  # its YAML document
    points: tuple[ReferencePoint, ...]
    coefficients: tuple[FittedCoefficient, ...]
    fit_error: float  # RMS of relative errors, as a fraction
    max_error: float
    device_name: str
    method: str
    based_on: str  # the profile file that was calibrated
    output: Path | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what `nas profiles calibrate --json` prints)."""
        return {
            "profile": self.profile.name,
            "device_name": self.device_name,
            "method": self.method,
            "fit_error": self.fit_error,
            "max_error": self.max_error,
            "output": str(self.output) if self.output else None,
            "coefficients": [c.__dict__ for c in self.coefficients],
            "points": [{**p.__dict__, "error": p.error} for p in self.points],
        }


# ----------------------------------------------------------------------------------- fitting
def features(profile: HardwareProfile, stats: Any, precision: str, batch_size: int) -> dict[str, float]:
    """The estimate's per-inference features, obtained from the estimate itself with unit
    coefficients (so calibration and estimate can never disagree on what moves where)."""

    def unit(mac: float, cache: float, dram: float, static: float) -> float:
        p = replace(
            profile,
            energy_per_mac_j={**profile.energy_per_mac_j, precision: Sourced(mac, "unit")},
            energy_per_byte_cache_j=Sourced(cache, "unit"),
            energy_per_byte_dram_j=Sourced(dram, "unit"),
            static_power_w=Sourced(static, "unit"),
        )
        return inference_terms(stats, p, precision, batch_size)["total_j"]

    return {
        "energy_per_mac_j": unit(1, 0, 0, 0),
        "energy_per_byte_cache_j": unit(0, 1, 0, 0),
        "energy_per_byte_dram_j": unit(0, 0, 1, 0),
        "static_power_w": unit(0, 0, 0, 1),
    }


def fit(
    feature_rows: Sequence[dict[str, float]], measured: Sequence[float], prior: dict[str, float],
    upper: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Bounded least squares on relative errors: every coefficient >= 0, and at most `upper` where
    given (static power is bounded by the device's peak power, or it soaks up measurement noise
    through its tiny latency feature). Returns (coefficients, note per coefficient kept); a
    coefficient not identifiable, or fitted to zero where it must be positive, keeps `prior`."""
    from scipy.optimize import lsq_linear

    upper = upper or {}
    y = np.asarray(measured, dtype=float)
    if len(y) == 0 or np.any(y <= 0):
        raise ConfigError("calibration needs a positive measured energy for every reference model")
    x_all = np.array([[row[c] for c in COEFFICIENTS] for row in feature_rows], dtype=float)
    fixed: dict[str, str] = {}
    for j, c in enumerate(COEFFICIENTS):
        if not np.any(x_all[:, j] > 0):
            fixed[c] = "kept from the profile: no reference model exercises it on this profile"
    solution: dict[str, float] = {}
    for _ in range(len(COEFFICIENTS)):
        free = [j for j, c in enumerate(COEFFICIENTS) if c not in fixed]
        if not free:
            break
        target = y - sum(x_all[:, j] * prior[c] for j, c in enumerate(COEFFICIENTS) if c in fixed)
        a = x_all[:, free] / y[:, None]  # relative errors: every model weighs alike
        scale = np.abs(a).max(axis=0)  # unit columns: MACs (~1e6) and seconds (~1e-7) side by side
        hi = np.array([upper.get(COEFFICIENTS[j], np.inf) for j in free]) * scale
        res = lsq_linear(a / scale, target / y, bounds=(np.zeros(len(free)), hi), method="bvls")
        solution = {COEFFICIENTS[j]: float(v) for j, v in zip(free, res.x / scale, strict=True)}
        zeroed = [c for c, v in solution.items() if v <= 0 and c in MUST_BE_POSITIVE]
        if not zeroed:
            break
        for c in zeroed:
            fixed[c] = "kept from the profile: the fit drove it to zero (not supported by the measurements)"
    out = {c: prior[c] if c in fixed else solution[c] for c in COEFFICIENTS}
    return out, fixed


def predict(row: dict[str, float], coefficients: dict[str, float]) -> float:
    """Energy per inference in J predicted by the linear model: sum over COEFFICIENTS of feature x
    coefficient (`row` from the estimate's features, `coefficients` in their SI units).
    """
    return sum(row[c] * coefficients[c] for c in COEFFICIENTS)


# ----------------------------------------------------------------------------------- measuring
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
    name_or_path: str | Path, output: str | Path | None = None, *, meter: Meter | None = None,
    models: Sequence[ReferenceModel] = REFERENCE_MODELS, seed: int = 0, write: bool = True,
) -> Calibration:
    """Measure the reference models with the profile's sensor, fit, and write the calibrated profile.

    `output` defaults to NAME-calibrated.yaml in the current folder. `meter` replaces the profile's
    own sensor meter (tests pass one driving a fake device); it must not be the estimate.
    """
    path = resolve_named(name_or_path, PROFILES_DIR, "hardware profile")
    doc = read_yaml(path)
    profile = parse_profile(doc, str(path), path.stem)
    if profile.meter == "estimate" and meter is None:
        raise ConfigError(
            f"profile {profile.name!r} has no sensor (meter: estimate): calibration measures reference "
            f"models with the profile's sensor; calibrate a sensor profile (nvml, rapl) on its device"
        )
    if len(models) < len(COEFFICIENTS):
        raise ConfigError(f"calibration needs at least {len(COEFFICIENTS)} reference models, got {len(models)}")
    own = meter is None
    meter = meter or sensor_meter(profile)
    if meter.name == "estimate":
        raise ConfigError("calibration needs a sensor meter, not the estimate")
    why = deployable(profile.precision, profile, meter.torch_device)
    if why:
        raise ConfigError(f"profile {profile.name!r}: {why}")
    records: list[EnergyRecord] = []
    rows: list[dict[str, float]] = []
    stats_list = []
    try:
        for i, ref in enumerate(models):
            deployment, batch = reference_deployment(ref, profile, meter, seed + i)
            records.append(measure(meter, deployment, batch))
            rows.append(features(profile, deployment.stats, profile.precision, profile.batch_size))
            stats_list.append(deployment.stats)
    finally:
        if own:
            meter.close()
    measured = [r.energy_per_inference_j for r in records]
    prior = {
        "energy_per_mac_j": profile.energy_per_mac_j[profile.precision].value,
        "energy_per_byte_cache_j": profile.energy_per_byte_cache_j.value,
        "energy_per_byte_dram_j": profile.energy_per_byte_dram_j.value,
        "static_power_w": profile.static_power_w.value,
    }
    upper = {"static_power_w": profile.peak_power_w.value}
    coefficients, kept = fit(rows, measured, prior, upper)
    points = tuple(
        ReferencePoint(ref.name, s.params, s.macs, row, m, predict(row, coefficients), r.spread_j)
        for ref, s, row, m, r in zip(models, stats_list, rows, measured, records, strict=True)
    )
    errors = [p.error for p in points]
    rms = math.sqrt(sum(e * e for e in errors) / len(errors))
    device_name = records[0].device_name
    stamp = (f"calibrated on {device_name} {date.today().isoformat()} by nas profiles calibrate, "
             f"fit error {rms * 100:.1f}% (RMS relative, {len(points)} reference models, "
             f"{records[0].method}, {records[0].objective_uses} energy)")
    new_doc = _calibrated_document(doc, profile, coefficients, kept, stamp)
    out = Path(output) if output is not None else Path(f"{profile.name}-calibrated.yaml")
    calibrated = parse_profile(new_doc, str(out), out.stem)  # what we write must load
    def note(c: str) -> str:
        if c in kept:
            return kept[c]
        if c in upper and coefficients[c] >= upper[c] * (1 - 1e-6):
            return "fitted, at its bound (the profile's peak power): the reference models barely determine it"
        return "fitted"

    fitted = tuple(FittedCoefficient(c, prior[c], coefficients[c], c not in kept, note(c)) for c in COEFFICIENTS)
    result = Calibration(calibrated, new_doc, points, fitted, rms, max(abs(e) for e in errors), device_name,
                         records[0].method, str(path), out if write else None)
    if write:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_yaml_text(result))
    return result


def _calibrated_document(doc: Any, profile: HardwareProfile, coefficients: dict[str, float],
                         kept: dict[str, str], stamp: str) -> dict[str, Any]:
    new = copy.deepcopy(doc)
    new["name"] = f"{profile.name}-calibrated"
    new["description"] = f"{profile.description} (calibrated)".strip()
    est = new["estimate"]

    def sourced(old: dict[str, Any], c: str) -> dict[str, Any]:
        if c in kept:
            return {"value": old["value"], "source": f"{old['source']} ({kept[c]})"}
        return {"value": float(f"{coefficients[c]:.6g}"), "source": stamp}

    est["energy_per_mac_j"][profile.precision] = sourced(est["energy_per_mac_j"][profile.precision], "energy_per_mac_j")
    for c in ("energy_per_byte_cache_j", "energy_per_byte_dram_j", "static_power_w"):
        est[c] = sourced(est[c], c)
    return new


def _yaml_text(c: Calibration) -> str:
    head = [
        f"# Calibrated by `nas profiles calibrate` from {c.based_on}:",
        f"# device {c.device_name}, {c.method}; fit error {c.fit_error * 100:.1f}% RMS, "
        f"{c.max_error * 100:.1f}% max (relative).",
        "# Only the estimate coefficients at the inference precision were fitted; everything else is the",
        "# original profile's. Per reference model (energy per inference, J):",
    ]
    for p in c.points:
        head.append(f"#   {p.name:<16} measured {p.measured_j:.4e}  fitted {p.fitted_j:.4e}  "
                    f"error {p.error * 100:+.1f}%")
    return "\n".join(head) + "\n" + yaml.safe_dump(c.document, sort_keys=False, width=120)


def format_calibration(c: Calibration) -> str:
    """The per-model table, the coefficients before and after, and the fit error."""
    lines = [f"calibrated {c.based_on} as {c.profile.name} on {c.device_name} ({c.method})",
             f"{'reference model':<18} {'params':>11} {'MACs':>13} {'measured J':>11} {'fitted J':>11} {'error':>7}"]
    for p in c.points:
        lines.append(f"{p.name:<18} {p.params:>11,} {p.macs:>13,} {p.measured_j:>11.4e} {p.fitted_j:>11.4e} "
                     f"{p.error * 100:>+6.1f}%")
    lines.append("coefficients:")
    for f in c.coefficients:
        lines.append(f"  {f.name:<24} {f.before:.4g} -> {f.after:.4g}  ({f.note})")
    lines.append(f"fit error: {c.fit_error * 100:.1f}% RMS, {c.max_error * 100:.1f}% max (relative)")
    if c.output is not None:
        lines.append(f"wrote {c.output}")
    return "\n".join(lines)


__all__ = ["REFERENCE_MODELS", "Calibration", "ReferenceModel", "calibrate_profile", "features", "fit",
           "format_calibration"]
