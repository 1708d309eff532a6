"""What a calibration produced: the fitted coefficients, the measured networks, the quality, and the
calibrated profile document (written as YAML with its provenance) and its text report."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nas.energy.estimate import runtime_of
from nas.fitting import FitResult, Quality
from nas.hardware import HardwareProfile


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


def calibrated_document(
    doc: Any, profile: HardwareProfile, runtime: str, result: FitResult, stamp: str, provenance: Mapping[str, Any]
) -> dict[str, Any]:
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
            section.setdefault("energy_per_mac_j", {})[column[len("energy_per_mac_j[") : -1]] = entry
        else:
            section[column] = entry
    section["calibration"] = json.loads(json.dumps(dict(provenance)))
    if runtime != runtime_of(profile):
        new["runtime"] = runtime
    return new


def yaml_text(c: Calibration) -> str:
    """The calibrated profile as written: a comment header (source, quality), then the YAML."""
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
    lines = [
        f"calibrated {c.based_on} as {c.profile.name} (runtime {c.runtime}) from {c.source}",
        f"{'network':<40} {'params':>11} {'MACs':>13} {'measured J':>11} {'fitted J':>11} {'error':>7}",
    ]
    for p in c.points[:max_rows]:
        name = p.name if len(p.name) <= 40 else p.name[:37] + "..."
        lines.append(
            f"{name:<40} {p.params:>11,} {p.macs:>13,} {p.measured_j:>11.4e} {p.fitted_j:>11.4e} "
            f"{p.error * 100:>+6.1f}%"
        )
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


__all__ = [
    "Calibration",
    "CalibrationPoint",
    "FittedCoefficient",
    "calibrated_document",
    "format_calibration",
    "yaml_text",
]
