"""The measure-first sampler: choose what to train by expected hypervolume improvement, energy known.

In an energy-aware search the energy of a candidate is known *before* it is trained (the deployed
network is measured or estimated in milliseconds) while its accuracy costs a training run. This
sampler uses that: at every trial it

1. draws a pool of candidate genotypes from the space (conditional parameters respected: the
   candidates come from the space's own sampling code),
2. gets each candidate's energy from a cheap function (exact; cached per genotype) and drops those
   the cheap function rejects (over an energy or latency budget),
3. predicts each candidate's accuracy with a surrogate fitted on the completed trials: an
   extra-trees ensemble on the one-hot genotype plus log10 energy; its predictive distribution is
   a normal with the mean and spread of the trees' predictions,
4. and returns the candidate with the largest expected hypervolume improvement (EHVI) in the
   accuracy-energy plane. With energy exact and accuracy normal, the 2-D EHVI has a closed form
   (sum over the front's accuracy levels of E[clip(A - l, 0, w)] x the energy length gained there),
   so no Monte-Carlo sampling is needed.

Why extra-trees: the spaces are conditional and categorical (a layer's width exists only when the
depth reaches it), which trees handle natively on a one-hot encoding with absent = all zeros,
without a kernel for missing values; an ensemble gives a spread for free; fitting 100 trees on a
few hundred trials takes tens of milliseconds on one core (scikit-learn is already a dependency).

Genotypes already evaluated (complete) or being evaluated (running, by any worker) are never
proposed; running trials enter the front at their predicted accuracy ("kriging believer"), so
workers spread out instead of crowding one region. Deterministic for a given seed and study history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from nas.hypervolume import hypervolume_2d

# the genotype a sampler chose for a trial, stored at once so other workers see it before its params
CHOSEN_ATTR = "measure_first:params"


def genotype_key(params: Mapping[str, Any]) -> str:
    """A canonical string for a genotype (Optuna parameter dict): equal genotypes, equal keys."""
    return json.dumps(dict(params), sort_keys=True)


def _key(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable genotype identity for in-memory use (genotype_key is for storage)."""
    return tuple(sorted(params.items()))


def expected_hvi(mu: np.ndarray, sigma: np.ndarray, x: np.ndarray, front: np.ndarray,
                 ref: tuple[float, float]) -> np.ndarray:
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


