"""Intel and AMD CPUs through RAPL, read from the Linux powercap sysfs tree.

`/sys/class/powercap/intel-rapl:N/energy_uj` is the cumulative energy of package (socket) N in
microjoules; it wraps to 0 after `max_energy_range_uj`. Only the top-level package zones are used
(`intel-rapl:N` whose `name` starts with "package"), summed over sockets; their sub-zones
(`intel-rapl:N:M`: core, uncore, dram) are parts of the package and are never added, and the
`intel-rapl-mmio:N` zones some laptops show are a second view of the same package. AMD exposes the
same tree (zone name "package-0") since Linux 5.8.

A background thread reads the counters every `poll_s` seconds (well under the shortest wrap time
at the profile's peak power), so a long window that wraps once or several times loses nothing:
each decrease seen between two reads is one wrap.

The sysfs root is injectable (constructor argument, or the environment variable
NAS_POWERCAP_ROOT) so tests can run on a fake tree.
"""

from __future__ import annotations

import os
import platform
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nas.energy.base import Probe
from nas.energy.guards import Clock, Sleep, stuck
from nas.energy.protocol import Sensor
from nas.energy.sensor_meter import SensorMeter
from nas.errors import MeterUnavailable
from nas.hardware import HardwareProfile

DEFAULT_ROOT = Path("/sys/class/powercap")
CPUINFO = Path("/proc/cpuinfo")
PACKAGE_ZONE = re.compile(r"^intel-rapl:(\d+)$")
MAX_POLL_S = 1.0


def powercap_root(root: str | Path | None = None) -> Path:
    """The powercap sysfs root: `root`, else $NAS_POWERCAP_ROOT, else /sys/class/powercap."""
    if root is not None:
        return Path(root)
    env = os.environ.get("NAS_POWERCAP_ROOT")
    return Path(env) if env else DEFAULT_ROOT


def _read_text(path: Path) -> str:
    """One sysfs file's text (the one place files are read, so tests can fake a refusal)."""
    with open(path, encoding="ascii") as f:
        return f.read()


def _read_int(path: Path) -> int:
    try:
        return int(_read_text(path).strip())
    except PermissionError:
        raise MeterUnavailable(
            f"RAPL: {path} is readable by root only (Linux restricts RAPL since CVE-2020-8694); "
            f"run as root, or allow reading: sudo chmod a+r {path.parent.parent}/intel-rapl:*/energy_uj"
        ) from None
    except (OSError, ValueError) as e:
        raise MeterUnavailable(f"RAPL: cannot read {path} ({e})") from None


@dataclass(frozen=True)
class PackageZone:
    """One socket's package domain."""

    path: Path
    name: str
    max_range_uj: int

    @property
    def energy_file(self) -> Path:
        """The zone's `energy_uj` counter file (microjoules)."""
        return self.path / "energy_uj"


def find_packages(root: Path) -> list[PackageZone]:
    """The package zones under `root`, or MeterUnavailable saying why there are none."""
    if not root.is_dir():
        raise MeterUnavailable(
            f"RAPL: no powercap sysfs at {root} (containers and VMs usually have none; on bare metal "
            f"load the intel_rapl_common module; AMD CPUs need Linux 5.8 or newer)"
        )
    zones = []
    for path in sorted(root.iterdir(), key=lambda p: _zone_number(p.name)):
        if not PACKAGE_ZONE.match(path.name):
            continue  # sub-zones intel-rapl:N:M, intel-rapl-mmio:N, the control type folder
        try:
            name = _read_text(path / "name").strip()
        except OSError:
            continue
        if not name.startswith("package"):
            continue
        if not (path / "energy_uj").exists():
            raise MeterUnavailable(f"RAPL: {path} has no energy_uj file")
        zones.append(PackageZone(path, name, _read_int(path / "max_energy_range_uj")))
    if not zones:
        raise MeterUnavailable(
            f"RAPL: no package domains (intel-rapl:N named package-*) under {root}; this CPU or "
            f"kernel does not expose RAPL"
        )
    return zones


def _zone_number(name: str) -> int:
    m = PACKAGE_ZONE.match(name)
    return int(m.group(1)) if m else -1


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU model name from /proc/cpuinfo ("unknown CPU" when it does not say)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


class _Counter:
    """One package's counter with its wraps: total = last - first + wraps x range."""

    def __init__(self, zone: PackageZone) -> None:
        self.zone = zone
        self.first = self.last = _read_int(zone.energy_file)
        self.wraps = 0

    def update(self) -> None:
        raw = _read_int(self.zone.energy_file)
        if raw < self.last:
            self.wraps += 1
        self.last = raw

    @property
    def total_uj(self) -> int:
        return self.last - self.first + self.wraps * self.zone.max_range_uj


