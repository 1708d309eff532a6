"""The guards of the measurement protocol (shared/MEASURING.md section 8: a sensor that lies is
worse than none), used by nas/energy/protocol.py, nas/energy/sensor_meter.py and the backends' probes.

- **Stuck sensor**: a sensor that does not change during the idle baseline or during a window
  (whose length is at least 10 update periods) raises `MeterUnavailable` naming the sensor, what
  was read and how long it was watched. A frozen counter is never reported as 0 J. Sampled-power
  sensors are judged by their raw readings (a frozen power value integrates to a plausible
  energy, so the energy alone cannot show it). Probes watch the sensor move before saying it is
  usable (`watch_for_change`).
- **Implausible net energy**: when the median net energy per inference is at or below
  `protocol.min_net_fraction` x the median gross (default 1%: idle power drifts by a few percent
  with temperature and other processes, so less than that cannot be told from drift; 0 refuses
  only net <= 0), the idle baseline is taken afresh and the whole measurement repeated once. If
  it is still implausible the trial fails with `ImplausibleEnergy` (reason `implausible_energy`),
  which carries the raw record. So an energy objective from a sensor is always > 0.

Sources: stuck counters seen in VMs (kepler#295, scaphandre#200); power below the baseline
(pyJoules#18); both in shared/MEASURING.md section 8.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol as TypingProtocol

from nas.energy.base import EnergyRecord
from nas.errors import MeterUnavailable
from nas.hardware import Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], None]

PROBE_WATCH_S = 2.0  # a probe watches a sensor this long for a change before calling it stuck
PROBE_POLL_S = 0.005


class Described(TypingProtocol):
    """What the stuck-sensor message names (a nas.energy.protocol.Sensor has these)."""

    method: str
    device_name: str

    @property
    def where(self) -> str:
        """The files or call read."""


def moved(e0: float, e1: float, c0: int | None, c1: int | None) -> bool:
    """Whether a sensor changed between two reads: its raw-change count where it has one, else its energy."""
    return c1 != c0 if c0 is not None else e1 != e0


def stuck_error(sensor: Described, during: str, watched_s: float, reads: int | None = None) -> MeterUnavailable:
    """The MeterUnavailable for a sensor that did not change while it was watched."""
    return stuck(sensor.method, sensor.device_name, sensor.where, during, watched_s, reads)


def stuck(
    method: str, device: str, where: str, during: str, watched_s: float, reads: int | None = None
) -> MeterUnavailable:
    """MeterUnavailable naming the sensor, what was read and how long it was watched."""
    how = f"{watched_s:.3g} s" + (f", {reads} reads" if reads is not None else "")
    return MeterUnavailable(
        f"{method}: the sensor of {device} did not change during {during} (watched {how}; read: {where}); "
        f"a counter or reading that never moves is stuck or frozen (seen in VMs and containers), not 0 J. "
        f"Check that it changes under load"
    )


def watch_for_change(
    read: Callable[[], object],
    watch_s: float = PROBE_WATCH_S,
    poll_s: float = PROBE_POLL_S,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> tuple[bool, int, float]:
    """Poll `read()` until its value changes or `watch_s` seconds pass (for probes).

    Returns (changed, reads, seconds watched). Exceptions from `read` propagate.
    """
    t0 = clock()
    first = read()
    reads = 1
    while True:
        elapsed = clock() - t0
        if elapsed >= watch_s:
            return False, reads, elapsed
        sleep(poll_s)
        value = read()
        reads += 1
        if value != first:
            return True, reads, clock() - t0


def implausible(record: EnergyRecord, protocol: Protocol) -> str | None:
    """Why `record`'s energy cannot be a measurement of the work (None when it can).

    Implausible: gross energy per inference not > 0, or net at or below
    `protocol.min_net_fraction` x gross (the stated floor; see the module doc).
    """
    gross, net = record.gross_energy_per_inference_j, record.net_energy_per_inference_j
    if not gross > 0:
        return f"gross energy per inference is {gross:.6g} J (not > 0)"
    if net is None:
        return None
    floor = protocol.min_net_fraction * gross
    if net <= 0:
        return (
            f"net energy per inference is {net:.6g} J (at or below zero: the device drew no more "
            f"than its idle baseline of {record.idle_power_w:.6g} W)"
        )
    if net <= floor:
        return (
            f"net energy per inference {net:.6g} J is at or below the plausibility floor "
            f"{protocol.min_net_fraction:g} x gross = {floor:.6g} J (measurement.min_net_fraction)"
        )
    return None


__all__ = [
    "PROBE_POLL_S",
    "PROBE_WATCH_S",
    "Clock",
    "Sleep",
    "implausible",
    "moved",
    "stuck",
    "stuck_error",
    "watch_for_change",
]
