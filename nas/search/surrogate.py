"""The measure-first sampler's model: genotype features, a categorical GP, and closed-form EHVI.

Pure numpy (no Optuna, no torch): `Encoder` turns genotypes (Optuna parameter dicts) into feature
vectors, `HammingGP` is a Gaussian process over them, and `expected_hvi` scores candidates whose
energy is exact and whose accuracy is normal. `nas.search.measure_first` fits scikit-learn's
extra-trees and Bayesian ridge on `Encoder`'s features by default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


def expected_hvi(
    mu: np.ndarray, sigma: np.ndarray, x: np.ndarray, front: np.ndarray, ref: tuple[float, float]
) -> np.ndarray:
    """Expected hypervolume improvement of candidates with exact cost and normal accuracy.

    Args:
        mu, sigma: shape (n,): mean and standard deviation of each candidate's accuracy (maximised).
        x: shape (n,): each candidate's exact cost (energy or log10 energy; minimised).
        front: shape (k, 2): (accuracy, cost) of the current non-dominated points (any order; may
            include dominated points, which add nothing).
        ref: (accuracy, cost) reference point: only accuracy above and cost below it counts.

    Returns:
        shape (n,): E[HVI] in accuracy x cost units, >= 0.

    The improvement of a point (a, x) is the integral over accuracy levels y in (ref_a, a] of the
    cost length [x, m(y)) not yet dominated, where m(y) is the lowest cost of a front point with
    accuracy >= y (ref cost if none). m is a step function of y, so HVI(a) = sum_j h_j *
    clip(a - b_{j-1}, 0, b_j - b_{j-1}), and for A ~ N(mu, sigma), E[clip(A - l, 0, w)] =
    G(l) - G(l + w) with G(t) = E[(A - t)^+] = sigma * phi(z) + (mu - t) * Phi(z), z = (mu - t) / sigma.
    """
    ref_a, ref_x = ref
    pts = np.asarray(front, dtype=float).reshape(-1, 2)
    pts = pts[(pts[:, 0] > ref_a) & (pts[:, 1] < ref_x)]
    # non-dominated points sorted by accuracy ascending; their costs then ascend too
    order = np.lexsort((pts[:, 1], -pts[:, 0]))  # accuracy descending, cost ascending
    nd: list[tuple[float, float]] = []
    best_x = math.inf
    for a, c in pts[order]:
        if c < best_x:
            nd.append((a, c))
            best_x = c
    nd.reverse()  # accuracy ascending
    levels = np.array([ref_a] + [a for a, _ in nd] + [math.inf])  # b_0 .. b_{k+1}
    m = np.array([c for _, c in nd] + [ref_x])  # lowest cost on level j (b_{j-1}, b_j]
    sigma = np.maximum(np.asarray(sigma, dtype=float), 1e-9)[:, None]
    mu = np.asarray(mu, dtype=float)[:, None]
    h = np.maximum(0.0, m[None, :] - np.asarray(x, dtype=float)[:, None])  # (n, k+1)

    def g(t: np.ndarray) -> np.ndarray:
        finite = np.isfinite(t)
        tt = np.where(finite, t, 0.0)[None, :]
        z = (mu - tt) / sigma
        return np.where(finite[None, :], sigma * _phi(z) + (mu - tt) * _cdf(z), 0.0)

    gain = g(levels[:-1]) - g(levels[1:])
    return np.maximum(0.0, (h * gain).sum(axis=1))


def _phi(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _cdf(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr  # scipy comes with scikit-learn

    return ndtr(z)


class Encoder:
    """Genotypes as feature vectors over known distributions.

    Columns: one-hot of every (parameter, value), an absent (inactive) parameter being all zeros;
    integer ranges of up to 64 values are one-hot too (depth as a category) plus one scaled number;
    floats and larger integer ranges are one number scaled to [0, 1]; and, for every set of choices
    shared by several parameters (the per-layer widths of an MLP, the six edges of a NAS-Bench-201
    cell), how many of them took each value: a permutation-invariant summary that lets a surrogate
    fitted on tens of trials generalise across positions.
    """

    def __init__(self, distributions: Mapping[str, BaseDistribution]) -> None:
        self.columns: list[tuple[str, Any]] = []  # (name, value) one-hot, or (name, None) numeric
        self.scale: dict[str, tuple[float, float, bool]] = {}
        shared: dict[tuple[Any, ...], list[str]] = {}
        for name in sorted(distributions):
            d = distributions[name]
            if isinstance(d, CategoricalDistribution):
                self.columns += [(name, c) for c in d.choices]
                shared.setdefault(tuple(d.choices), []).append(name)
            elif isinstance(d, IntDistribution) and (d.high - d.low) // d.step < 64:
                self.columns += [(name, v) for v in range(d.low, d.high + 1, d.step)]
                self.columns.append((name, None))
                self.scale[name] = (float(d.low), float(d.high), d.log)
            else:
                assert isinstance(d, (IntDistribution, FloatDistribution))
                self.columns.append((name, None))
                self.scale[name] = (float(d.low), float(d.high), d.log)
        self.index = {c: i for i, c in enumerate(self.columns) if c[1] is not None}
        self.numeric = {name: i for i, (name, v) in enumerate(self.columns) if v is None}
        self.count_of: dict[str, dict[Any, int]] = {}  # parameter -> value -> count column
        base = len(self.columns)
        for k, (choices, names) in enumerate(c for c in shared.items() if len(c[1]) > 1):
            cols = {v: len(self.columns) + j for j, v in enumerate(choices)}
            self.columns += [(f"count{k}", v) for v in choices]
            for name in names:
                self.count_of[name] = cols
        self.width = len(self.columns)
        self.onehot_width = base  # columns before the counts

    def encode(self, genotypes: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Shape (len(genotypes), width) float32."""
        out = np.zeros((len(genotypes), self.width), dtype=np.float32)
        for r, g in enumerate(genotypes):
            for name, value in g.items():
                i = self.index.get((name, value))
                if i is not None:
                    out[r, i] = 1.0
                c = self.count_of.get(name)
                if c is not None and value in c:
                    out[r, c[value]] += 1.0
                j = self.numeric.get(name)
                if j is not None:
                    lo, hi, log = self.scale[name]
                    v, lo_, hi_ = (math.log(value), math.log(lo), math.log(hi)) if log else (value, lo, hi)
                    out[r, j] = (v - lo_) / (hi_ - lo_) if hi_ > lo_ else 0.0
        return out


