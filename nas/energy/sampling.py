"""Energy from sampled power: a background thread reads a power sensor and integrates it.

Used by the meters whose hardware gives power, not a cumulative energy counter: NVML before Volta
(`nvmlDeviceGetPowerUsage`), the Jetson INA3221/INA238 monitors (voltage x current per rail) and
the Raspberry Pi 5 PMIC (`vcgencmd pmic_read_adc`). The trapezoid rule is exact for power that is
linear between two samples; every `energy_j()` call takes a fresh sample, so a window edge is
exact in time and only the interior depends on the sampling period.

Each sample also carries the sensor's raw readings (the integers or strings it returned). The
integrator counts how often they changed: a sensor whose raw readings never change is stuck, and
the protocol refuses it (nas/energy/protocol.py), even though integrating a frozen power value
would give a plausible-looking energy.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Callable, Hashable

from nas.energy.guards import Clock
from nas.energy.protocol import Sensor

POWER_SAMPLE_S = 0.01  # default background sampling interval, seconds

PowerSample = tuple[float, Hashable]  # (power in W, the raw readings it came from)


class PowerIntegrator:
    """Trapezoid integration of `read()` (power in W, raw readings) sampled every `interval_s`.

    `start=False` runs no thread: samples are taken only by `sample()` (tests drive it in fake
    time). Errors in the thread are raised by the next `sample()` in the caller's thread.
    """

    def __init__(
        self,
        read: Callable[[], PowerSample],
        clock: Clock,
        interval_s: float = POWER_SAMPLE_S,
        start: bool = True,
        name: str = "nas-power-sampler",
    ) -> None:
        self._read, self._clock, self.interval_s = read, clock, interval_s
        self._lock = threading.Lock()
        p, raw = read()
        self._t, self._p, self._raw = clock(), p, raw
        self._energy = 0.0
        self.samples = 1
        self.changes = 0  # samples whose raw readings differed from the previous sample's
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def sample(self) -> float:
        """Take one sample now and return the energy integrated since construction (J)."""
        with self._lock:
            if self._error is not None:
                raise self._error
            p, raw = self._read()
            t = self._clock()
            self._energy += (p + self._p) / 2.0 * (t - self._t)
            if raw != self._raw:
                self.changes += 1
            self._t, self._p, self._raw = t, p, raw
            self.samples += 1
            return self._energy

    energy_j = sample

    def integrated_j(self) -> float:
        """The energy integrated up to the last sample (J), without taking one."""
        with self._lock:
            if self._error is not None:
                raise self._error
            return self._energy

    @property
    def last_power_w(self) -> float:
        """The power of the latest sample (W)."""
        return self._p

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except BaseException as e:  # surfaced by the next sample() in the measuring thread
                self._error = e
                return

    def close(self) -> None:
        """Stop the sampling thread. Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None


class SampledPowerSensor(Sensor):
    """A Sensor whose energy is integrated power, sampled in a background thread.

    Subclasses implement `read_power()` -> (watts, raw readings) and call `start_sampling` at the
    end of their constructor. `change_count()` is the number of samples whose raw readings
    changed, which is what the protocol's stuck-sensor guard watches.
    """

    counts_updates = True  # polling the raw readings shows how often the sensor updates
    _integrator: PowerIntegrator | None = None

    @abstractmethod
    def read_power(self) -> PowerSample:
        """Power now in watts, and the raw readings it was computed from (hashable)."""

    def start_sampling(self, clock: Clock, interval_s: float, start_thread: bool = True) -> None:
        """Take the first sample and start the background thread (none when `start_thread` is False)."""
        self._integrator = PowerIntegrator(
            self.read_power,
            clock,
            interval_s,
            start=start_thread,
            name=f"nas-{self.method.split(':')[-1]}-sampler",
        )

    @property
    def integrator(self) -> PowerIntegrator:
        """The running integrator (RuntimeError once closed)."""
        if self._integrator is None:
            raise RuntimeError("the sensor is closed")
        return self._integrator

    def sample(self) -> float:
        """Take one sample now (what the background thread does); the energy so far in J."""
        return self.integrator.sample()

    def read_j(self) -> float:
        """Take a sample now; the energy integrated since opening (J)."""
        return self.integrator.sample()

    def peek_j(self) -> float:
        """What the thread integrated so far: polling adds no samples (and no sampling load)."""
        return self.integrator.integrated_j()

    def change_count(self) -> int | None:
        """How many samples' raw readings differed from the previous sample's."""
        return self.integrator.changes

    def close(self) -> None:
        """Stop the sampling thread. Idempotent."""
        if self._integrator is not None:
            self._integrator.close()
            self._integrator = None


__all__ = ["POWER_SAMPLE_S", "PowerIntegrator", "PowerSample", "SampledPowerSensor"]
