"""Candidates for the measure-first sampler from our spaces, tables and searches.

`RandomTrial` proposes genotypes with a space's own sampling code (conditions respected),
`space_distributions` lists every parameter a space can suggest, `cheap_energy` is a search's
energy before training (a table's figure or the profile's analytical estimate), and
`search_sampler` (the `--sampler measure-first` entry of `nas.search.settings.CONTEXT_SAMPLERS`)
and `table_sampler` put them together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from nas.search.measure_first import MeasureFirstSampler


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
        """One of `choices`, uniformly."""
        choices = tuple(choices)
        return self._keep(name, CategoricalDistribution(choices), choices[int(self.rng.integers(len(choices)))])

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        """One of low, low + step, ..., high, uniformly."""
        values = range(low, high + 1, step)
        return self._keep(
            name, IntDistribution(low, high, log=log, step=step), values[int(self.rng.integers(len(values)))]
        )

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        """A value on the step grid (rounded as nas.tabular enumerates it), or uniform (log-uniform) in [low, high]."""
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

    out: dict[str, BaseDistribution] = {}

    def add_group(group: Any, prefix: str) -> None:
        out[f"{prefix}{group.name}.count"] = dist(group.count)
        most = int(max(group.count.choices) if group.count.kind == "choice" else group.count.high)
        for i in range(most):
            for p in group.params:
                out[f"{prefix}{group.name}.{i}.{p.name}"] = dist(p)
            for nested in group.groups:  # nested repeated groups (per layer, its experts)
                add_group(nested, f"{prefix}{group.name}.{i}.")

    if space.families:  # the family is a choice; each family's names carry it as a prefix
        out["family"] = CategoricalDistribution(tuple(a.family for a in space.families))
    for alt in space.alternatives():
        prefix = f"{alt.family}." if space.families else ""
        out.update({f"{prefix}{p.name}": dist(p) for p in alt.params})
        add_group(alt.repeated, prefix)
    return out


def for_space(
    space: Any,
    cheap: Callable[[dict[str, Any]], float | None],
    seed: int | None = None,
    screen: bool = True,
    **kwargs: Any,
) -> MeasureFirstSampler:
    """A measure-first sampler over a nas.config.SearchSpace; `cheap` maps Optuna params to energy
    per inference (J) or None (not trainable); with `screen`, degenerate genotypes are never
    proposed (`screened`); `kwargs` go to MeasureFirstSampler."""
    from nas.space import sample

    def propose(rng: np.random.Generator) -> dict[str, Any]:
        t = RandomTrial(rng)
        sample(t, space)  # type: ignore[arg-type]
        return t.params

    cheap = screened(space, cheap) if screen else cheap
    return MeasureFirstSampler(space_distributions(space), propose, cheap, seed=seed, **kwargs)


def screened(space: Any, cheap: Callable[[dict[str, Any]], float | None]) -> Callable[[dict[str, Any]], float | None]:
    """`cheap`, but None (not to be trained) for a genotype its family calls degenerate
    (`Family.degenerate`: the output cannot depend on the input, the accuracy is chance). Without
    it the sampler trains them: their energy is the lowest of the space and the surrogate cannot
    tell them from their neighbours (NAS-Bench-201: 13-16 of 100 trials)."""
    from nas.models import get_family
    from nas.space import sample

    def screen(params: dict[str, Any]) -> float | None:
        arch = sample(_FixedTrial(params), space)  # type: ignore[arg-type]
        return None if get_family(arch.family).degenerate(arch) else cheap(params)

    return screen


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


def table_sampler(
    space: Any,
    rows: Sequence[Mapping[str, Any]],
    cheap: Callable[[dict[str, Any]], float | None],
    seed: int,
    whole_up_to: int = 2000,
    screen: bool = True,
    **kwargs: Any,
) -> MeasureFirstSampler:
    """A measure-first sampler replaying a table: its candidates are the table's rows.

    Tables of up to `whole_up_to` rows are scored whole at every trial. Larger ones through a pool
    of 1,000 (half fixed, half drawn anew for each trial), drawn half through the space's own
    sampling code (as a search draws: in a conditional space the shallow networks, few but often on
    the front, come up as often as the deep ones) and half uniformly over the rows (so that a table
    holding only part of a space, as an imported one may, still yields candidates); candidates that
    are not rows are dropped by `cheap` (None); with `screen`, so are degenerate ones (`screened`).
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
    return MeasureFirstSampler(
        space_distributions(space),
        propose,
        screened(space, cheap) if screen else cheap,
        seed=seed,
        n_candidates=len(rows) if whole else 1000,
        n_fresh=0 if whole else None,
        pool=rows if whole else None,
        **kwargs,
    )


__all__ = [
    "RandomTrial",
    "cheap_energy",
    "for_space",
    "screened",
    "search_sampler",
    "space_distributions",
    "table_sampler",
]
