"""What a search cost (energy, carbon) and what its result saves per inference (pure functions).

gCO2e = kWh x grid carbon intensity (g/kWh). The intensity comes, in this order, from
`--grid-intensity G`, from `--region CODE` (the shipped table of country averages,
nas/resources/grid_intensity.csv: Ember 2024, CC BY 4.0), or from the hardware profile's
`carbon.grid_intensity_g_per_kwh`; whichever is used is always printed with its source.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.pareto import TrialRecord

J_PER_KWH = 3.6e6
INTENSITY_TABLE = Path(str(files("nas").joinpath("resources", "grid_intensity.csv")))


# ------------------------------------------------------------------------------ grid intensity
@dataclass(frozen=True)
class GridIntensity:
    """A grid's carbon intensity in gCO2e per kWh, with the source of the number."""

    g_per_kwh: float
    source: str  # where the number comes from, printed beside every gCO2e

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: g_per_kwh and source."""
        return {"g_per_kwh": self.g_per_kwh, "source": self.source}


@dataclass(frozen=True)
class Region:
    """One row of the shipped grid-intensity table (Ember 2024): codes, name, gCO2e/kWh and the year."""

    code: str  # ISO 3166-1 alpha-2, or WORLD / EU / OECD
    alpha3: str
    name: str
    g_per_kwh: float
    year: int


@cache
def regions() -> dict[str, Region]:
    """The shipped table, keyed by alpha-2 code."""
    rows = [line for line in INTENSITY_TABLE.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    out = {}
    for row in csv.DictReader(rows):
        out[row["code"]] = Region(row["code"], row["alpha3"], row["name"], float(row["g_per_kwh"]), int(row["year"]))
    return out


def table_source() -> str:
    """The citation line of the shipped table."""
    return "Ember Yearly Electricity Data (2025), country averages for 2024, CC BY 4.0"


def lookup_region(code: str) -> Region:
    """A region by alpha-2 or alpha-3 code or by name (case-insensitive); `UK` means GB."""
    key = code.strip().upper()
    key = "GB" if key == "UK" else key
    table = regions()
    for r in table.values():
        if key in (r.code, r.alpha3, r.name.upper()):
            return r
    raise ConfigError(f"--region: unknown region {code!r} (valid: {', '.join(sorted(table))})")


def resolve_intensity(
    grid_intensity: float | None = None,
    region: str | None = None,
    profile_intensity: Any = None,
    profile_name: str = "profile",
) -> GridIntensity | None:
    """The grid intensity to use: the flag, else the region, else the profile's (a `Sourced`)."""
    if grid_intensity is not None and region is not None:
        raise ConfigError("give --grid-intensity or --region, not both")
    if grid_intensity is not None:
        if not math.isfinite(grid_intensity) or grid_intensity < 0:
            raise ConfigError(f"--grid-intensity: expected g/kWh >= 0, got {grid_intensity}")
        return GridIntensity(float(grid_intensity), "--grid-intensity (given by the user)")
    if region is not None:
        r = lookup_region(region)
        return GridIntensity(r.g_per_kwh, f"--region {r.code} ({r.name}): {table_source()}")
    if profile_intensity is not None:
        return GridIntensity(float(profile_intensity.value), f"profile {profile_name}: {profile_intensity.source}")
    return None


def grams_co2e(energy_j: float, intensity: GridIntensity) -> float:
    """gCO2e of `energy_j` joules drawn from a grid of `intensity`."""
    return energy_j / J_PER_KWH * intensity.g_per_kwh


# ------------------------------------------------------------------------------ search cost
def measurement_energy_j(record: Mapping[str, Any]) -> float:
    """Energy spent measuring one candidate, from its EnergyRecord (as a dict).

    A sensor measurement ran `repeats` windows of `inferences_per_window` inferences at the gross
    energy per inference, plus an idle-baseline window when one was taken (warm-up batches are not
    counted). An analytical estimate runs no inference, so it costs nothing here.
    """
    if not str(record.get("method", "")).startswith("measured:"):
        return 0.0
    per_inf = float(record.get("gross_energy_per_inference_j") or record.get("energy_per_inference_j") or 0.0)
    windows = per_inf * float(record.get("inferences_per_window") or 0) * float(record.get("repeats") or 0)
    idle = float(record.get("idle_power_w") or 0.0) * float(record.get("window_s") or 0.0)
    return windows + idle


