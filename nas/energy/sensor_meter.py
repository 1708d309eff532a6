"""The base of every sensor meter: the shared protocol (nas/energy/protocol.py) run under the
device lock, with its idle baseline (taken on first use, refreshed after `idle_refresh_s`, re-taken
when a measurement is implausible), the re-measurement and the training window. Backends (NVML,
RAPL, Jetson, Pi 5) only open their sensor and say in their probe whether it works here."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import ClassVar

import torch

from nas.energy.base import EnergyRecord, Meter, Reading, WindowWork, Workload
from nas.energy.guards import (
    PROBE_POLL_S,
    PROBE_WATCH_S,
    Clock,
    Sleep,
    implausible,
    moved,
    stuck_error,
    watch_for_change,
)
from nas.energy.lock import DeviceLock
from nas.energy.protocol import (
    IDLE_POLL_S,
    MIN_UPDATES_PER_WINDOW,
    IdleBaseline,
    Sensor,
    measure_idle,
    run_protocol,
)
from nas.errors import ImplausibleEnergy
from nas.hardware import HardwareProfile


class SensorMeter(Meter):
    """Base of the meters that read a hardware sensor: the protocol, idle baseline and lock.

    Subclasses implement `open_sensor` (and `probe`). Nothing touches hardware before the first
    measurement; `clock` and `sleep` are injectable so tests can drive a fake device in fake time.
    """

    lock_timeout_s: float | None = None  # wait for another measurer as long as it takes
    idle_poll_s: float = IDLE_POLL_S
    # how a probe watches the sensor move (class-wide; tests put fake time here)
    probe_watch_s: ClassVar[float] = PROBE_WATCH_S
    probe_clock: ClassVar[Clock] = staticmethod(time.monotonic)
    probe_sleep: ClassVar[Sleep] = staticmethod(time.sleep)

    @classmethod
    def watch(cls, read: Callable[[], object]) -> tuple[bool, int, float]:
        """`watch_for_change` with this meter's probe settings: (changed, reads, seconds)."""
        return watch_for_change(read, cls.probe_watch_s, PROBE_POLL_S, cls.probe_clock, cls.probe_sleep)

    def __init__(self, profile: HardwareProfile, *, clock: Clock | None = None, sleep: Sleep | None = None) -> None:
        super().__init__(profile)
        self.clock: Clock = clock or time.perf_counter
        self.sleep: Sleep = sleep or time.sleep
        self._sensor: Sensor | None = None
        self._idle: IdleBaseline | None = None
        self._lock: DeviceLock | None = None
        self._window: tuple[float, float, int | None] | None = None

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

    def measure_idle_baseline(self, reason: str) -> IdleBaseline:
        """Take a fresh idle baseline now (device idle, under the device lock) and keep it."""
        with self.device_lock():
            self.synchronize()
            number = self._idle.number + 1 if self._idle is not None else 1
            self._idle = measure_idle(
                self.sensor,
                self.profile.protocol.idle_window_s,
                self.clock,
                self.sleep,
                self.idle_poll_s,
                number=number,
                reason=reason,
            )
        return self._idle

    def idle_baseline(self) -> IdleBaseline:
        """The idle baseline: measured on first use, and again once older than
        `protocol.idle_refresh_s` (measured on this meter's clock)."""
        if self._idle is None:
            return self.measure_idle_baseline("first measurement")
        age = self.clock() - self._idle.clock_s
        if age >= self.profile.protocol.idle_refresh_s:
            return self.measure_idle_baseline(
                f"refresh: the previous baseline was {age:.0f} s old (measurement.idle_refresh_s = "
                f"{self.profile.protocol.idle_refresh_s:g} s)"
            )
        return self._idle

    def measure_inference(self, workload: Workload) -> EnergyRecord:
        """Measure `workload` with the profile's protocol and its guards (module doc), holding the
        device lock. Returns the full EnergyRecord (per inference, in J).

        Raises MeterUnavailable for a stuck sensor, and ImplausibleEnergy (a TrialFault) when the
        net energy stays implausible after a fresh baseline and one re-measurement.
        """
        device = workload.batch.device
        proto = self.profile.protocol
        started = self.clock()
        with self.device_lock():
            before = self._idle
            idle = self.idle_baseline()

            def measure(idle: IdleBaseline, fresh: bool) -> EnergyRecord:
                return run_protocol(
                    self.sensor,
                    workload,
                    proto,
                    idle,
                    self.clock,
                    lambda: self.synchronize(device),
                    started=started,
                    idle_measured_now=fresh,
                )

            record = measure(idle, idle is not before)
            why = implausible(record, proto)
            if why is None:
                return record
            first = record
            idle = self.measure_idle_baseline(f"re-measured: {why}")
            record = measure(idle, True)
            record = replace(
                record,
                protocol={
                    **record.protocol,
                    "remeasured": {
                        "reason": why,
                        "first_attempt": {
                            "windows_j": list(first.windows_j),
                            "window_durations_s": first.protocol.get("window_durations_s"),
                            "gross_energy_per_inference_j": first.gross_energy_per_inference_j,
                            "net_energy_per_inference_j": first.net_energy_per_inference_j,
                            "idle": first.protocol.get("idle"),
                        },
                    },
                },
            )
            still = implausible(record, proto)
            if still is not None:
                raise ImplausibleEnergy(
                    f"{self.sensor.method} on {self.sensor.device_name}: {still}, after a fresh idle baseline "
                    f"and one re-measurement (first attempt: {why}); the raw record is kept with the trial",
                    record.to_dict(),
                )
            return record

    def begin_window(self) -> None:
        """Start a window of arbitrary work; the device lock is held until `end_window`."""
        if self._window is not None:
            raise RuntimeError("begin_window called twice without end_window")
        lock = self.device_lock()
        lock.__enter__()
        try:
            self.synchronize()
            self._window = (self.clock(), self.sensor.read_j(), self.sensor.change_count())
        except BaseException:
            lock.__exit__(None, None, None)
            raise

    def end_window(self, work: WindowWork | None = None) -> Reading:
        """End the window: its gross energy, and the net one when the idle baseline is known."""
        if self._window is None:
            raise RuntimeError("end_window called without begin_window")
        t0, e0, c0 = self._window
        try:
            self.synchronize()
            e1 = self.sensor.read_j()
            c1 = self.sensor.change_count()
            t1 = self.clock()
        finally:
            self._window = None
            self.device_lock().__exit__(None, None, None)
        energy, duration = e1 - e0, t1 - t0
        period = self._idle.update_period_s if self._idle is not None else self.sensor.nominal_update_period_s
        # a window shorter than 10 updates may legitimately see none; a longer one must
        if not moved(e0, e1, c0, c1) and duration >= MIN_UPDATES_PER_WINDOW * period:
            raise stuck_error(self.sensor, "a window of work (e.g. training)", duration)
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


__all__ = ["SensorMeter"]
