"""The meter interface and the records it produces.

A meter has two jobs: the energy per inference of a model (the search objective) and the energy of
an arbitrary window of work (training). Sensor meters read hardware counters at window edges; the
estimate meter computes both from the work done. Every record says which one it is (`method`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from torch import nn

    from nas.hardware import HardwareProfile
    from nas.models import ModelStats

BYTES_PER_ELEM = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Probe:
    """Whether a backend is usable here, and if not, why and what to do."""

    usable: bool
    reason: str = ""


@dataclass(frozen=True)
class Workload:
    """What an inference measurement runs: a ready model, one input batch, and its static counts."""

    model: nn.Module
    batch: torch.Tensor
    stats: ModelStats
    precision: str

    @property
    def batch_size(self) -> int:
        """Inputs per batch (the first dimension of `batch`)."""
        return int(self.batch.shape[0])


@dataclass(frozen=True)
class WindowWork:
    """The work done inside a window, for meters that estimate rather than measure.

    `macs` and `bytes_moved` are totals over the window; sensor meters ignore them.
    """

    macs: float
    bytes_moved: float
    precision: str = "fp32"


@dataclass(frozen=True)
class Reading:
    """Energy of one window, in joules, and how it was obtained."""

    energy_j: float
    duration_s: float
    method: str
    # sensor meters whose idle baseline is known also give the idle-subtracted figure
    net_energy_j: float | None = None
    idle_power_w: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data."""
        return asdict(self)


@dataclass(frozen=True)
class EnergyRecord:
    """Everything about one energy-per-inference figure (see shared/MEASURING.md, section 6).

    `energy_per_inference_j` is the objective value; `objective_uses` says whether it is the gross
    (what the meter said), the net (gross minus idle power x window) or an estimate.
    `latency_s` is the time of one batch of `batch_size` inputs.
    """

    method: str
    api: str
    scope: str
    device_name: str
    driver_version: str | None
    batch_size: int
    precision: str
    energy_per_inference_j: float
    gross_energy_per_inference_j: float
    net_energy_per_inference_j: float | None
    objective_uses: str
    spread_j: float
    repeats: int
    window_s: float | None
    inferences_per_window: int | None
    idle_power_w: float | None
    idle_subtracted: bool
    latency_s: float
    latency_method: str
    windows_j: tuple[float, ...] = ()
    coefficients: Mapping[str, Any] = field(default_factory=dict)
    measurement_s: float = 0.0
    # sensor meters: how the figure was obtained (window plan, per-window durations and net
    # energies, idle baseline details, what ran at which precision); see nas/energy/protocol.py
    protocol: Mapping[str, Any] = field(default_factory=dict)
    # where the figure comes from beyond the sensor: the machine that measured it, and the
    # runtime the model ran in (name, execution_provider, threads, format, version; nas.runtimes)
    host: str | None = None
    runtime: Mapping[str, Any] = field(default_factory=dict)
    # sensor meters: when the idle baseline this record used was taken (ISO 8601, UTC); its power
    # is `idle_power_w`, and `protocol["idle"]` has the rest (number, why it was taken)
    idle_measured_at: str | None = None

    @property
    def measured(self) -> bool:
        """Whether the energy came from a sensor (`measured:...`), not an estimate."""
        return self.method.startswith("measured:")

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready data (tuples and mappings as lists and dicts)."""
        d = asdict(self)
        d["windows_j"] = list(self.windows_j)
        d["coefficients"] = dict(self.coefficients)
        d["protocol"] = dict(self.protocol)
        d["runtime"] = dict(self.runtime)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EnergyRecord:
        """Rebuild a record from `to_dict` output; unknown keys (from a newer version) are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        kw["windows_j"] = tuple(kw.get("windows_j", ()))
        return cls(**kw)


class Meter(ABC):
    """One energy backend. Subclasses live in their own module; only the factory lists them.

    Construction never touches hardware; `probe` says whether the backend can be used here.
    """

    name: ClassVar[str]
    torch_device: ClassVar[str] = "cpu"  # where workloads run for this meter
    # False for meters that compute energy from counts without running the model: the deploy
    # path then does not export it into the profile's runtime (nas.measurer.measure_candidate)
    runs_workload: ClassVar[bool] = True

    def __init__(self, profile: HardwareProfile) -> None:
        self.profile = profile

    @classmethod
    def probe(cls, profile: HardwareProfile) -> Probe:
        """Whether this backend works on this machine for `profile` (cheap; no measurement)."""
        return Probe(True)

    @abstractmethod
    def measure_inference(self, workload: Workload) -> EnergyRecord:
        """Energy per inference of `workload` at its batch size."""

    @abstractmethod
    def begin_window(self) -> None:
        """Start a window of arbitrary work (e.g. training)."""

    @abstractmethod
    def end_window(self, work: WindowWork | None = None) -> Reading:
        """End the window and return its energy. `work` describes it for estimating meters."""

    def device_lock(self) -> AbstractContextManager[object]:
        """Held while measuring, so two processes never measure one device at once."""
        return nullcontext()

    def close(self) -> None:
        """Release the backend (vendor library handles, threads). Idempotent."""