@dataclass(frozen=True)
class SearchCost:
    """The energy a search spent: training and energy measurement of every complete trial."""

    training_j: float
    measurement_j: float
    trials_counted: int
    trials_not_counted: int  # failed or unfinished trials: no energy was recorded for them
    methods: tuple[str, ...]  # how the numbers were obtained (training and measurement)

    @property
    def total_j(self) -> float:
        """Training plus measurement energy, in J."""
        return self.training_j + self.measurement_j

    @property
    def kwh(self) -> float:
        """The total in kWh (3.6e6 J per kWh)."""
        return self.total_j / J_PER_KWH

    @property
    def estimated(self) -> bool:
        """Whether any of the numbers is an analytical estimate rather than a measurement."""
        return any(m.startswith("estimated") for m in self.methods)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in J and kWh, with the methods behind the numbers."""
        return {
            "training_j": self.training_j,
            "measurement_j": self.measurement_j,
            "total_j": self.total_j,
            "total_kwh": self.kwh,
            "trials_counted": self.trials_counted,
            "trials_not_counted": self.trials_not_counted,
            "methods": list(self.methods),
            "estimated": self.estimated,
        }


def search_cost(trial_attrs: Iterable[Mapping[str, Any]], not_counted: int = 0) -> SearchCost:
    """Sum the training and measurement energy recorded in each complete trial's user attrs."""
    training = measurement = 0.0
    counted = 0
    methods: set[str] = set()
    for attrs in trial_attrs:
        tr = attrs.get("training") or {}
        rec = attrs.get("energy") or {}
        if not tr and not rec:
            not_counted += 1
            continue
        counted += 1
        if tr:
            training += float(tr.get("energy_j") or 0.0)
            methods.add(str(tr.get("method", "unknown")))
        if rec:
            measurement += measurement_energy_j(rec)
            methods.add(str(rec.get("method", "unknown")))
    return SearchCost(training, measurement, counted, not_counted, tuple(sorted(methods)))


# ------------------------------------------------------------------------------ savings
def break_even_inferences(search_energy_j: float, saved_per_inference_j: float) -> int | None:
    """Inferences after which the energy saved pays back the search; None if nothing is saved."""
    if saved_per_inference_j <= 0 or not math.isfinite(saved_per_inference_j):
        return None
    return max(0, math.ceil(search_energy_j / saved_per_inference_j))


@dataclass(frozen=True)
class Saving:
    """One front member against the most accurate front member (the baseline)."""

    trial: int
    baseline_trial: int
    energy_per_inference_j: float
    saved_per_inference_j: float
    saved_fraction: float
    break_even_inferences: int | None
    saved_g_per_million: float | None = None  # gCO2e saved per 10^6 inferences, if intensity known

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the saving per inference in J and as a fraction, and the break-even count."""
        return {
            "trial": self.trial,
            "baseline_trial": self.baseline_trial,
            "energy_per_inference_j": self.energy_per_inference_j,
            "saved_per_inference_j": self.saved_per_inference_j,
            "saved_fraction": self.saved_fraction,
            "break_even_inferences": self.break_even_inferences,
            "saved_gco2e_per_million_inferences": self.saved_g_per_million,
        }


def most_accurate(front: Sequence[TrialRecord]) -> TrialRecord:
    """The baseline: highest validation accuracy, then lowest energy, then lowest trial number."""
    return min(front, key=lambda r: (-r.accuracy, r.energy_per_inference_j, r.number))


def savings(
    front: Sequence[TrialRecord], search_energy_j: float, intensity: GridIntensity | None = None
) -> list[Saving]:
    """Energy saved per inference by each front member against the most accurate one, and the
    break-even count: search energy / saving per inference (rounded up)."""
    if not front:
        return []
    base = most_accurate(front)
    out = []
    for r in front:
        saved = base.energy_per_inference_j - r.energy_per_inference_j
        frac = saved / base.energy_per_inference_j if base.energy_per_inference_j > 0 else 0.0
        out.append(
            Saving(
                trial=r.number,
                baseline_trial=base.number,
                energy_per_inference_j=r.energy_per_inference_j,
                saved_per_inference_j=saved,
                saved_fraction=frac,
                break_even_inferences=break_even_inferences(search_energy_j, saved),
                saved_g_per_million=grams_co2e(saved * 1e6, intensity) if intensity is not None else None,
            )
        )
    return out


@dataclass(frozen=True)
class CostReport:
    """Search cost, its carbon, and the savings of each front member."""

    cost: SearchCost
    intensity: GridIntensity | None
    savings: tuple[Saving, ...] = field(default_factory=tuple)

    @property
    def search_gco2e(self) -> float | None:
        """The search's emissions in gCO2e at `intensity`; None when no intensity is known."""
        return grams_co2e(self.cost.total_j, self.intensity) if self.intensity is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: search cost, carbon (None without an intensity) and savings."""
        return {
            "search_cost": self.cost.to_dict(),
            "carbon": None
            if self.intensity is None
            else {"grid_intensity": self.intensity.to_dict(), "search_gco2e": self.search_gco2e},
            "savings": [s.to_dict() for s in self.savings],
        }