class MeasureFirstSampler(optuna.samplers.BaseSampler):
    """Trains the candidate with the largest expected hypervolume improvement, energy known first.

    Args:
        distributions: every parameter the space can have (conditional ones included), as the
            space's sampling code suggests them: the relative search space.
        propose: draws one genotype (Optuna params dict) from the space with the given generator,
            respecting conditions (e.g. `nas.space.sample` on a random trial).
        cheap: the cheap objective of a genotype: energy per inference in J (> 0), or None when the
            candidate may not be trained (over a budget). Called once per distinct genotype.
        seed: seeds the candidate pool, the start-up draws and the surrogate.
        n_startup_trials: trials drawn from the feasible pool before the surrogate is used.
        n_candidates: candidate genotypes scored per trial: a fixed pool drawn once, and `n_fresh`
            of them (default half) drawn anew for each trial.
        energy_axis: the plane(s) of the EHVI: "log" (accuracy x log10 energy, which values accurate
            models at every order of magnitude of energy), "linear" (accuracy x J, the plane `nas
            report` uses) or "both" (the sum of each plane's EHVI relative to its hypervolume so far).
        accuracy_index, energy_index: positions of accuracy (maximised) and energy per inference
            (minimised) among the study's objectives.
        n_estimators: trees in the extra-trees surrogate.
        surrogate: "forest" (extra-trees) or "gp" (HammingGP; weaker on NAS-Bench-201, see
            docs/benchmarks.md).
        startup: "uniform" (start-up trials drawn uniformly from the pool) or "stratified" (the k-th
            from the k-th energy band of the pool, so the first trials span the energy axis; no
            better on NAS-Bench-201, worse on bench-mlp-large: docs/benchmarks.md).
        n_fresh: see n_candidates.
        floor_quantile: accuracies below this quantile of the observed ones are lifted to it
            before fitting (a few broken candidates would otherwise take every split); 0: off.
        pool: a fixed candidate set (e.g. every row of a table) instead of a drawn one.

    Raises:
        ValueError: for an unknown energy axis, surrogate or start-up, or counts below 1.
    """

    def __init__(
        self,
        distributions: Mapping[str, BaseDistribution],
        propose: Callable[[np.random.Generator], dict[str, Any]],
        cheap: Callable[[dict[str, Any]], float | None],
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        n_candidates: int = 1000,
        energy_axis: str = "both",
        accuracy_index: int = 0,
        energy_index: int = 1,
        n_estimators: int = 50,
        surrogate: str = "forest",
        startup: str = "uniform",
        n_fresh: int | None = None,
        floor_quantile: float = 0.2,
        pool: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        if energy_axis not in ("log", "linear", "both"):
            raise ValueError(f"energy_axis: expected 'log', 'linear' or 'both', got {energy_axis!r}")
        if n_candidates < 1 or n_startup_trials < 0 or n_estimators < 1:
            raise ValueError("n_candidates and n_estimators must be >= 1, n_startup_trials >= 0")
        self.distributions = dict(distributions)
        self.propose, self.cheap = propose, cheap
        self.seed = seed if seed is not None else int(np.random.SeedSequence().entropy % (2**31))
        self.n_startup_trials, self.n_candidates = n_startup_trials, n_candidates
        self.energy_axis = energy_axis
        self.accuracy_index, self.energy_index = accuracy_index, energy_index
        self.n_estimators = n_estimators
        if surrogate not in ("gp", "forest"):
            raise ValueError(f"surrogate: expected 'gp' or 'forest', got {surrogate!r}")
        self.surrogate = surrogate
        if startup not in ("stratified", "uniform"):
            raise ValueError(f"startup: expected 'stratified' or 'uniform', got {startup!r}")
        self.startup = startup
        self.n_fresh = n_candidates // 2 if n_fresh is None else n_fresh
        self.floor_quantile = floor_quantile
        self.encoder = Encoder(self.distributions)
        self._energy: dict[tuple, float | None] = {}
        self._encoded: dict[tuple, np.ndarray] = {}
        self._pool: list[dict[str, Any]] | None = [dict(g) for g in pool] if pool is not None else None
        self._fallback = optuna.samplers.RandomSampler(seed=self.seed)
        self.last_choice: dict[str, Any] = {}  # what the last sample_relative saw and chose (for tests)

    # -- Optuna's sampler interface
    def reseed_rng(self) -> None:
        """Optuna calls this in forked workers; the sampler's draws depend on the trial number."""
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.distributions)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        # only parameters outside `distributions` come here (a space that changed); draw at random
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING,
                                                          TrialState.WAITING))
        done: list[FrozenTrial] = []
        busy: list[dict[str, Any]] = []
        for t in trials:
            if t.number == trial.number:
                continue
            if t.state == TrialState.COMPLETE:
                done.append(t)
            else:  # running or waiting: its genotype is taken (chosen, enqueued or already suggested)
                g = t.system_attrs.get(CHOSEN_ATTR) or t.system_attrs.get("fixed_params") or t.params
                if g:
                    busy.append(dict(g))
        choice = self.choose(done, busy, trial.number)
        if choice:
            study._storage.set_trial_system_attr(trial._trial_id, CHOSEN_ATTR, choice)
        return choice

    # -- the method itself
    def _energy_of(self, g: Mapping[str, Any]) -> float | None:
        k = _key(g)
        if k not in self._energy:
            e = self.cheap(dict(g))
            self._energy[k] = float(e) if e is not None and e > 0 and math.isfinite(e) else None
        return self._energy[k]

    def _draw(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
        out, seen = [], set()
        for _ in range(3 * n):
            g = self.propose(rng)
            k = _key(g)
            if k not in seen:
                seen.add(k)
                out.append(g)
                if len(out) == n:
                    break
        return out

    def candidates(self, number: int) -> list[dict[str, Any]]:
        """The genotypes scored for trial `number`: a fixed pool drawn once, and `n_fresh` drawn for
        this trial (n_candidates in all)."""
        if self._pool is None:
            self._pool = self._draw(np.random.default_rng([self.seed, 0]), self.n_candidates - self.n_fresh)
        fresh = self._draw(np.random.default_rng([self.seed, 1, number]), self.n_fresh)
        seen, out = set(), []
        for g in self._pool + fresh:
            k = _key(g)
            if k not in seen:
                seen.add(k)
                out.append(g)
        return out

    def choose(self, done: Sequence[FrozenTrial], busy: Sequence[Mapping[str, Any]], number: int) -> dict[str, Any]:
        """The genotype to train next, given complete trials and the genotypes in flight ({} if none left)."""
        taken = {_key(t.params) for t in done} | {_key(g) for g in busy}
        pool = [g for g in self.candidates(number) if _key(g) not in taken]
        energies = [self._energy_of(g) for g in pool]
        pool = [g for g, e in zip(pool, energies, strict=True) if e is not None]
        energy = np.array([e for e in energies if e is not None])
        if not pool:
            self.last_choice = {"reason": "no feasible untried candidate"}
            return {}
        rng = np.random.default_rng([self.seed, 2, number])
        # the surrogate learns from feasible complete trials of the space (over-budget ones were
        # never trained: their recorded accuracy is a placeholder)
        train = [t for t in done if _feasible(t) and set(t.params) <= set(self.distributions)
                 and self._energy_of(t.params) is not None]
        started = len(train) + len(busy)
        if started < self.n_startup_trials or len(train) < 2:
            # start-up: uniform over the pool, or energy-stratified (the k-th start-up trial draws from
            # the k-th of n_startup energy bands of the pool, in a seeded order of bands)
            n = max(1, self.n_startup_trials)
            band = int(np.random.default_rng([self.seed, 3]).permutation(n)[started % n])
            order = np.argsort(energy, kind="stable")
            members = order[band * len(order) // n:(band + 1) * len(order) // n]
            if self.startup == "uniform" or not len(members):
                members = order
            i = int(members[rng.integers(len(members))])
            self.last_choice = {"reason": "startup", "candidates": len(pool)}
            return pool[i]
        xs = [t.params for t in train]
        e_train = np.array([self._energy_of(g) for g in xs])
        y = np.array([t.values[self.accuracy_index] for t in train])
        mu, sigma, mu_busy = self._predict(xs, e_train, y, pool, energy, busy, number)
        front_acc = np.concatenate([y, mu_busy])
        front_e = np.concatenate([e_train, [self._energy_of(g) or np.inf for g in busy]])
        top = 1.1 * max(float(energy.max()), float(e_train.max()))
        ref_acc = min(0.0, float(y.min()))
        ehvi = np.zeros(len(pool))
        for axis in (("linear", "log") if self.energy_axis == "both" else (self.energy_axis,)):
            tx = np.log10 if axis == "log" else (lambda v: v)
            front = np.column_stack([front_acc, tx(front_e)])
            gain = expected_hvi(mu, sigma, tx(energy), front, (ref_acc, float(tx(top))))
            # in both planes at once: each plane's improvement relative to its hypervolume so far
            hv = hypervolume_2d([(-a, x) for a, x in front], (-ref_acc, float(tx(top))))
            ehvi += gain / hv if self.energy_axis == "both" and hv > 0 else gain
        best = int(np.argmax(ehvi))
        if not ehvi[best] > 0:  # the surrogate sees nothing to gain: explore
            best = int(rng.integers(len(pool)))
        self.last_choice = {"reason": "ehvi", "candidates": len(pool), "ehvi": float(ehvi[best]),
                            "mu": float(mu[best]), "sigma": float(sigma[best])}
        return pool[best]

    def _features(self, genotypes: Sequence[Mapping[str, Any]], energy: np.ndarray) -> np.ndarray:
        """One-hot genotype (cached per genotype) and log10 energy: shape (n, columns + 1)."""
        rows = []
        for g in genotypes:
            k = _key(g)
            row = self._encoded.get(k)
            if row is None:
                row = self._encoded[k] = self.encoder.encode([g])[0]
            rows.append(row)
        enc = np.stack(rows) if rows else np.zeros((0, self.encoder.width), dtype=np.float32)
        return np.column_stack([enc, np.log10(energy)]).astype(np.float32)

    def _predict(self, xs, e_train, y, pool, energy, busy, number):
        if self.surrogate == "gp":
            return self._predict_gp(xs, e_train, y, pool, energy, busy)
        return self._predict_forest(xs, e_train, y, pool, energy, busy, number)

    def _predict_gp(self, xs, e_train, y, pool, energy, busy):
        busy_e = np.array([self._energy_of(g) or 1.0 for g in busy])
        cols = [*range(self.encoder.onehot_width), self.encoder.width]  # one-hot and log10 energy

        def feats(gs, e):
            return self._features(gs, e)[:, cols]

        gp = HammingGP(feats(xs, e_train), y)
        mu, sigma = gp.predict(feats(pool, energy))
        mu_busy = gp.predict(feats(busy, busy_e))[0] if busy else np.zeros(0)
        return mu, sigma, mu_busy

    def _predict_forest(self, xs, e_train, y, pool, energy, busy, number):
        from sklearn.ensemble import ExtraTreesRegressor

        forest = ExtraTreesRegressor(n_estimators=self.n_estimators, bootstrap=True, min_samples_leaf=1,
                                     random_state=(self.seed * 7919 + number) % (2**31), n_jobs=1)
        # the trees split on squared error: a few broken candidates (CIFAR-100 cells with 1% accuracy)
        # would take every split; lifted to the lower quantile they stay "bad" and stop dominating
        y_fit = np.maximum(y, np.quantile(y, self.floor_quantile)) if self.floor_quantile else y
        forest.fit(self._features(xs, e_train), y_fit)
        x_pool = self._features(pool, energy)
        per_tree = np.stack([tree.predict(x_pool, check_input=False) for tree in forest.estimators_])
        mu, sigma = per_tree.mean(axis=0), per_tree.std(axis=0)
        # a floor on the spread: a tree ensemble can agree on a wrong value; 1% of the observed range
        sigma = np.maximum(sigma, 0.01 * (float(y.max() - y.min()) or 1.0))
        busy_e = np.array([self._energy_of(g) or 1.0 for g in busy])
        mu_busy = forest.predict(self._features(busy, busy_e)) if busy else np.zeros(0)
        return mu, sigma, mu_busy


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


def _feasible(t: FrozenTrial) -> bool:
    return all(c <= 0 for c in t.constraints.values())


# ------------------------------------------------------------------------------------ our spaces
class RandomTrial:
    """Stands in for an Optuna trial and draws every suggested value uniformly with `rng`, so that
    `nas.space.sample` proposes candidates with the space's own conditions. `params` and
    `distributions` hold what was suggested, as an Optuna trial's would."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}

    def _keep(self, name: str, d: BaseDistribution, value: Any) -> Any:
        self.params[name], self.distributions[name] = value, d
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        choices = tuple(choices)
        return self._keep(name, CategoricalDistribution(choices), choices[int(self.rng.integers(len(choices)))])

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        values = range(low, high + 1, step)
        return self._keep(name, IntDistribution(low, high, log=log, step=step),
                          values[int(self.rng.integers(len(values)))])

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        d = FloatDistribution(low, high, log=log, step=step)
        if step is not None:
            n = int(round((high - low) / step))
            value = round(low + step * int(self.rng.integers(n + 1)), 12)  # as nas.tabular enumerates
        elif log:
            value = float(math.exp(self.rng.uniform(math.log(low), math.log(high))))
        else:
            value = float(self.rng.uniform(low, high))
        return self._keep(name, d, value)


def space_distributions(space: Any) -> dict[str, BaseDistribution]:
    """Every Optuna parameter `nas.space.sample` can suggest for `space` (a nas.config.SearchSpace),
    conditional and per-unit ones included, with the distribution it suggests it with."""

    def dist(p: Any) -> BaseDistribution:
        if p.kind == "choice":
            return CategoricalDistribution(tuple(p.choices))
        if p.kind == "int":
            return IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        return FloatDistribution(p.low, p.high, log=p.log, step=p.step)

    out = {p.name: dist(p) for p in space.params}
    group = space.repeated
    out[f"{group.name}.count"] = dist(group.count)
    most = int(max(group.count.choices) if group.count.kind == "choice" else group.count.high)
    for i in range(most):
        for p in group.params:
            out[f"{group.name}.{i}.{p.name}"] = dist(p)
    return out


def for_space(space: Any, cheap: Callable[[dict[str, Any]], float | None], seed: int | None = None,
              **kwargs: Any) -> MeasureFirstSampler:
    """A measure-first sampler over a nas.config.SearchSpace; `cheap` maps Optuna params to energy
    per inference (J) or None (not trainable); `kwargs` go to MeasureFirstSampler."""
    from nas.space import sample

    def propose(rng: np.random.Generator) -> dict[str, Any]:
        t = RandomTrial(rng)
        sample(t, space)  # type: ignore[arg-type]
        return t.params

    return MeasureFirstSampler(space_distributions(space), propose, cheap, seed=seed, **kwargs)


def cheap_energy(ctx: Any) -> Callable[[dict[str, Any]], float | None]:
    """The search's cheap objective for a measure-first sampler: energy per inference (J) of a
    genotype's deployed network before any training, or None when a budget rules it out.

    Replaying a table (`ctx.table`): the table's energy (and latency) of the genotype, exact.
    Otherwise: the deployed network (built, pruned) as the analytical estimate of the search's
    hardware profile sees it (`nas.energy.estimate`): on an estimate profile the very figure the trial
    will record; on a sensor profile a proxy that ranks candidates (each trial still measures its
    network; the proxy is never stored as a measurement). Building and counting a candidate costs
    10-50 ms (PyTorch's FlopCounterMode), hence the smaller candidate pool of real searches.
    """
    from nas.budget import Budget

    s = ctx.settings
    budget = Budget(s.energy_budget_j, s.latency_budget_s)

    def allowed(energy_j: float, latency_s: float | None) -> float | None:
        if budget.active and any(v > 0 for v in budget.violations(energy_j, latency_s or 0.0).values()):
            return None
        return energy_j

    if ctx.table is not None:
        from nas.tabular import key_of

        def from_table(params: dict[str, Any]) -> float | None:
            row = ctx.table.rows.get(key_of(params))
            if row is None:
                return None
            attrs = row["user_attrs"]
            return allowed(float(attrs["energy_per_inference_j"]), attrs.get("latency_s"))

        return from_table

    import torch

    from nas.deploy import rebuild
    from nas.energy.estimate import EstimateMeter
    from nas.models import model_stats
    from nas.space import sample

    meter = EstimateMeter(ctx.profile)

    def estimate(params: dict[str, Any]) -> float | None:
        arch = sample(_FixedTrial(params), ctx.space)  # type: ignore[arg-type]
        with torch.random.fork_rng(devices=[]):  # weights do not matter; the search's RNG stays untouched
            model = rebuild(arch, ctx.data.input_shape, ctx.data.num_classes)  # pruned as deployed
        precision = str(arch.params.get("precision", ctx.profile.precision))
        record = meter.estimate(model_stats(model, ctx.data.input_shape), precision, ctx.profile.batch_size)
        return allowed(record.energy_per_inference_j, record.latency_s)

    return estimate


class _FixedTrial:
    """Replays a params dict through `nas.space.sample`."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.params[name]

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        return self.params[name]

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        return self.params[name]


def search_sampler(ctx: Any, seed: int) -> MeasureFirstSampler:
    """The measure-first sampler of a search (`--sampler measure-first`): the search's space, its
    cheap energy (`cheap_energy`), accuracy and energy at their places among the objectives.

    Raises:
        nas.errors.ConfigError: when the search does not optimise both accuracy and energy.
    """
    from nas.errors import ConfigError

    names = [o.name for o in ctx.objectives]
    if "accuracy" not in names or "energy" not in names:
        raise ConfigError(f"--sampler measure-first: needs the objectives accuracy and energy (have {','.join(names)})")
    where = {"accuracy_index": names.index("accuracy"), "energy_index": names.index("energy")}
    if ctx.table is None:  # each candidate costs a model build and a FLOP count: fewer of them
        return for_space(ctx.space, cheap_energy(ctx), seed=seed, n_candidates=256, n_fresh=16, **where)
    rows = [json.loads(k) for k in sorted(ctx.table.rows)]
    return table_sampler(ctx.space, rows, cheap_energy(ctx), seed, **where)


def table_sampler(space: Any, rows: Sequence[Mapping[str, Any]], cheap: Callable[[dict[str, Any]], float | None],
                  seed: int, whole_up_to: int = 2000, **kwargs: Any) -> MeasureFirstSampler:
    """A measure-first sampler replaying a table: its candidates are the table's rows.

    Tables of up to `whole_up_to` rows are scored whole at every trial. Larger ones through a pool
    of 1,000 (half fixed, half drawn anew for each trial), drawn half through the space's own
    sampling code (as a search draws: in a conditional space the shallow networks, few but often on
    the front, come up as often as the deep ones) and half uniformly over the rows (so that a table
    holding only part of a space, as an imported one may, still yields candidates); candidates that
    are not rows are dropped by `cheap` (None).
    """
    from nas.space import sample

    rows = [dict(r) for r in rows]

    def propose(rng: np.random.Generator) -> dict[str, Any]:
        if rng.random() < 0.5:
            t = RandomTrial(rng)
            sample(t, space)  # type: ignore[arg-type]
            return t.params
        return dict(rows[int(rng.integers(len(rows)))])

    whole = len(rows) <= whole_up_to
    return MeasureFirstSampler(space_distributions(space), propose, cheap, seed=seed,
                               n_candidates=len(rows) if whole else 1000, n_fresh=0 if whole else None,
                               pool=rows if whole else None, **kwargs)
