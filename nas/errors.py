"""The one error family of energy-nas.

Library code raises these; the CLI turns them into one line on stderr and a non-zero exit
code. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class NasError(Exception):
    """Base class of every error a user can cause and fix."""

    exit_code = 1


class ConfigError(NasError):
    """A search space, hardware profile or setting is malformed or invalid."""

    exit_code = 2


class MeterUnavailable(NasError):
    """An energy sensor cannot be used here (absent, unsupported, no permission, wrong device)."""

    exit_code = 3


class RuntimeUnavailable(NasError):
    """A deployed runtime (or its execution provider) cannot be used here."""

    exit_code = 3


class StorageError(NasError):
    """The Optuna storage cannot be opened or does not hold what we expect."""

    exit_code = 4


class RunError(NasError):
    """A run folder, study or trial is missing or is not what the command needs."""

    exit_code = 5


class ExportError(NasError):
    """A model could not be exported or the exported copy does not match."""

    exit_code = 6


class TrialFault(NasError):
    """A candidate failed inside its trial (NaN loss, out of memory...); the search goes on.

    `reason` is the short tag the search counts failures by; `attrs` are stored on the failed trial
    (e.g. the raw energy record of an implausible measurement), so nothing measured is lost.
    """

    def __init__(self, reason: str, message: str, attrs: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.attrs = dict(attrs or {})


class ImplausibleEnergy(TrialFault):
    """Net energy stayed at or below the plausibility floor after a fresh idle baseline and one
    re-measurement (see nas/energy/protocol.py); the trial fails with reason `implausible_energy`
    and keeps the raw record under the trial attribute `energy_raw`."""

    def __init__(self, message: str, record: Mapping[str, Any]) -> None:
        super().__init__("implausible_energy", message, {"energy_raw": dict(record)})
        self.record = dict(record)
