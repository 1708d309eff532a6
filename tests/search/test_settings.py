"""Search settings and the sampler registry: one contract over every registered sampler."""

from __future__ import annotations

import optuna
import pytest

from nas.errors import ConfigError
from nas.search.settings import SAMPLERS, make_sampler


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_is_seeded_and_multi_objective(name):
    def sampled(seed: int) -> list[dict]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(name, seed))
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_int("y", 0, 100)), n_trials=11)
        return [t.params for t in study.trials]

    first = sampled(1)
    assert len(first) == 11 and first == sampled(1)  # the seed fixes every sample (past any startup phase)
    assert first != sampled(2)


def test_an_unknown_sampler_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown sampler 'bogus'") as e:
        make_sampler("bogus", 0)
    assert all(name in str(e.value) for name in SAMPLERS)
