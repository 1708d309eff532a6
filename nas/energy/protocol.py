"""The measurement protocol shared by every sensor meter (NVML, RAPL, Jetson INA, Pi 5 PMIC).

A sensor is a cumulative energy reading of one device or package (`Sensor.read_j`): a hardware
counter, or power sampled and integrated (nas/energy/sampling.py). On it:

1. **Idle baseline**, under the device lock: read the sensor over `protocol.idle_window_s` with
   the device idle, polling it to see how often it updates. It is taken before the first
   measurement, again when older than `protocol.idle_refresh_s` (long searches drift), and again
   when a measurement's net energy is implausible (guards). Every record names the baseline it
   used (`idle_measured_at`, and `protocol["idle"]`: power, time, sequence number, why taken).
2. **Warm-up**: `protocol.warmup_batches` untimed forward passes (allocator, kernels, caches).
3. **Window plan**: time a few batches, then choose the number of batches per window so that a
   window lasts at least `max(protocol.min_window_s, 10 x sensor update period)` and holds at least
   `protocol.min_inferences` inferences. Every window runs the same number of batches.
4. **Windows**: `protocol.repeats` times: synchronise the device, read clock and sensor, run the
   batches, synchronise, read sensor and clock. If the shortest window fell short of the target
   (the probe overestimated a batch's time), the batches are scaled up and all windows measured
   again (at most twice; `protocol["replanned"]` says how often). Energy per inference of a window = window energy /
   inferences; gross = what the sensor said, net = gross - idle power x window time.
5. **Result**: the median over windows of gross and of net per inference, the spread (max - min) of
   the figure the objective uses, and the latency of one batch (window time / batches, median).
   `protocol.subtract_idle` says whether the objective uses net or gross; both are recorded.

Guards (stuck sensor, implausible net energy): nas/energy/guards.py. The meter that runs these
steps with its idle baseline, refresh and re-measurement: nas/energy/sensor_meter.py.

Sources for the numbers: shared/MEASURING.md (NVML counter updates every 20-100 ms, windows of at
least 1 s and 10 updates, at least 3 repeats, idle measured and stored, never subtracted silently,
stuck counters seen in VMs: kepler#295, scaphandre#200; power below the baseline: pyJoules#18).
"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

import torch

from nas.energy.base import EnergyRecord, Workload
from nas.energy.guards import Clock, Sleep, moved, stuck_error
from nas.hardware import Protocol

MIN_UPDATES_PER_WINDOW = 10  # MEASURING.md section 2
IDLE_POLL_S = 0.002  # how often the idle window polls the sensor to count its updates
PLAN_PROBE_S = 0.05  # the timing probe that sizes windows runs at least this long (or 1024 batches)
MAX_REPLANS = 2  # windows found shorter than the target are lengthened and measured again, at most this often
LATENCY_METHOD = "measured:wall-clock (window time / batches, device synchronised at both edges)"


class Sensor(ABC):
    """A cumulative energy reading of one device or package, in joules, from an arbitrary origin.

    Subclasses set the descriptive attributes when opened. `counts_updates` is False for sensors
    whose every read changes (integrated power), so their update period cannot be seen by polling
    and `nominal_update_period_s` is used instead.
    """

    method: str  # e.g. "measured:nvml-counter"
    api: str  # the vendor call and its unit
    scope: str  # what the reading covers: "device", "package (all sockets)"
    device_name: str
    driver_version: str | None = None
    lock_key: str  # identity of the measured device, for the inter-process lock
    nominal_update_period_s: float = 0.1
    counts_updates: bool = True
    source: str = ""  # the file(s) or call read, named in errors (defaults to `api`)

    @abstractmethod
    def read_j(self) -> float:
        """Energy consumed since the origin, in joules (monotone non-decreasing)."""

    def peek_j(self) -> float:
        """The energy reading for polling (idle baseline): `read_j()`, unless reading costs work
        (sampled sensors return what their thread integrated so far, so polling adds no samples
        and the idle baseline sees the same sampling load as a window)."""
        return self.read_j()

    def change_count(self) -> int | None:
        """How many times the raw readings have changed since opening, for sensors whose energy
        moves even when the hardware is frozen (sampled power); None where the energy reading
        itself shows every update (cumulative counters)."""
        return None

    @property
    def where(self) -> str:
        """What is read, for messages: the files or the call."""
        return self.source or self.api

    def close(self) -> None:
        """Release handles and threads. Idempotent."""


@dataclass(frozen=True)
class IdleBaseline:
    """The device's idle power, measured once per meter and stored with every record."""

    power_w: float
    energy_j: float
    window_s: float
    updates: int  # distinct sensor values seen while polling (-1: the sensor cannot show them)
    update_period_s: float  # measured from those updates, or the sensor's nominal period
    update_period_method: str  # "measured:idle-polling" | "measured:idle-polling (few updates)" | "nominal"
    measured_at: str  # ISO 8601, UTC
    clock_s: float = 0.0  # the meter's clock when the baseline ended (for its refresh interval)
    number: int = 1  # 1 for the meter's first baseline, 2 for the next...
    reason: str = "first measurement"  # why it was taken

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data."""
        return asdict(self)


@dataclass(frozen=True)
class Window:
    """One measurement window: the energy read in J and its duration in s."""

    energy_j: float
    duration_s: float


def measure_idle(
    sensor: Sensor,
    window_s: float,
    clock: Clock,
    sleep: Sleep,
    poll_s: float = IDLE_POLL_S,
    number: int = 1,
    reason: str = "first measurement",
) -> IdleBaseline:
    """Read `sensor` over `window_s` seconds of idle, polling it to see how often it updates.

    Raises MeterUnavailable when the sensor does not change at all over the window (stuck).
    """
    t0 = clock()
    e0 = e = sensor.read_j()
    c0 = sensor.change_count()
    last: object = c0 if c0 is not None else e0
    change_times: list[float] = []
    reads = 1
    while clock() - t0 < window_s:
        sleep(poll_s)
        e = sensor.peek_j()
        c = sensor.change_count()
        reads += 1
        key = c if c is not None else e
        if key != last:
            change_times.append(clock())
            last = key
    e1 = sensor.read_j()
    c1 = sensor.change_count()
    t1 = clock()
    duration = t1 - t0
    if not moved(e0, e1, c0, c1):
        raise stuck_error(sensor, f"the {window_s:g} s idle baseline", duration, reads + 1)
    energy = e1 - e0
    if not sensor.counts_updates:
        period, how = sensor.nominal_update_period_s, "nominal"
    elif len(change_times) >= 3:
        period = (change_times[-1] - change_times[0]) / (len(change_times) - 1)
        how = "measured:idle-polling"
    else:  # one or two updates in the window: the period is at most about window / updates
        period = duration / max(len(change_times), 1)
        how = "measured:idle-polling (few updates: window / updates)"
    return IdleBaseline(
        power_w=energy / duration if duration > 0 else 0.0,
        energy_j=energy,
        window_s=duration,
        updates=len(change_times) if sensor.counts_updates else -1,
        update_period_s=period,
        update_period_method=how,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        clock_s=t1,
        number=number,
        reason=reason,
    )


def run_batches(model: torch.nn.Module, batch: torch.Tensor, n: int) -> None:
    """`n` forward passes of `batch` (no autograd)."""
    with torch.inference_mode():
        for _ in range(n):
            model(batch)


def target_window_s(protocol: Protocol, idle: IdleBaseline) -> float:
    """How long a window must last: the profile's minimum and 10 sensor updates."""
    return max(protocol.min_window_s, MIN_UPDATES_PER_WINDOW * idle.update_period_s)


