"""What a search is asked to do: `SearchSettings` and the sampler registry.

A leaf of the search package (it imports only Optuna and `nas.errors`): the CLI, the HTML report
and the workers read the defaults and valid samplers from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from nas.errors import ConfigError
from nas.registry import lookup

# Optuna's multi-objective samplers by name; each entry builds one from a seed.
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=10),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=10),
    "nsga3": lambda seed: optuna.samplers.NSGAIIISampler(seed=seed, population_size=10),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed, n_startup_trials=10),
}


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler `name` seeded with `seed`; ConfigError listing the valid names if unknown."""
    return lookup(SAMPLERS, "sampler", name)(seed)


@dataclass(frozen=True)
class SearchSettings:
    """Everything a search needs; defaults are the embedded single-machine set-up.

    Units: `timeout_s` and `latency_budget_s` in seconds, `energy_budget_j` in joules per inference,
    `lr` the Adam learning rate. `validate` raises ConfigError naming the flag of a bad value.
    """

    space: str = "mlp"
    profile: str = "cpu-host"
    dataset: str = "digits"
    trials: int = 20
    timeout_s: float | None = None
    epochs: int = 3
    sampler: str = "tpe"
    objectives: tuple[str, ...] = ("accuracy", "energy")
    seed: int = 0
    out: str = "runs/default"
    study_name: str | None = None
    storage: str | None = None
    threads: int = 1
    batch_size: int = 64
    lr: float = 3e-3
    split_seed: int = 0
    allow_estimate: bool = False
    energy_budget_j: float | None = None
    latency_budget_s: float | None = None
    early_stop: bool = False
    early_stop_k: int = 3
    table: str | None = None  # replay evaluations from a `nas bench build` table instead of training
    progress: bool = False
    workers: int = 1  # local worker processes (nas.workers)
    share_device: bool = False  # allow more workers than measured devices

    def validate(self) -> None:
        """Raise ConfigError for the first value out of range, naming its command-line flag."""
        if self.trials < 1:
            raise ConfigError(f"--trials: expected an integer >= 1, got {self.trials}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs: expected an integer >= 1, got {self.epochs}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError(f"--timeout: expected seconds > 0, got {self.timeout_s}")
        if self.threads < 1:
            raise ConfigError(f"--threads: expected an integer >= 1, got {self.threads}")
        if self.workers < 1:
            raise ConfigError(f"--workers: expected an integer >= 1, got {self.workers}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r} (valid: {', '.join(SAMPLERS)})")
        for flag, value in (("--energy-budget", self.energy_budget_j), ("--latency-budget", self.latency_budget_s)):
            if value is not None and not value > 0:
                raise ConfigError(f"{flag}: expected a number > 0, got {value}")
        if self.early_stop_k < 1:
            raise ConfigError(f"--early-stop-k: expected an integer >= 1, got {self.early_stop_k}")


# The settings that define what a trial's numbers mean: a study resumed with different values
# would mix incomparable trials, so resuming with them changed is refused.
FINGERPRINT = ("space", "profile", "dataset", "objectives", "epochs", "batch_size", "lr", "split_seed", "meter", "table")


__all__ = ["FINGERPRINT", "SAMPLERS", "SearchSettings", "make_sampler"]
