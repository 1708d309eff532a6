"""The search loop: run trials until the study holds its target, show progress, write the run folder.

`optimize` is the loop of one process (a lone search, or one worker); `finish` summarises the study
and writes RUN/pareto.json, pareto.csv, pareto.png and run.json.
"""

from __future__ import annotations

import importlib
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import optuna
import torch
from tqdm.auto import tqdm

from nas.budget import savings_summary
from nas.errors import RunError
from nas.objectives import Objective
from nas.pareto import TrialRecord, pareto_front
from nas.resume import absolute_arguments
from nas.runs import RunFolder, trial_records, write_front, write_json
from nas.search.context import SearchContext
from nas.search.objective import TableObjective, TrialObjective, quiet_optuna
from nas.search.reuse import DUPLICATE_ATTR
from nas.search.settings import make_sampler
from nas.search.stopping import StopAtTarget, StopOnFailures, run_trials
from nas.search.study import failure_reasons, recover_lost_trials, sampler_seed
from nas.storage import redact_url
from nas.train import set_threads


@dataclass(frozen=True)
class SearchResult:
    """What a search (or one worker's share of it) did: counts, the front, the meter's method, seconds."""

    run: RunFolder
    study_name: str
    complete: int
    failed: dict[str, int]
    front: list[TrialRecord]
    objectives: tuple[Objective, ...]
    meter_method: str
    new_trials: int
    wall_s: float
    interrupted: bool = False
    savings: dict[str, Any] = field(default_factory=dict)


class Progress:
    """A tqdm bar over the study's complete trials, showing the current front size."""

    def __init__(self, ctx: SearchContext, study: optuna.Study, enabled: bool) -> None:
        # the front's distinct value vectors -> how many trials hold each: ties cost nothing, where
        # a list of records made every trial of a 10,000-trial study scan hundreds of equal ones
        self.ctx, self.front, self.failed = ctx, {}, 0
        self.done = sum(1 for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE)
        self.bar = None
        if enabled:  # the front size is only shown on the bar
            for r in trial_records(study, ctx.objectives):
                self._add(r)
            self.bar = tqdm(
                total=ctx.settings.trials, initial=min(self.done, ctx.settings.trials), unit="trial", dynamic_ncols=True
            )
            self._postfix()

    def _add(self, r: TrialRecord) -> None:
        if not r.feasible or DUPLICATE_ATTR in r.attrs:  # a reused repeat is not another network
            return
        v = tuple(-r.values[o.name] if o.direction == "maximize" else r.values[o.name] for o in self.ctx.objectives)
        if v in self.front:
            self.front[v] += 1
        elif not any(all(a <= b for a, b in zip(f, v, strict=True)) for f in self.front):
            self.front = {f: n for f, n in self.front.items() if not all(a <= b for a, b in zip(v, f, strict=True))}
            self.front[v] = 1

    @property
    def front_size(self) -> int:
        """Feasible complete trials on the front so far, ties counted each (reused repeats not)."""
        return sum(self.front.values())

    def _postfix(self, running: str | None = None) -> None:
        if self.bar is not None:
            extra = {"trial": running} if running else {}
            self.bar.set_postfix(front=self.front_size, failed=self.failed, **extra, refresh=running is not None)

    def epoch_hook(self, number: int, epochs: int, inner: Callable[[int, torch.nn.Module], bool] | None):
        """An `on_epoch` hook for `train` that shows 'trial N epoch e/E' on the bar, then calls `inner`."""
        if self.bar is None:
            return inner

        def on_epoch(epoch: int, model: torch.nn.Module) -> bool:
            """Show the epoch on the bar; stop when `inner` says so."""
            self._postfix(f"{number} epoch {epoch}/{epochs}")
            return bool(inner(epoch, model)) if inner is not None else False

        return on_epoch

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            self.done += 1
            if self.bar is None:
                return
            rec = TrialRecord(
                number=trial.number,
                values={o.name: v for o, v in zip(self.ctx.objectives, trial.values, strict=True)},
                accuracy=trial.values[0],
                test_accuracy=None,
                energy_per_inference_j=trial.values[1],
                energy_method="",
                latency_s=None,
                params=0,
                macs=0,
                architecture={},
                feasible=all(c <= 0 for c in trial.constraints.values()),
                attrs={DUPLICATE_ATTR: True} if DUPLICATE_ATTR in trial.user_attrs else {},
            )
            self._add(rec)
            self._postfix()
            self.bar.update(1)
        elif trial.state == optuna.trial.TrialState.FAIL:
            self.failed += 1
            self._postfix()

    def close(self) -> None:
        """Close the progress bar, if shown."""
        if self.bar is not None:
            self.bar.close()


