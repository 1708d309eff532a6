"""The fit behind `nas profiles calibrate`: bounded linear least squares on relative errors, and its
k-fold cross-validated quality.

The operator-level estimate is linear in its coefficients, so calibrating it is a linear fit:
`scipy.optimize.lsq_linear` (bounded-variable least squares; every coefficient >= 0, some bounded
above) on relative errors (a 1 mJ and a 20 mJ network weigh alike), with a weak pull toward the
profile's own values (REGULARIZATION) that only decides directions the measurements cannot tell
apart (for example static power against the energy per MAC: modelled time is MACs / peak MAC/s for
compute-bound operators, so only their sum is determined by measurements alone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.errors import ConfigError

REGULARIZATION = 1e-7  # weight of the pull toward the profile's values (relative units; see docs/measurements.md)
FOLDS = 5


@dataclass(frozen=True)
class FitResult:
    """Fitted coefficient values by column name, and a note per column (why kept, at a bound...)."""

    values: dict[str, float]
    notes: dict[str, str]


def fit(
    feature_rows: Sequence[Mapping[str, float]],
    measured: Sequence[float],
    prior: Mapping[str, float],
    upper: Mapping[str, float] | None = None,
    regularization: float = REGULARIZATION,
    fixed: Mapping[str, str] | None = None,
) -> FitResult:
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
        scale = np.array(
            [
                prior[names[j]] if prior[names[j]] > 0 else float(np.median(y / np.maximum(x[:, j], 1e-300)))
                for j in free
            ]
        )
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
            values[c] = max(0.0, float(res.x[k] * scale[k]))  # bvls can land a hair below its bound
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
        return cls(
            len(y),
            float(np.median(err)) if len(y) else float("nan"),
            float(np.mean(err <= 0.10)) if len(y) else float("nan"),
            float(np.mean(err <= 0.25)) if len(y) else float("nan"),
            _spearman(p, y),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {
            "networks": self.networks,
            "median_abs_pct_error": round(self.median_abs_error * 100, 3),
            "within_10_pct": round(self.within_10pct, 4),
            "within_25_pct": round(self.within_25pct, 4),
            "spearman": round(self.spearman, 4) if math.isfinite(self.spearman) else None,
        }

    def describe(self) -> str:
        """One line for people: median error, shares within 10% and 25%, Spearman ('n/a' where it is
        undefined: fewer than two networks, or all of one value)."""
        rank = f"{self.spearman:.3f}" if math.isfinite(self.spearman) else "n/a"
        return (
            f"median |error| {self.median_abs_error * 100:.1f}%, {self.within_10pct * 100:.0f}% within +-10%, "
            f"{self.within_25pct * 100:.0f}% within +-25%, Spearman {rank} ({self.networks} "
            f"network{'s' if self.networks != 1 else ''})"
        )


def cross_validate(
    feature_rows: Sequence[Mapping[str, float]],
    measured: Sequence[float],
    prior: Mapping[str, float],
    upper: Mapping[str, float] | None = None,
    folds: int = FOLDS,
    regularization: float = REGULARIZATION,
) -> tuple[Quality, int]:
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


__all__ = ["FOLDS", "REGULARIZATION", "FitResult", "Quality", "cross_validate", "fit"]
