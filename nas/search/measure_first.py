"""The measure-first sampler: choose what to train by expected hypervolume improvement, energy known.

In an energy-aware search the energy of a candidate is known *before* it is trained (the deployed
network is measured or estimated in milliseconds) while its accuracy costs a training run. This
sampler uses that: at every trial it

1. draws a pool of candidate genotypes from the space (conditional parameters respected: the
   candidates come from the space's own sampling code),
2. gets each candidate's energy from a cheap function (exact; cached per genotype) and drops those
   the cheap function rejects (over an energy or latency budget),
3. predicts each candidate's accuracy with a surrogate fitted on the completed trials: an
   extra-trees ensemble and a Bayesian linear (ridge) regression, both on the one-hot genotype,
   per-value counts and log10 energy, averaged; its predictive distribution is a normal with the
   mixture's mean and spread (the trees' spread, the ridge's predictive spread, and their
   disagreement),
4. and returns the candidate with the largest expected hypervolume improvement (EHVI) in the
   accuracy-energy plane. With energy exact and accuracy normal, the 2-D EHVI has a closed form
   (sum over the front's accuracy levels of E[clip(A - l, 0, w)] x the energy length gained there),
   so no Monte-Carlo sampling is needed.

Why extra-trees: the spaces are conditional and categorical (a layer's width exists only when the
depth reaches it), which trees handle natively on a one-hot encoding with absent = all zeros,
without a kernel for missing values; an ensemble gives a spread for free; fitting 100 trees on a
few hundred trials takes tens of milliseconds on one core (scikit-learn is already a dependency).
Why the ridge beside them: from 5-50 trials the trees only interpolate between what they saw,
while the linear model learns each value's effect across the whole space (one-hot main effects),
and its prior keeps it sane on a handful of trials, so the surrogate can take over after 5 random
trials instead of 10 (on NAS-Bench-201 and bench-mlp-large both help: docs/benchmarks.md).

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
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.hypervolume import hypervolume_2d
from nas.search.surrogate import Encoder, HammingGP, expected_hvi

# the genotype a sampler chose for a trial, stored at once so other workers see it before its params
CHOSEN_ATTR = "measure_first:params"
SURROGATES = ("forest+ridge", "forest", "gp")


def genotype_key(params: Mapping[str, Any]) -> str:
    """A canonical string for a genotype (Optuna parameter dict): equal genotypes, equal keys."""
    return json.dumps(dict(params), sort_keys=True)


def _key(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable genotype identity for in-memory use (genotype_key is for storage)."""
    return tuple(sorted(params.items()))


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
        surrogate: "forest+ridge" (extra-trees and Bayesian ridge regression, averaged), "forest"
            (extra-trees alone) or "gp" (HammingGP); the latter two are weaker on NAS-Bench-201
            (docs/benchmarks.md).
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
        n_startup_trials: int = 5,
        n_candidates: int = 1000,
        energy_axis: str = "both",
        accuracy_index: int = 0,
        energy_index: int = 1,
        n_estimators: int = 50,
        surrogate: str = "forest+ridge",
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
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate: expected one of {', '.join(SURROGATES)}, got {surrogate!r}")
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
        """Every parameter of the space (conditional ones included): the whole genotype is relative."""
        return dict(self.distributions)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """A random value: only parameters outside `distributions` come here (a changed space)."""
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The genotype to train ({} when no feasible untried candidate is left: Optuna then draws
        at random), stored at once with the trial (CHOSEN_ATTR) so other workers exclude it."""
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING))
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
        train = [
            t
            for t in done
            if _feasible(t) and set(t.params) <= set(self.distributions) and self._energy_of(t.params) is not None
        ]
        started = len(train) + len(busy)
        if started < self.n_startup_trials or len(train) < 2:
            # start-up: uniform over the pool, or energy-stratified (the k-th start-up trial draws from
            # the k-th of n_startup energy bands of the pool, in a seeded order of bands)
            n = max(1, self.n_startup_trials)
            band = int(np.random.default_rng([self.seed, 3]).permutation(n)[started % n])
            order = np.argsort(energy, kind="stable")
            members = order[band * len(order) // n : (band + 1) * len(order) // n]
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
        for axis in ("linear", "log") if self.energy_axis == "both" else (self.energy_axis,):
            tx = np.log10 if axis == "log" else (lambda v: v)
            front = np.column_stack([front_acc, tx(front_e)])
            gain = expected_hvi(mu, sigma, tx(energy), front, (ref_acc, float(tx(top))))
            # in both planes at once: each plane's improvement relative to its hypervolume so far
            hv = hypervolume_2d([(-a, x) for a, x in front], (-ref_acc, float(tx(top))))
            ehvi += gain / hv if self.energy_axis == "both" and hv > 0 else gain
        best = int(np.argmax(ehvi))
        if not ehvi[best] > 0:  # the surrogate sees nothing to gain: explore
            best = int(rng.integers(len(pool)))
        self.last_choice = {
            "reason": "ehvi",
            "candidates": len(pool),
            "ehvi": float(ehvi[best]),
            "mu": float(mu[best]),
            "sigma": float(sigma[best]),
        }
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

        forest = ExtraTreesRegressor(
            n_estimators=self.n_estimators,
            bootstrap=True,
            min_samples_leaf=1,
            random_state=(self.seed * 7919 + number) % (2**31),
            n_jobs=1,
        )
        # the trees split on squared error: a few broken candidates (CIFAR-100 cells with 1% accuracy)
        # would take every split; lifted to the lower quantile they stay "bad" and stop dominating
        y_fit = np.maximum(y, np.quantile(y, self.floor_quantile)) if self.floor_quantile else y
        forest.fit(self._features(xs, e_train), y_fit)
        x_pool = self._features(pool, energy)
        per_tree = np.stack([tree.predict(x_pool, check_input=False) for tree in forest.estimators_])
        mu, sigma = per_tree.mean(axis=0), per_tree.std(axis=0)
        busy_e = np.array([self._energy_of(g) or 1.0 for g in busy])
        x_busy = self._features(busy, busy_e) if busy else None
        mu_busy = forest.predict(x_busy) if x_busy is not None else np.zeros(0)
        if self.surrogate == "forest+ridge":
            from sklearn.linear_model import BayesianRidge

            ridge = BayesianRidge().fit(self._features(xs, e_train), y_fit)
            mu_r, sigma_r = ridge.predict(x_pool, return_std=True)
            # the equal mixture of two normals: its mean, and its spread (within and between)
            mu, sigma = (mu + mu_r) / 2, np.sqrt((sigma**2 + sigma_r**2) / 2 + ((mu - mu_r) / 2) ** 2)
            if x_busy is not None:
                mu_busy = (mu_busy + ridge.predict(x_busy)) / 2
        # a floor on the spread: a tree ensemble can agree on a wrong value; 1% of the observed range
        sigma = np.maximum(sigma, 0.01 * (float(y.max() - y.min()) or 1.0))
        return mu, sigma, mu_busy


def _feasible(t: FrozenTrial) -> bool:
    return all(c <= 0 for c in t.constraints.values())


__all__ = ["CHOSEN_ATTR", "SURROGATES", "MeasureFirstSampler", "genotype_key"]
