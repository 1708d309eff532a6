"""The measurement protocol shared by every sensor meter (NVML, RAPL).

A sensor is a cumulative energy reading of one device or package (`Sensor.read_j`). On it:

1. **Idle baseline**, once per meter, under the device lock: read the sensor over
   `protocol.idle_window_s` with the device idle, polling it to see how often it updates. Stored on
   the meter and copied into every record.
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

Sources for the numbers: shared/MEASURING.md (NVML counter updates every 20-100 ms, windows of at
least 1 s and 10 updates, at least 3 repeats, idle measured and stored, never subtracted silently).
"""

from __future__ import annotations

import math
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

import torch

from nas.energy.base import EnergyRecord, Meter, Reading, WindowWork, Workload
from nas.energy.lock import DeviceLock
from nas.hardware import HardwareProfile, Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], None]

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

    @abstractmethod
    def read_j(self) -> float:
        """Energy consumed since the origin, in joules (monotone non-decreasing)."""

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
    update_period_method: str  # "measured:idle-polling" | "nominal"
    measured_at: str  # ISO 8601, UTC

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data."""
        return asdict(self)


@dataclass(frozen=True)
class Window:
    """One measurement window: the energy read in J and its duration in s."""

    energy_j: float
    duration_s: float


def measure_idle(sensor: Sensor, window_s: float, clock: Clock, sleep: Sleep, poll_s: float = IDLE_POLL_S) -> IdleBaseline:
    """Read `sensor` over `window_s` seconds of idle, polling it to see how often it updates."""
    t0 = clock()
    e0 = last = sensor.read_j()
    change_times: list[float] = []
    while clock() - t0 < window_s:
        sleep(poll_s)
        e = sensor.read_j()
        if e != last:
            change_times.append(clock())
            last = e
    e1 = sensor.read_j()
    t1 = clock()
    duration = t1 - t0
    energy = e1 - e0
    if sensor.counts_updates and len(change_times) >= 3:
        period = (change_times[-1] - change_times[0]) / (len(change_times) - 1)
        how = "measured:idle-polling"
    else:
        period = sensor.nominal_update_period_s
        how = "nominal"
    return IdleBaseline(
        power_w=energy / duration if duration > 0 else 0.0,
        energy_j=energy,
        window_s=duration,
        updates=len(change_times) if sensor.counts_updates else -1,
        update_period_s=period,
        update_period_method=how,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
    model: torch.nn.Module, batch: torch.Tensor, target_s: float, min_inferences: int,
    clock: Clock, sync: Callable[[], None],
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
    sensor: Sensor, model: torch.nn.Module, batch: torch.Tensor, batches: int, repeats: int,
    clock: Clock, sync: Callable[[], None],
) -> list[Window]:
    """`repeats` windows of `batches` forward passes, the device synchronised at both edges."""
    out = []
    for _ in range(repeats):
        sync()
        t0 = clock()
        e0 = sensor.read_j()
        run_batches(model, batch, batches)
        sync()
        e1 = sensor.read_j()
        t1 = clock()
        out.append(Window(e1 - e0, t1 - t0))
    return out


def summarise(
    sensor: Sensor, workload: Workload, protocol: Protocol, idle: IdleBaseline, windows: list[Window],
    batches: int, target_s: float, probe_s_per_batch: float, measurement_s: float, idle_measured_now: bool,
) -> EnergyRecord:
    """The EnergyRecord of a finished protocol run (pure: no measuring here)."""
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
            if idle.update_period_s > 0 else None,
            "idle": idle.to_dict(),
            "idle_measured_for_this_record": idle_measured_now,
        },
    )


def run_protocol(
    sensor: Sensor, workload: Workload, protocol: Protocol, idle: IdleBaseline, clock: Clock,
    sync: Callable[[], None], started: float | None = None, idle_measured_now: bool = False,
) -> EnergyRecord:
    """Warm up, plan the windows, measure them, and summarise (steps 2-5 of the module doc)."""
    started = clock() if started is None else started
    model, batch = workload.model, workload.batch
    run_batches(model, batch, protocol.warmup_batches)
    target = target_window_s(protocol, idle)
    batches, per_batch = plan_batches(model, batch, target, protocol.min_inferences, clock, sync)
    replans = 0
    while True:
        windows = measure_windows(sensor, model, batch, batches, protocol.repeats, clock, sync)
        shortest = min(w.duration_s for w in windows)
        if shortest >= target or shortest <= 0 or replans == MAX_REPLANS:
            break
        # the probe overestimated a batch's time (warm caches, a busy machine): lengthen and redo
        batches = math.ceil(batches * target / shortest * 1.1)
        replans += 1
    record = summarise(sensor, workload, protocol, idle, windows, batches, target, per_batch,
                       clock() - started, idle_measured_now)
    return replace(record, protocol={**record.protocol, "replanned": replans})


class SensorMeter(Meter):
    """Base of the meters that read a hardware sensor: the protocol, idle baseline and lock.

    Subclasses implement `open_sensor` (and `probe`). Nothing touches hardware before the first
    measurement; `clock` and `sleep` are injectable so tests can drive a fake device in fake time.
    """

    lock_timeout_s: float | None = None  # wait for another measurer as long as it takes
    idle_poll_s: float = IDLE_POLL_S

    def __init__(self, profile: HardwareProfile, *, clock: Clock | None = None, sleep: Sleep | None = None) -> None:
        super().__init__(profile)
        self.clock: Clock = clock or time.perf_counter
        self.sleep: Sleep = sleep or time.sleep
        self._sensor: Sensor | None = None
        self._idle: IdleBaseline | None = None
        self._lock: DeviceLock | None = None
        self._window: tuple[float, float] | None = None

    # ------------------------------------------------------------------ hooks for backends
    def open_sensor(self) -> Sensor:
        """Open the hardware sensor (MeterUnavailable with the reason when it cannot)."""
        raise NotImplementedError

    def synchronize(self, device: torch.device | None = None) -> None:
        """Wait until work queued on `device` (default: the meter's) has finished."""
        device = device if device is not None else torch.device(self.torch_device)
        # CUDA that was never initialised has no queued work (and may not exist: fake devices)
        if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize(device)

    # ------------------------------------------------------------------ shared machinery
    @property
    def sensor(self) -> Sensor:
        """The open sensor, opened on first use."""
        if self._sensor is None:
            self._sensor = self.open_sensor()
        return self._sensor

    def device_lock(self) -> AbstractContextManager[object]:
        """The lock that serialises measurements on this sensor's device across processes."""
        if self._lock is None:
            self._lock = DeviceLock(self.sensor.lock_key, timeout_s=self.lock_timeout_s)
        return self._lock

    @property
    def idle(self) -> IdleBaseline | None:
        """The stored idle baseline, or None before the first measurement."""
        return self._idle

    def idle_baseline(self) -> IdleBaseline:
        """The idle baseline, measured on first use (device idle, under the device lock)."""
        if self._idle is None:
            with self.device_lock():
                self.synchronize()
                self._idle = measure_idle(
                    self.sensor, self.profile.protocol.idle_window_s, self.clock, self.sleep, self.idle_poll_s
                )
        return self._idle

    def measure_inference(self, workload: Workload) -> EnergyRecord:
        """Measure `workload` with the profile's protocol, holding the device lock; the idle baseline
        is measured on first use. Returns the full EnergyRecord (per inference, in J).
        """
        device = workload.batch.device
        started = self.clock()
        with self.device_lock():
            fresh = self._idle is None
            idle = self.idle_baseline()
            return run_protocol(
                self.sensor, workload, self.profile.protocol, idle, self.clock,
                lambda: self.synchronize(device), started=started, idle_measured_now=fresh,
            )

    def begin_window(self) -> None:
        """Start a window of arbitrary work; the device lock is held until `end_window`."""
        if self._window is not None:
            raise RuntimeError("begin_window called twice without end_window")
        lock = self.device_lock()
        lock.__enter__()
        try:
            self.synchronize()
            self._window = (self.clock(), self.sensor.read_j())
        except BaseException:
            lock.__exit__(None, None, None)
            raise

    def end_window(self, work: WindowWork | None = None) -> Reading:
        """End the window: its gross energy, and the net one when the idle baseline is known."""
        if self._window is None:
            raise RuntimeError("end_window called without begin_window")
        t0, e0 = self._window
        try:
            self.synchronize()
            e1 = self.sensor.read_j()
            t1 = self.clock()
        finally:
            self._window = None
            self.device_lock().__exit__(None, None, None)
        energy, duration = e1 - e0, t1 - t0
        idle_w = self._idle.power_w if self._idle is not None else None
        return Reading(
            energy_j=energy,
            duration_s=duration,
            method=self.sensor.method,
            net_energy_j=energy - idle_w * duration if idle_w is not None else None,
            idle_power_w=idle_w,
        )

    def close(self) -> None:
        """Close the sensor, if open."""
        if self._sensor is not None:
            self._sensor.close()
            self._sensor = None