class RaplSensor(Sensor):
    """The summed package energy of every socket, wraparound counted by a polling thread."""

    method = "measured:rapl"
    scope = "package (all CPU sockets: every process on the CPUs counts; DRAM not included)"
    lock_key = "rapl-packages"
    nominal_update_period_s = 0.001  # RAPL updates about every millisecond

    def __init__(self, root: Path, device_name: str, poll_s: float = MAX_POLL_S, start_thread: bool = True) -> None:
        self.root = root
        self.zones = find_packages(root)
        self.source = ", ".join(str(z.energy_file) for z in self.zones)
        self.device_name = f"{device_name} ({len(self.zones)} package(s))"
        self.driver_version = f"Linux {platform.release()} powercap"
        self.api = f"powercap sysfs {root}/intel-rapl:N/energy_uj (uJ), {len(self.zones)} package(s) summed"
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._counters = [_Counter(z) for z in self.zones]
        self._error: MeterUnavailable | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start_thread:
            self._thread = threading.Thread(target=self._run, name="nas-rapl-poll", daemon=True)
            self._thread.start()

    def poll(self) -> int:
        """Read every counter now (counting wraps); the total since opening, in microjoules."""
        with self._lock:
            if self._error is not None:
                raise self._error
            for c in self._counters:
                c.update()
            return sum(c.total_uj for c in self._counters)

    def read_uj(self) -> int:
        """The summed package counters in microjoules (wraps unfolded)."""
        return self.poll()

    def read_j(self) -> float:
        """The summed package counters in J."""
        return self.poll() / 1e6

    @property
    def wraps(self) -> int:
        """How many counter wrap-arounds were seen, over all packages."""
        return sum(c.wraps for c in self._counters)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except MeterUnavailable as e:
                self._error = e
                return

    def close(self) -> None:
        """Stop the polling thread (waits up to 2 s)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None


def poll_interval_s(zones: list[PackageZone], peak_power_w: float) -> float:
    """A polling interval that sees every wrap: a quarter of the shortest wrap time at peak power."""
    shortest_wrap_s = min(z.max_range_uj for z in zones) / 1e6 / max(peak_power_w, 1.0)
    return max(0.01, min(MAX_POLL_S, shortest_wrap_s / 4))


class RaplMeter(SensorMeter):
    """Energy of the CPU packages through RAPL: `measured:rapl`."""

    name = "rapl"
    torch_device: ClassVar[str] = "cpu"
    _probes: ClassVar[dict[tuple[Any, ...], Probe]] = {}

    def __init__(
        self,
        profile: HardwareProfile,
        *,
        root: str | Path | None = None,
        cpuinfo: Path = CPUINFO,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        start_thread: bool = True,
    ) -> None:
        super().__init__(profile, clock=clock, sleep=sleep)
        self.root = powercap_root(root)
        self.cpuinfo = cpuinfo
        self.start_thread = start_thread

    @classmethod
    def probe(cls, profile: HardwareProfile) -> Probe:
        """Whether RAPL package counters are readable and move here (cached per root and profile)."""
        root = powercap_root()
        key = (str(root), profile.device_match)
        if key not in cls._probes:
            try:
                check_device(profile, cpu_model())
                zones = find_packages(root)
                moved, reads, watched = cls.watch(lambda: tuple(_read_int(z.energy_file) for z in zones))
                if not moved:
                    raise stuck(
                        "measured:rapl",
                        cpu_model(),
                        ", ".join(str(z.energy_file) for z in zones),
                        "the probe",
                        watched,
                        reads,
                    )
                cls._probes[key] = Probe(True)
            except MeterUnavailable as e:
                cls._probes[key] = Probe(False, str(e))
        return cls._probes[key]

    @classmethod
    def clear_probe_cache(cls) -> None:
        """Forget cached probe results (tests, or after a permission change)."""
        cls._probes.clear()

    def open_sensor(self) -> Sensor:
        """Open the RAPL package zones under the sysfs root, after checking the CPU model against the
        profile. Raises MeterUnavailable when they are absent or unreadable.
        """
        model = cpu_model(self.cpuinfo)
        check_device(self.profile, model)
        zones = find_packages(self.root)
        return RaplSensor(
            self.root, model, poll_interval_s(zones, self.profile.peak_power_w.value), start_thread=self.start_thread
        )


def check_device(profile: HardwareProfile, model: str) -> None:
    """A profile that names its CPU (device.match) must be run on that CPU."""
    if profile.device_match and not re.search(profile.device_match, model):
        raise MeterUnavailable(
            f"RAPL: this CPU is {model!r}, but profile {profile.name!r} describes a CPU matching "
            f"{profile.device_match!r}; use a profile for this CPU (nas profiles list)"
        )


__all__ = ["RaplMeter", "RaplSensor", "find_packages", "poll_interval_s", "powercap_root"]
