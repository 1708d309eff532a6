"""The measure-first sampler (and its surrogate and candidates): closed-form EHVI, exclusions,
determinism, conditional spaces."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from nas.config import load_space
from nas.search.candidates import RandomTrial, for_space, space_distributions
from nas.search.measure_first import CHOSEN_ATTR, MeasureFirstSampler
from nas.search.surrogate import Encoder, expected_hvi
from nas.space import sample

OPS = ("a", "b", "c", "d")
NAMES = ("x0", "x1", "x2")


def _problem():
    """64 genotypes; energy grows with the op indices, accuracy with energy minus a penalty on x2=='d'."""

    def energy(g):
        return 1e-3 * (1 + sum(OPS.index(g[n]) * (i + 1) for i, n in enumerate(NAMES)))

    def accuracy(g):
        return 0.5 + 0.1 * math.log10(energy(g) / 1e-3) - (0.2 if g["x2"] == "d" else 0.0)

    return energy, accuracy


def _sampler(seed=0, cheap=None, **kw):
    energy, _ = _problem()
    dists = {n: CategoricalDistribution(OPS) for n in NAMES}

    def propose(rng):
        return {n: OPS[int(rng.integers(len(OPS)))] for n in NAMES}

    kw.setdefault("n_estimators", 10)
    return MeasureFirstSampler(dists, propose, cheap or energy, seed=seed, n_candidates=64, **kw)


def _run(sampler, trials):
    energy, accuracy = _problem()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial):
        g = {n: trial.suggest_categorical(n, OPS) for n in NAMES}
        return accuracy(g), energy(g)

    study.optimize(objective, n_trials=trials)
    return study


def test_expected_hvi_matches_monte_carlo():
    rng = np.random.default_rng(1)
    front = np.array([[0.6, 0.2], [0.8, 0.5], [0.9, 0.9], [0.5, 0.7]])  # the last is dominated
    ref = (0.0, 1.0)
    mu, sigma, x = np.array([0.7, 0.95, 0.3]), np.array([0.1, 0.05, 0.2]), np.array([0.3, 0.6, 0.05])
    exact = expected_hvi(mu, sigma, x, front, ref)
    a = rng.normal(mu, sigma, size=(200_000, 3))

    def hvi(acc, cost):  # improvement by brute force over the accuracy axis
        ys = np.linspace(0, 1.2, 2401)
        m = np.array([min([c for fa, c in front if fa >= y] + [ref[1]]) for y in ys])
        gain = np.clip(m - cost, 0, None)
        return np.array([np.trapezoid(np.where(ys <= v, gain, 0.0), ys) for v in acc])

    for j in range(3):
        mc = hvi(np.sort(a[:2000, j]), x[j]).mean()
        assert exact[j] == pytest.approx(mc, rel=0.05, abs=1e-3)
    assert exact[1] > exact[0] > 0


def test_expected_hvi_is_zero_when_surely_dominated():
    front = np.array([[0.9, 0.1]])
    out = expected_hvi(np.array([0.5, 0.95]), np.array([1e-6, 1e-6]), np.array([0.5, 0.5]), front, (0.0, 1.0))
    assert out[0] == pytest.approx(0.0, abs=1e-9)
    assert out[1] == pytest.approx(0.05 * 0.5, rel=1e-3)  # the strip above the front's accuracy


def test_never_trains_a_genotype_twice_and_is_deterministic():
    a, b = _run(_sampler(seed=3), 24), _run(_sampler(seed=3), 24)
    keys = [tuple(sorted(t.params.items())) for t in a.trials]
    assert len(set(keys)) == 24
    assert keys == [tuple(sorted(t.params.items())) for t in b.trials]
    assert keys != [tuple(sorted(t.params.items())) for t in _run(_sampler(seed=4), 24).trials]


def test_over_budget_candidates_are_never_chosen():
    energy, _ = _problem()
    limit = 6e-3

    def cheap(g):
        e = energy(g)
        return e if e <= limit else None

    study = _run(_sampler(cheap=cheap, n_startup_trials=4), 12)  # 14 of the 64 genotypes are within it
    assert all(energy(t.params) <= limit for t in study.trials)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 12
    assert study.sampler.last_choice["reason"] == "ehvi"
    everything = [{n: a, "x1": b, "x2": c} for n in ("x0",) for a in OPS for b in OPS for c in OPS]
    feasible = [{"x0": g["x0"], "x1": g["x1"], "x2": g["x2"]} for g in everything if cheap(g) is not None]
    done = [
        optuna.trial.create_trial(params=g, distributions=study.trials[0].distributions, values=[0.5, 1e-3])
        for g in feasible
    ]
    assert study.sampler.choose(done, [], number=99) == {}  # none left: the trial is drawn at random


def test_running_trials_genotypes_are_excluded():
    """Another worker's trial in flight (its choice stored at once) is not proposed again."""
    sampler = _sampler()
    study = _run(sampler, 12)
    busy = study.ask()  # a trial in flight
    proposal = busy.relative_params  # Optuna asks the sampler at the first suggest (or here)
    chosen = study._storage.get_trial_system_attrs(busy._trial_id)[CHOSEN_ATTR]  # stored at once
    assert proposal == chosen
    done = study.get_trials(states=(TrialState.COMPLETE,))
    nxt = sampler.choose(done, [chosen], number=99)
    assert nxt != chosen and nxt not in [t.params for t in done]


