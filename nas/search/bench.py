"""`nas bench build`: evaluate every architecture of a small discrete space once, with the search's own
trial objective, and write the table a search replays with `--table` (format: nas.tabular)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna

from nas.errors import ConfigError, RunError, TrialFault
from nas.runs import write_json
from nas.search.context import prepare
from nas.search.objective import TrialObjective, quiet_optuna
from nas.search.settings import SearchSettings
from nas.tabular import TABLE_VERSION, Table, enumerate_space, key_of
from nas.train import set_threads


def build_table(settings: SearchSettings, out: str | Path) -> Table:
    """Evaluate every architecture of `settings.space` once with the normal trial code; write it to `out`.

    Raises ConfigError for a space too large or continuous, RunError if any architecture fails.
    """
    quiet_optuna()
    if settings.table:
        raise ConfigError("--table: a table is built from a space, not from another table")
    ctx = prepare(settings)
    set_threads(ctx.settings.threads)  # as a search trains its candidates (the table records it)
    study = optuna.create_study(directions=[o.direction for o in ctx.objectives])
    objective = TrialObjective(ctx)
    rows: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    failed = 0
    bar = None
    if settings.progress:  # a table takes minutes: say how far it is (stderr)
        from tqdm.auto import tqdm

        total = sum(1 for _ in enumerate_space(ctx.space))  # sampling only: milliseconds
        bar = tqdm(total=total, unit="arch", desc=f"bench build {ctx.space.name}", dynamic_ncols=True)
    for params, _arch in enumerate_space(ctx.space):
        if bar is not None:
            bar.update(1)
        study.enqueue_trial(params)
        trial = study.ask()
        try:
            values = objective(trial)
        except TrialFault:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            failed += 1
            continue
        frozen = study.tell(trial, values)  # (study.trials[-1] deep-copied every trial so far: quadratic)
        rows[key_of(frozen.params)] = {
            "values": dict(zip([o.name for o in ctx.objectives], values, strict=True)),
            "user_attrs": frozen.user_attrs,
        }
    if bar is not None:
        bar.close()
    if failed:
        raise RunError(f"{failed} architectures failed to evaluate; a table must be complete")
    table = Table(ctx.space_doc, ctx.profile_doc, ctx.resolved(), rows, time.perf_counter() - t0)
    doc = {
        "version": TABLE_VERSION,
        "space": table.space_doc,
        "profile": table.profile_doc,
        "settings": table.settings,
        "build_s": table.build_s,
        "rows": rows,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(out), doc)
    return table


__all__ = ["build_table"]