def plan_batches(
    model: torch.nn.Module,
    batch: torch.Tensor,
    target_s: float,
    min_inferences: int,
    clock: Clock,
    sync: Callable[[], None],
) -> tuple[int, float]:
    """(batches per window, timed seconds per batch): enough batches to last `target_s` and
    hold `min_inferences` inferences, sized from a short timing probe."""
    n, per_batch = 1, 0.0
    while True:
        sync()
        t0 = clock()
        run_batches(model, batch, n)
        sync()
        elapsed = clock() - t0
        if elapsed >= min(PLAN_PROBE_S, target_s / 10) or n >= 1024:
            per_batch = elapsed / n
            break
        n *= 2
    size = int(batch.shape[0])
    by_time = math.ceil(target_s / per_batch) if per_batch > 0 else 1
    return max(by_time, math.ceil(min_inferences / size), 1), per_batch


def measure_windows(
    sensor: Sensor,
    model: torch.nn.Module,
    batch: torch.Tensor,
    batches: int,
    repeats: int,
    clock: Clock,
    sync: Callable[[], None],
    stuck_after_s: float = 0.0,
) -> list[Window]:
    """`repeats` windows of `batches` forward passes, the device synchronised at both edges.

    Raises MeterUnavailable when the sensor did not change during a window at least
    `stuck_after_s` long (10 sensor update periods: a live sensor always changes in that time). A
    shorter window (the plan overestimated a batch's time) is returned as it is; the caller
    lengthens it, and a window that stays empty is implausible, never a 0 J result.
    """
    out = []
    for i in range(repeats):
        sync()
        t0 = clock()
        e0 = sensor.read_j()
        c0 = sensor.change_count()
        run_batches(model, batch, batches)
        sync()
        e1 = sensor.read_j()
        c1 = sensor.change_count()
        t1 = clock()
        if not moved(e0, e1, c0, c1) and t1 - t0 >= stuck_after_s:
            raise stuck_error(sensor, f"measurement window {i + 1} of {repeats} ({batches} batches)", t1 - t0)
        out.append(Window(e1 - e0, t1 - t0))
    return out