def test_candidates_respect_the_spaces_conditions():
    space = load_space("mlp")
    dists = space_distributions(space)
    rng = np.random.default_rng(0)
    for _ in range(50):
        t = RandomTrial(rng)
        arch = sample(t, space)  # type: ignore[arg-type]
        assert {f"layers.{i}.width" for i in range(len(arch.units))} == {
            k for k in t.params if k.startswith("layers.") and k != "layers.count"
        }
        for name, d in t.distributions.items():
            assert dists[name] == d
    enc = Encoder(dists)
    x = enc.encode([{"layers.count": 1, "layers.0.width": 8, "activation": "relu", "dropout": 0.1}])
    assert x.shape == (1, enc.width)
    assert x[0, enc.index[("layers.0.width", 8)]] == 1 and x[0, enc.index[("layers.1.width", 8)]] == 0


def test_sampler_in_a_search_over_a_real_space():
    """Optuna suggests every conditional parameter from the sampler's choice (relative params)."""
    space = load_space("mlp")
    sampler = for_space(
        space, lambda g: 1e-6 * g["layers.count"] * g["layers.0.width"], seed=0, n_candidates=64, n_startup_trials=4
    )
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(8):
        trial = study.ask()
        arch = sample(trial, space)
        assert trial.params == trial.relative_params  # nothing drawn independently
        study.tell(trial, (0.5 + 0.01 * len(arch.units), 1e-6 * arch.units[0]["width"] * len(arch.units)))
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 8


def test_degenerate_genotypes_are_never_proposed():
    """NAS-Bench-201 cells with no input-output path free of `none` are the cheapest of the space
    (the EHVI's favourite) and never trained (screened); without the screen they are."""
    from nas.models import get_family

    space = load_space("nb201")

    def cheap(g):  # fewer live operations, less energy: the degenerate cells are the cheapest
        return 1e-3 * (1 + sum(v != "none" for k, v in g.items() if "<-" in k))

    def proposals(screen):
        sampler = for_space(space, cheap, seed=0, n_candidates=300, n_estimators=10, screen=screen)
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        out = []
        for _ in range(12):
            trial = study.ask()
            arch = sample(trial, space)
            out.append(arch)
            dead = get_family("nb201").degenerate(arch) is not None
            study.tell(trial, (0.01 if dead else 0.5 + 0.01 * cheap(trial.params) / 1e-3, cheap(trial.params)))
        return [get_family("nb201").degenerate(a) for a in out]

    assert not any(proposals(screen=True))
    assert any(proposals(screen=False))


@pytest.mark.parametrize("surrogate", ["forest+ridge", "forest", "gp"])
def test_every_surrogate_chooses_by_ehvi(surrogate):
    study = _run(_sampler(surrogate=surrogate, n_startup_trials=4), 10)
    assert study.sampler.last_choice["reason"] == "ehvi"
    assert study.sampler.last_choice["sigma"] > 0
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 10


def test_bad_options_raise():
    with pytest.raises(ValueError, match="energy_axis"):
        _sampler(energy_axis="cubic")
    with pytest.raises(ValueError, match="surrogate"):
        _sampler(surrogate="oracle")
