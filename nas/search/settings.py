"""What a search is asked to do: `SearchSettings`, `WorkerSettings` and the sampler registry.

A leaf of the search package (it imports only Optuna, `nas.errors`, `nas.flags` and `nas.registry`): the CLI, the HTML report
and the workers read the defaults and valid samplers from here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import optuna

from nas.errors import ConfigError
from nas.flags import option
from nas.registry import lookup

# Optuna's multi-objective samplers by name; each entry builds one from a seed.
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=10),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=10),
    "nsga3": lambda seed: optuna.samplers.NSGAIIISampler(seed=seed, population_size=10),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed, n_startup_trials=10),
}


# Samplers built from the search's context (space, objectives, cheap energy function), by name ->
# "module:function(ctx, seed)"; imported only when chosen, so this module stays a leaf.
CONTEXT_SAMPLERS: dict[str, str] = {
    "measure-first": "nas.search.candidates:search_sampler",
}


def sampler_names() -> list[str]:
    """Every valid `--sampler` value."""
    return [*SAMPLERS, *CONTEXT_SAMPLERS]


def make_sampler(name: str, seed: int, ctx: object | None = None) -> optuna.samplers.BaseSampler:
    """The sampler `name` seeded with `seed`; ConfigError listing the valid names if unknown.

    A context sampler (CONTEXT_SAMPLERS) needs the search context `ctx`; without one (a study
    opened only to read or to join it before the context is known) a RandomSampler stands in.
    """
    if name in CONTEXT_SAMPLERS:
        if ctx is None:
            return optuna.samplers.RandomSampler(seed=seed)
        import importlib

        module, function = CONTEXT_SAMPLERS[name].split(":")
        return getattr(importlib.import_module(module), function)(ctx, seed)
    return lookup(SAMPLERS, "sampler", name)(seed)


@dataclass(frozen=True)
class SearchSettings:
    """Everything a search needs; defaults are the embedded single-machine set-up.

    The one place where the search's defaults live: each field declared with `nas.flags.option`
    carries its command-line flag and help, `nas search` builds its options from them
    (`nas.cli_options`), and `search_arguments` turns stored settings back into flags. Units:
    `timeout_s` and `latency_budget_s` in seconds, `energy_budget_j` in joules per inference, `lr`
    the Adam learning rate. `validate` raises ConfigError naming the flag of a bad value.
    """

    space: str = option("mlp", "--space", "Search space: a shipped name (`nas spaces list`) or a YAML path.")
    profile: str = option(
        "cpu-host", "--profile", "Hardware profile: a shipped name (`nas profiles list`) or a YAML path."
    )
    dataset: str = option("digits", "--dataset", "digits, mnist5k, or npz:PATH.")
    trials: int = option(20, "--trials", "Complete trials the study should reach in total.")
    timeout_s: float | None = option(None, "--timeout", "Stop after this many seconds.")
    epochs: int = option(3, "--epochs", "Training epochs per candidate.")
    sampler: str = option(
        "tpe",
        "--sampler",
        "Sampler: "
        + ", ".join(sampler_names())
        + " (measure-first: energy known before training; docs/benchmarks.md).",
    )
    objectives: tuple[str, ...] = option(
        ("accuracy", "energy"), "--objectives", "Comma list; accuracy and energy always, plus latency and/or params."
    )
    seed: int = option(0, "--seed", "Seed of the sampler and of each trial's training.")
    out: str = option("runs/default", "--out", "Run folder.")
    study_name: str | None = option(None, "--study", "Study name (default: the run folder's name).")
    storage: str | None = option(
        None, "--storage", "Optuna storage URL (default: sqlite:///RUN/study.db). PostgreSQL: postgresql+psycopg://..."
    )
    threads: int = option(1, "--threads", "torch CPU threads per worker.")
    batch_size: int = option(64, "--batch-size", "Training mini-batch size (inputs).")
    lr: float = option(3e-3, "--lr", "Adam learning rate of each candidate's training.")
    split_seed: int = option(0, "--split-seed", "Seed of the dataset's train/validation/test split.")
    allow_estimate: bool = option(
        False,
        "--allow-estimate",
        "If the profile's sensor is absent, use its analytical estimate (labelled 'estimated').",
    )
    energy_budget_j: float | None = option(
        None,
        "--energy-budget",
        "Energy per inference limit in J: candidates over it are measured, marked infeasible, and not trained.",
    )
    latency_budget_s: float | None = option(
        None, "--latency-budget", "Latency per batch limit in s, checked before training like --energy-budget."
    )
    early_stop: bool = option(
        False, "--early-stop", "Stop training candidates dominated at the same epoch by finished trials."
    )
    early_stop_k: int = option(3, "--early-stop-k", "How many finished trials must dominate to stop.")
    table: str | None = option(
        None, "--table", "Replay evaluations from a `nas bench build` table (no training; for sampler benchmarks)."
    )
    progress: bool = False  # a progress bar on stderr (the CLI's --quiet turns it off)
    workers: int = option(1, "--workers", "Worker processes on this machine, sharing the study.")
    share_device: bool = option(
        False,
        "--share-device",
        "Allow more workers than measured devices (their loads then mix in each other's readings).",
    )
    train_device: str = option(
        "auto",
        "--train-device",
        "Where candidates train: cpu, cuda, or auto (CUDA where present); independent of the profile's measured device.",
    )
    measure_remote: bool = option(
        False,
        "--measure-remote",
        "Leave measuring to `nas worker --measure-only` on the target device (trainers and measurers share --storage).",
    )
    measure_timeout_s: float = option(
        600.0,
        "--measure-timeout",
        "With --measure-remote: fail a candidate whose measurement has not arrived after this many seconds.",
    )

    def validate(self) -> None:
        """Raise ConfigError for the first value out of range, naming its command-line flag."""
        if self.trials < 1:
            raise ConfigError(f"--trials: expected an integer >= 1, got {self.trials}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs: expected an integer >= 1, got {self.epochs}")
        if self.timeout_s is not None and not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"--timeout: expected a finite number of seconds > 0, got {self.timeout_s}")
        if self.threads < 1:
            raise ConfigError(f"--threads: expected an integer >= 1, got {self.threads}")
        if self.workers < 1:
            raise ConfigError(f"--workers: expected an integer >= 1, got {self.workers}")
        cap = max_workers()
        if self.workers > cap:
            raise ConfigError(
                f"--workers: expected at most {cap} (4 x the {os.cpu_count() or 1} CPUs here), got {self.workers}"
            )
        if self.sampler not in SAMPLERS and self.sampler not in CONTEXT_SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r} (valid: {', '.join(sampler_names())})")
        for flag, value in (("--energy-budget", self.energy_budget_j), ("--latency-budget", self.latency_budget_s)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{flag}: expected a finite number > 0, got {value}")
        for flag, seed in (("--seed", self.seed), ("split_seed", self.split_seed)):
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
                raise ConfigError(f"{flag}: expected an integer in [0, {MAX_SEED}], got {seed}")
        if self.early_stop_k < 1:
            raise ConfigError(f"--early-stop-k: expected an integer >= 1, got {self.early_stop_k}")
        if self.train_device not in TRAIN_DEVICES:
            raise ConfigError(f"--train-device: expected one of {', '.join(TRAIN_DEVICES)}, got {self.train_device!r}")
        if not self.measure_timeout_s > 0:
            raise ConfigError(f"--measure-timeout: expected seconds > 0, got {self.measure_timeout_s}")


# Optuna's samplers take numpy seeds (< 2**32) and add the trials already run on resuming
MAX_SEED = 2**31 - 1


def max_workers() -> int:
    """Most local worker processes a search may start: 4 per CPU (each trains with >= 1 thread;
    more only time-slices, and a typo like `--workers 1000` would fill the process table)."""
    return 4 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class WorkerSettings:
    """What `nas worker` needs (`nas.workers.run_worker`); everything else comes from the study.

    `nas worker` reads each option's flag, default and help from these fields (`nas.flags.option`).
    `validate` raises ConfigError naming the flag of a bad value.
    """

    storage: str = option(
        flag="--storage",
        help="The study's storage URL (or set NAS_STORAGE, which keeps a password off the command line).",
    )
    study_name: str | None = option(None, "--study", "Study name (needed when the storage holds several).")
    threads: int | None = option(None, "--threads", "torch CPU threads (default: the study's).")
    # set by `nas search --workers`; else derived from host and pid
    worker_index: int | None = option(None, "--worker-index", "")
    # overrides the study's stored target (the latest `nas search` sets it)
    trials: int | None = option(None, "--trials", "Complete trials the study should reach (default: the study's).")
    timeout_s: float | None = option(None, "--timeout", "Stop after this many seconds.")
    # where trained weights are kept (the run folder's, for local workers)
    artifact_dir: str | None = option(None, "--artifact-dir", "Keep trained weights here.")
    train_device: str | None = option(
        None, "--train-device", "Where this worker trains: cpu, cuda or auto (default: the study's, resolved here)."
    )
    # `nas worker --measure-only` (nas.measurer): measure for trainers elsewhere, train nothing
    measure_only: bool = option(
        False,
        "--measure-only",
        "Train nothing: measure the candidates that trainers of a --measure-remote study queue, with this "
        "machine's sensor in the profile's runtime.",
    )
    allow_estimate: bool = option(
        False, "--allow-estimate", "With --measure-only: where the sensor is absent, estimate (labelled 'estimated')."
    )
    claim_grace_s: float | None = option(
        None,
        "--claim-grace",
        "With --measure-only: take over another measurer's claim after this many seconds without its heartbeat (default 60).",
    )

    def validate(self) -> None:
        """Raise ConfigError for the first value out of range, naming its command-line flag, and for
        options of the other kind of worker (training options with --measure-only, and back)."""
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads: expected an integer >= 1, got {self.threads}")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials: expected an integer >= 1, got {self.trials}")
        if self.timeout_s is not None and not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"--timeout: expected a finite number of seconds > 0, got {self.timeout_s}")
        if self.train_device is not None and self.train_device not in TRAIN_DEVICES:
            raise ConfigError(f"--train-device: expected one of {', '.join(TRAIN_DEVICES)}, got {self.train_device!r}")
        if self.claim_grace_s is not None and not self.claim_grace_s > 0:
            raise ConfigError(f"--claim-grace: expected seconds > 0, got {self.claim_grace_s}")
        if self.measure_only:
            for flag, name in (
                ("--trials", "trials"),
                ("--artifact-dir", "artifact_dir"),
                ("--train-device", "train_device"),
                ("--worker-index", "worker_index"),
            ):
                if getattr(self, name) is not None:
                    raise ConfigError(f"{flag} does not apply to --measure-only (a measurer trains nothing)")
        else:
            for flag, value in (
                ("--allow-estimate", self.allow_estimate or None),
                ("--claim-grace", self.claim_grace_s),
            ):
                if value is not None:
                    raise ConfigError(f"{flag} only applies to --measure-only")


TRAIN_DEVICES = ("cpu", "cuda", "auto")  # --train-device values


# The settings that define what a trial's numbers mean: a study resumed with different values
# would mix incomparable trials, so resuming with them changed is refused.
FINGERPRINT = (
    "space",
    "profile",
    "dataset",
    "objectives",
    "epochs",
    "batch_size",
    "lr",
    "split_seed",
    "meter",
    "table",
)


# Where a search writes and under which name: a rerun chooses its own.
NOT_REPRODUCED = ("out", "study_name", "storage")


def search_arguments(stored: Mapping[str, Any]) -> list[str]:
    """The `nas search` arguments that recreate `stored` settings (a run's stored `nas.settings`).

    Every setting with a flag is written out with its stored value, defaults included, so the
    command means the same after a default changes; switches appear when true, unset (None)
    values and settings the run did not store are left out, as are `NOT_REPRODUCED`.
    """
    args: list[str] = []
    for f in fields(SearchSettings):
        flag = f.metadata.get("flag")
        if flag is None or f.name in NOT_REPRODUCED or stored.get(f.name) is None:
            continue
        value = stored[f.name]
        if isinstance(value, bool):
            args += [flag] if value else []
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(map(str, value))]
        else:
            args += [flag, str(value)]
    return args


__all__ = [
    "CONTEXT_SAMPLERS",
    "FINGERPRINT",
    "NOT_REPRODUCED",
    "SAMPLERS",
    "TRAIN_DEVICES",
    "SearchSettings",
    "WorkerSettings",
    "make_sampler",
    "sampler_names",
    "search_arguments",
]
