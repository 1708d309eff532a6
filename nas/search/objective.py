"""The trial objectives Optuna calls: `TrialObjective` (sample, build, deploy, measure, train,
evaluate, store) and `TableObjective` (replay from a `nas bench build` table); and the log filter
that turns a failed trial into one warning line."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna
import torch

from nas.artifacts import WEIGHTS_ATTR, save_trial_weights
from nas.budget import Budget, EarlyStopRule
from nas.compress import prune
from nas.deploy import CALIBRATION_SAMPLES, candidate_payload, deploy, inference_batch, measure_on
from nas.energy import EnergyRecord
from nas.energy.estimate import EstimateMeter
from nas.errors import ConfigError, NasError, RunError, TrialFault
from nas.models import ModelStats, architecture_label, build_model, model_stats
from nas.remote import STATE_ATTR, MeasureQueue, queue_for
from nas.search.context import SearchContext
from nas.search.reuse import reuse
from nas.space import sample
from nas.tabular import Table, key_of
from nas.train import TrainConfig, TrainResult, accuracy, add_work, train, training_work
from nas.trial_rows import set_user_attrs


class TrialObjective:
    """The function Optuna calls for each trial: sample -> build -> deploy -> measure -> train ->
    evaluate -> store. `fixed_seed` trains every trial with that seed (re-running one trial's set-up)."""

    def __init__(self, ctx: SearchContext, fixed_seed: int | None = None) -> None:
        self.ctx = ctx
        self.fixed_seed = fixed_seed  # train every trial with this seed (re-running one trial's setup)
        s = ctx.settings
        self.budget = Budget(s.energy_budget_j, s.latency_budget_s)
        self.rule = EarlyStopRule(s.early_stop_k)
        self.model: torch.nn.Module | None = None
        self._queue: MeasureQueue | None = None  # opened on the first remote measurement

    def _over_budget(
        self,
        trial: optuna.Trial,
        attrs: dict[str, Any],
        full_stats: ModelStats,
        phases: dict[str, float],
        lap: Callable[[str], None],
    ) -> tuple[float, ...]:
        """Record an over-budget candidate as infeasible without training it."""
        s, ctx = self.ctx.settings, self.ctx
        samples = s.epochs * len(ctx.data.y_train)
        would_cost = EstimateMeter(ctx.profile).estimate_work(
            training_work(full_stats, TrainResult(s.epochs, samples, 0.0, False, 0.0), s.batch_size)
        )
        attrs = {
            **attrs,
            "over_budget": True,
            "val_accuracy": 0.0,
            "test_accuracy": None,
            "training_saved_j": would_cost.energy_j,
            "training_saved_method": would_cost.method,
        }
        set_user_attrs(trial, attrs)
        lap("store")
        trial.set_user_attr("phases_s", phases)
        values = {
            "accuracy": 0.0,
            "energy": attrs["energy_per_inference_j"],
            "latency": attrs["latency_s"],
            "params": float(attrs["params"]),
        }
        return tuple(values[o.name] for o in ctx.objectives)

    def _measure_remote(self, trial: optuna.Trial, payload: dict[str, Any]) -> tuple[EnergyRecord, dict[str, Any]]:
        """Queue the candidate for `nas worker --measure-only` and wait for its record (nas.remote).

        Returns the record and who measured it (host, measurer, device, runtime, sensor). Raises
        TrialFault('measure_timeout') when none arrives within the settings' measure_timeout_s,
        TrialFault('measure_failed') when the measurer could not deploy the candidate.
        """
        if self._queue is None:
            self._queue = queue_for(trial.study._storage)
        self._queue.request(trial.study.study_name, trial._trial_id, trial.number, payload)
        set_user_attrs(trial, {STATE_ATTR: "waiting", "architecture": payload["architecture"], "seed": payload["seed"]})
        try:
            result = self._queue.wait(trial._trial_id, self.ctx.settings.measure_timeout_s)
        except TrialFault as e:
            trial.set_user_attr(STATE_ATTR, e.reason)
            raise
        except KeyboardInterrupt:  # the search is stopping: no measurer should start this one
            self._queue.withdraw(trial._trial_id, "the trainer was interrupted")
            raise
        trial.set_user_attr(STATE_ATTR, "done")
        return EnergyRecord.from_dict(result["energy"]), {
            k: result[k] for k in ("host", "measurer", "device", "runtime", "sensor")
        }

    def _early_stop_hook(self, energy_j: float, history: list[float]) -> Callable[[int, torch.nn.Module], bool]:
        finished = [
            (t.user_attrs["energy_per_inference_j"], t.user_attrs.get("val_accuracy_history", ()))
            for t in self._study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "energy_per_inference_j" in t.user_attrs and not t.user_attrs.get("over_budget")
        ]
        data = self.ctx.data

        def on_epoch(epoch: int, model: torch.nn.Module) -> bool:
            history.append(accuracy(model, data.x_val, data.y_val))
            return self.rule.should_stop(epoch, history[-1], energy_j, finished)

        return on_epoch

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        """Run one trial; returns the objective values in the study's order.

        Failures are stored as the trial's `fail_reason` / `fail_message`: a NasError stops the
        search, any other exception (out of memory included) becomes a TrialFault that fails only
        this trial.
        """
        # who runs the trial, from its start: a restarted search fails it at once if this process dies
        set_user_attrs(trial, {"host": self.ctx.host, "pid": os.getpid()})
        try:
            return self._run(trial)
        except TrialFault as e:
            trial.set_user_attr("fail_reason", e.reason)
            trial.set_user_attr("fail_message", str(e))
            for key, value in e.attrs.items():  # e.g. the raw record of an implausible measurement
                trial.set_user_attr(key, value)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        except NasError as e:
            trial.set_user_attr("fail_reason", f"error:{e.__class__.__name__}")
            trial.set_user_attr("fail_message", str(e)[:500])
            raise  # a configuration or sensor problem: stop the search, don't retry
        except Exception as e:
            if _out_of_memory(e):
                trial.set_user_attr("fail_reason", "out_of_memory")
                trial.set_user_attr("fail_message", str(e).splitlines()[0] if str(e) else "out of memory")
                raise TrialFault("out_of_memory", str(e)) from e
            reason = f"exception:{e.__class__.__name__}"
            trial.set_user_attr("fail_reason", reason)
            trial.set_user_attr("fail_message", str(e)[:500])
            raise TrialFault(reason, str(e)) from e

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        ctx, s = self.ctx, self.ctx.settings
        self._study = trial.study
        self.model = None
        phases: dict[str, float] = {}
        t = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            now = time.perf_counter()
            phases[name] = phases.get(name, 0.0) + now - t
            t = now

        arch = sample(trial, ctx.space)
        lap("sample")
        reused = reuse(trial, [o.name for o in ctx.objectives])  # evaluated before: not trained again
        if reused is not None:
            return reused
        seed = self.fixed_seed if self.fixed_seed is not None else s.seed * 1_000_003 + trial.number
        torch.manual_seed(seed)
        model = build_model(arch, ctx.data.input_shape, ctx.data.num_classes)
        precision = str(arch.params.get("precision", ctx.profile.precision))
        prune_ratio = float(arch.params.get("prune_ratio", 0.0))
        full_stats = model_stats(model, ctx.data.input_shape)
        calibration = ctx.data.x_train[:CALIBRATION_SAMPLES]
        # Measure first: the deployed form's shape (pruned, at its precision) is known before
        # training, and a dense model's inference energy does not depend on its weights' values.
        # (It would for sparse kernels or data-dependent early exits, which we do not build.)
        # It runs in the profile's runtime, measured here or by `nas worker --measure-only` on the
        # target device (nas.remote), which rebuilds it from the same genotype and seed.
        measured_by: dict[str, Any] | None = None
        if s.measure_remote:
            stats = (
                model_stats(prune(model, arch.family, prune_ratio), ctx.data.input_shape) if prune_ratio else full_stats
            )
            lap("build")
            record, measured_by = self._measure_remote(
                trial, candidate_payload(arch.to_dict(), seed, precision, prune_ratio)
            )
        else:
            deployment = deploy(
                model,
                precision,
                calibration,
                ctx.device,
                input_shape=ctx.data.input_shape,
                family=arch.family,
                prune_ratio=prune_ratio,
                stats=None if prune_ratio else full_stats,
                runtime=ctx.profile.runtime,
                threads=s.threads,
                example=inference_batch(ctx.data, ctx.profile.batch_size, torch.device("cpu")),
                run_in_runtime=ctx.meter.runs_workload,
            )
            stats = deployment.stats
            lap("build")
            record = measure_on(ctx.meter, deployment, ctx.data, ctx.profile)
        lap("measure")
        base_attrs = {
            "architecture": arch.to_dict(),
            "arch": architecture_label(arch),
            "params": stats.params,
            "macs": stats.macs,
            "precision": precision,
            "prune_ratio": prune_ratio,
            "energy_per_inference_j": record.energy_per_inference_j,
            "energy_method": record.method,
            "latency_s": record.latency_s,
            "energy": record.to_dict(),
            "seed": seed,
            "host": ctx.host,
            "device": record.device_name,
            "runtime": record.runtime.get("name"),
        }
        if measured_by is not None:
            base_attrs["measured_by"] = measured_by
        if prune_ratio:
            base_attrs.update(params_before_pruning=full_stats.params, macs_before_pruning=full_stats.macs)
        violations = self.budget.violations(record.energy_per_inference_j, record.latency_s)
        for name, value in violations.items():
            trial.set_constraint(name, value)
        if any(v > 0 for v in violations.values()):
            return self._over_budget(trial, base_attrs, full_stats, phases, lap)

        finetune = max(1, s.epochs // 3) if prune_ratio and s.epochs >= 2 else 0
        history: list[float] = []
        on_epoch = self._early_stop_hook(record.energy_per_inference_j, history) if s.early_stop else None
        if ctx.progress is not None:
            on_epoch = ctx.progress.epoch_hook(trial.number, s.epochs - finetune, on_epoch)
        meter = ctx.training_meter()
        meter.begin_window()
        result = train(
            model, ctx.data, TrainConfig(s.epochs - finetune, s.batch_size, s.lr, seed), ctx.train_device, on_epoch
        )
        work = training_work(full_stats, result, s.batch_size)
        if prune_ratio:
            model = prune(model, arch.family, prune_ratio)
            tuned = (
                train(model, ctx.data, TrainConfig(finetune, s.batch_size, s.lr, seed + 1), ctx.train_device)
                if finetune
                else None
            )
            if tuned is not None:
                work = add_work(work, training_work(stats, tuned, s.batch_size))
                result = replace(
                    result,
                    epochs_done=result.epochs_done + tuned.epochs_done,
                    samples_seen=result.samples_seen + tuned.samples_seen,
                    final_loss=tuned.final_loss,
                    duration_s=result.duration_s + tuned.duration_s,
                )
        reading = meter.end_window(work)
        lap("train")
        deployed = deploy(
            model, precision, calibration, ctx.device, input_shape=ctx.data.input_shape, stats=stats
        ).model
        val_acc = accuracy(deployed, ctx.data.x_val, ctx.data.y_val)
        test_acc = accuracy(deployed, ctx.data.x_test, ctx.data.y_test)
        lap("evaluate")
        self.model = model  # the trained float model (pruned), for whoever keeps weights
        values = {
            "accuracy": val_acc,
            "energy": record.energy_per_inference_j,
            "latency": record.latency_s,
            "params": float(stats.params),
        }
        attrs = {
            **base_attrs,
            "val_accuracy": val_acc,
            "test_accuracy": test_acc,
            "training": {
                "energy_j": reading.energy_j,
                "method": reading.method,
                # sensor meters: the idle-subtracted figure and the idle power it used (None: estimate)
                "net_energy_j": reading.net_energy_j,
                "idle_power_w": reading.idle_power_w,
                "duration_s": result.duration_s,
                "device": str(ctx.train_device),
                "epochs": result.epochs_done,
                "samples": result.samples_seen,
                "final_loss": result.final_loss,
            },
        }
        if s.early_stop:
            attrs["val_accuracy_history"] = history
            if result.stopped_early:
                attrs["stopped_early_at_epoch"] = result.epochs_done
                # the epochs not run would have cost what the run ones did, per epoch
                attrs["training_saved_j"] = reading.energy_j / result.epochs_done * (s.epochs - result.epochs_done)
        if ctx.artifact_dir is not None:
            attrs[WEIGHTS_ATTR] = save_trial_weights(trial, model, ctx.artifact_dir)
        set_user_attrs(trial, attrs)
        lap("store")
        trial.set_user_attr("phases_s", phases)
        return tuple(values[o.name] for o in ctx.objectives)


class TableObjective:
    """Replays evaluations from a table: same parameters, same user attrs, no training."""

    def __init__(self, ctx: SearchContext, table: Table) -> None:
        self.ctx, self.table = ctx, table
        self.names = [o.name for o in ctx.objectives]
        missing = [n for n in self.names if n not in next(iter(table.rows.values()))["values"]]
        if missing:
            raise ConfigError(f"table lacks objective(s) {', '.join(missing)}; rebuild it with them")

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        """Sample the trial's parameters and return the table's values for them (RunError if absent)."""
        sample(trial, self.ctx.space)
        reused = reuse(trial, self.names)  # as a search would: the duplicate is not trained again
        if reused is not None:
            return reused
        if key_of(trial.params) not in self.table.rows and self.ctx.settings.sampler == "measure-first":
            # measure-first proposes rows only; a draw elsewhere is Optuna's fallback once none is left
            s = self.ctx.settings
            budgets = s.energy_budget_j is not None or s.latency_budget_s is not None
            raise RunError(
                f"{s.table}: every architecture of the table{' within the budgets' if budgets else ''} has been "
                f"tried (it holds {len(self.table.rows):,}, part of its space); ask for fewer --trials"
                + (" or wider budgets" if budgets else "")
            )
        row = self.table.lookup(trial.params)
        attrs = {k: v for k, v in row["user_attrs"].items() if k not in ("phases_s", "host")}
        set_user_attrs(trial, {**attrs, "replayed": True})
        return tuple(row["values"][n] for n in self.names)


# ------------------------------------------------------------------------------------ logs
def quiet_optuna() -> None:
    """Our own progress and summary replace Optuna's per-trial log lines."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    trial_log = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _OneLineFailures) for f in trial_log.filters):
        trial_log.addFilter(_OneLineFailures())


class _OneLineFailures(logging.Filter):
    """A failed trial is one warning line: its reason is stored with the trial, and a traceback
    (Optuna logs one for every failure, Ctrl-C included) reads like a crash of the search."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = record.exc_text = None
        return " failed with value None" not in record.getMessage()


def _out_of_memory(e: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU allocator raises a RuntimeError saying so."""
    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e)
    )


__all__ = ["TableObjective", "TrialObjective", "quiet_optuna"]