def summarise(
    sensor: Sensor,
    workload: Workload,
    protocol: Protocol,
    idle: IdleBaseline,
    windows: list[Window],
    batches: int,
    target_s: float,
    probe_s_per_batch: float,
    measurement_s: float,
    idle_measured_now: bool,
) -> EnergyRecord:
    """The EnergyRecord of a finished protocol run (pure: no measuring here; no guards)."""
    size = workload.batch_size
    inferences = batches * size
    gross = [w.energy_j / inferences for w in windows]
    net = [(w.energy_j - idle.power_w * w.duration_s) / inferences for w in windows]
    used = net if protocol.subtract_idle else gross
    return EnergyRecord(
        method=sensor.method,
        api=sensor.api,
        scope=sensor.scope,
        device_name=sensor.device_name,
        driver_version=sensor.driver_version,
        batch_size=size,
        precision=workload.precision,
        energy_per_inference_j=statistics.median(used),
        gross_energy_per_inference_j=statistics.median(gross),
        net_energy_per_inference_j=statistics.median(net),
        objective_uses="net" if protocol.subtract_idle else "gross",
        spread_j=max(used) - min(used),
        repeats=len(windows),
        window_s=statistics.median(w.duration_s for w in windows),
        inferences_per_window=inferences,
        idle_power_w=idle.power_w,
        idle_measured_at=idle.measured_at,
        idle_subtracted=protocol.subtract_idle,
        latency_s=statistics.median(w.duration_s / batches for w in windows),
        latency_method=LATENCY_METHOD,
        windows_j=tuple(w.energy_j for w in windows),
        measurement_s=measurement_s,
        protocol={
            "warmup_batches": protocol.warmup_batches,
            "min_window_s": protocol.min_window_s,
            "target_window_s": target_s,
            "min_inferences": protocol.min_inferences,
            "batches_per_window": batches,
            "probe_s_per_batch": probe_s_per_batch,
            "window_durations_s": [w.duration_s for w in windows],
            "gross_per_inference_j": gross,
            "net_per_inference_j": net,
            "sensor_updates_per_window": statistics.median(w.duration_s for w in windows) / idle.update_period_s
            if idle.update_period_s > 0
            else None,
            "idle": idle.to_dict(),
            "idle_measured_for_this_record": idle_measured_now,
        },
    )


def run_protocol(
    sensor: Sensor,
    workload: Workload,
    protocol: Protocol,
    idle: IdleBaseline,
    clock: Clock,
    sync: Callable[[], None],
    started: float | None = None,
    idle_measured_now: bool = False,
) -> EnergyRecord:
    """Warm up, plan the windows, measure them, and summarise (steps 2-5 of the module doc)."""
    started = clock() if started is None else started
    model, batch = workload.model, workload.batch
    run_batches(model, batch, protocol.warmup_batches)
    target = target_window_s(protocol, idle)
    batches, per_batch = plan_batches(model, batch, target, protocol.min_inferences, clock, sync)
    replans = 0
    while True:
        windows = measure_windows(
            sensor,
            model,
            batch,
            batches,
            protocol.repeats,
            clock,
            sync,
            stuck_after_s=MIN_UPDATES_PER_WINDOW * idle.update_period_s,
        )
        shortest = min(w.duration_s for w in windows)
        if shortest >= target or shortest <= 0 or replans == MAX_REPLANS:
            break
        # the probe overestimated a batch's time (warm caches, a busy machine): lengthen and redo
        batches = math.ceil(batches * target / shortest * 1.1)
        replans += 1
    record = summarise(
        sensor, workload, protocol, idle, windows, batches, target, per_batch, clock() - started, idle_measured_now
    )
    return replace(record, protocol={**record.protocol, "replanned": replans})


__all__ = [
    "IDLE_POLL_S",
    "MIN_UPDATES_PER_WINDOW",
    "Clock",
    "IdleBaseline",
    "Sensor",
    "Sleep",
    "Window",
    "measure_idle",
    "measure_windows",
    "plan_batches",
    "run_batches",
    "run_protocol",
    "summarise",
    "target_window_s",
]