def optimize(ctx: SearchContext, study: optuna.Study, run: RunFolder | None, worker_index: int = 0) -> SearchResult:
    """Run trials until the study has enough complete trials, then write the results.

    `worker_index` tells workers of one study apart: each draws from its own sampler seed.
    """
    s = ctx.settings
    set_threads(s.threads)
    quiet_optuna()
    # PyTorch imports torch._dynamo (about 1 s) on the first forward pass under FlopCounterMode
    # or the first optimizer step, whoever comes first. Doing it here, once, keeps a one-time
    # import out of the first trial's phases, so `phases_s` shows what each trial costs.
    importlib.import_module("torch._dynamo")

    before = len(study.get_trials(deepcopy=False))
    recover_lost_trials(study, ctx.host)
    # a resumed search must not replay the first run's random draws, nor two workers the same ones
    study.sampler = make_sampler(s.sampler, sampler_seed(s.seed, before, worker_index), ctx)
    progress = Progress(ctx, study, s.progress)
    ctx.progress = progress if progress.bar is not None else None
    t0 = time.perf_counter()
    interrupted = False
    try:
        if progress.done < s.trials:
            run_trials(
                study,
                TableObjective(ctx, ctx.table) if ctx.table is not None else TrialObjective(ctx),
                timeout_s=s.timeout_s,
                callbacks=[
                    StopAtTarget(s.trials),
                    StopOnFailures(limit=max(10, s.trials)),
                    progress,
                ],
            )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
        ctx.meter.close()
    return finish(ctx, study, run, before, time.perf_counter() - t0, interrupted)


def finish(
    ctx: SearchContext, study: optuna.Study, run: RunFolder | None, before: int, wall: float, interrupted: bool
) -> SearchResult:
    """Summarise the study (and write the run folder's results, if there is one).

    `before`: how many trials the study held when this process started; `wall`: seconds it ran.
    """
    trials = study.get_trials(deepcopy=False)
    failed = failure_reasons(trials)
    records = trial_records(study, ctx.objectives)
    front = pareto_front(records, ctx.objectives)
    if run is not None:
        write_results(run, ctx, study, front, status="interrupted" if interrupted else "finished")
    new = trials[before:]
    if not interrupted and new and not records and all(t.state == optuna.trial.TrialState.FAIL for t in new):
        raise_all_failed(new, failed, run)
    return SearchResult(
        run=run,
        study_name=study.study_name,
        complete=len(records),
        failed=dict(failed),
        front=front,
        objectives=ctx.objectives,
        meter_method=_meter_method(records, ctx),
        new_trials=len(trials) - before,
        wall_s=wall,
        interrupted=interrupted,
        savings=savings_summary(t.user_attrs for t in trials if t.state == optuna.trial.TrialState.COMPLETE),
    )


def _meter_method(records: list[TrialRecord], ctx: SearchContext) -> str:
    methods = sorted({r.energy_method for r in records})
    return ", ".join(methods) if methods else ctx.meter.name


def _dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def write_run_json(run: RunFolder, ctx: SearchContext, study: optuna.Study, status: str) -> None:
    """Write RUN/run.json: status, settings, space, profile, dataset, meter, versions, host."""
    write_json(
        run.run_json,
        {
            "status": status,
            "study_name": study.study_name,
            "storage_url": redact_url(ctx.settings.storage) if ctx.settings.storage else None,
            "settings": ctx.resolved(),
            "arguments": absolute_arguments(ctx.settings),  # what `nas search --out RUN` resumes with
            "space": ctx.space.to_dict(),
            "profile": ctx.profile_doc,
            "dataset": ctx.data.describe(),
            "meter": {
                "backend": ctx.meter.name,
                "profile_meter": ctx.profile.meter,
                "estimated": ctx.meter.name == "estimate",
            },
            "runtime": ctx.profile.runtime.to_dict(),
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "optuna": optuna.__version__,
                # from the installed metadata: importing scikit-learn and matplotlib costs about 1 s
                **{name: _dist_version(name) for name in ("numpy", "scikit-learn", "matplotlib")},
                "energy-nas": _own_version(),
            },
            "host": ctx.host,
            "platform": platform.platform(),
        },
    )


def _own_version() -> str:
    try:
        return version("energy-nas")
    except PackageNotFoundError:
        return "unknown"


def raise_all_failed(new: list[optuna.trial.FrozenTrial], failed: dict[str, int], run: RunFolder | None) -> None:
    """Every trial of this invocation failed and none ever completed: that is the input's fault
    (a dataset no model can train on, a profile no model fits), not bad luck; say why and exit non-zero."""
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(failed.items()))
    first = next((t for t in new if t.user_attrs.get("fail_message")), None)
    why = (
        f"; trial {first.number}: {(str(first.user_attrs['fail_message']).splitlines() or [''])[0][:200]}"
        if first
        else ""
    )
    where = f" (run folder {run.path} kept; rerun with the cause fixed)" if run is not None else ""
    raise RunError(f"all {len(new)} trials failed ({reasons}){why}{where}")


def write_results(
    run: RunFolder, ctx: SearchContext, study: optuna.Study, front: list[TrialRecord], status: str = "finished"
) -> None:
    """Write the run folder's results: pareto.json/.csv, run.json (`status`: finished or interrupted), pareto.png."""
    # imported here: matplotlib costs about 1 s, which workers (they never draw) should not pay
    from nas.plot import pareto_figure, save_figure

    write_front(run, front, ctx.objectives)
    write_run_json(run, ctx, study, status=status)
    records = trial_records(study, ctx.objectives)
    if records:
        save_figure(pareto_figure(records, front, title=study.study_name), run.pareto_png)


__all__ = ["Progress", "SearchResult", "finish", "optimize", "write_results", "write_run_json"]