class HammingGP:
    """Gaussian-process regression on one-hot genotypes and log10 energy, in numpy.

    Kernel: k(x, x') = exp(-theta * d(x, x') / p) * exp(-(log10 e - log10 e')^2 / (2 l^2)), where d is
    the number of parameters whose values differ (absent vs present counts as differing: half the
    one-hot symmetric difference) and p the largest number of parameters of a genotype: a Hamming
    (overlap) kernel for categorical values, as in BOCS/COMBO-style categorical Bayesian optimisation,
    times a squared-exponential kernel on the one continuous input. Targets are standardised; theta, l
    and the noise share are chosen on a small grid by the log marginal likelihood (Rasmussen &
    Williams 2006, eq. 2.30). Fitting costs one Cholesky factorisation per grid point: O(n^3), under
    milliseconds for the few hundred trials of a search.

    Args:
        x: shape (n, c + 1): one-hot columns then log10 energy (MeasureFirstSampler._features).
        y: shape (n,): observed accuracies.
    """

    THETAS = (0.5, 1.0, 2.0, 4.0, 8.0)
    LENGTHS = (0.1, 0.3, 1.0, 3.0)
    NOISES = (1e-3, 1e-2, 1e-1)

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=float)
        self.mean, self.scale = float(np.mean(y)), float(np.std(y)) or 1.0
        z = (np.asarray(y, dtype=float) - self.mean) / self.scale
        self.p = max(1.0, float(self.x[:, :-1].sum(axis=1).max()))
        dist, de2 = self._dist(self.x, self.x)
        best = None
        for theta in self.THETAS:
            kc = np.exp(-theta * dist / self.p)
            for length in self.LENGTHS:
                k = kc * np.exp(-de2 / (2 * length**2))
                for noise in self.NOISES:
                    try:
                        chol = np.linalg.cholesky(k + noise * np.eye(len(z)))
                    except np.linalg.LinAlgError:
                        continue
                    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
                    lml = -0.5 * z @ alpha - np.log(np.diag(chol)).sum()
                    if best is None or lml > best[0]:
                        best = (lml, theta, length, noise, chol, alpha)
        assert best is not None
        _, self.theta, self.length, self.noise, self.chol, self.alpha = best

    def _dist(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        oa, ob = a[:, :-1], b[:, :-1]
        dist = 0.5 * (oa.sum(1)[:, None] + ob.sum(1)[None, :] - 2 * oa @ ob.T)
        de2 = (a[:, -1][:, None] - b[:, -1][None, :]) ** 2
        return dist, de2

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the latent accuracy at `x` (shape (m, c + 1)): two (m,)."""
        dist, de2 = self._dist(np.asarray(x, dtype=float), self.x)
        ks = np.exp(-self.theta * dist / self.p) * np.exp(-de2 / (2 * self.length**2))
        mu = ks @ self.alpha
        v = np.linalg.solve(self.chol, ks.T)
        var = np.maximum(1e-12, 1.0 - (v * v).sum(axis=0))
        return self.mean + self.scale * mu, self.scale * np.sqrt(var)


__all__ = ["Encoder", "HammingGP", "expected_hvi"]
