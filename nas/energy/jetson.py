"""NVIDIA Jetson boards through their on-board INA3221 / INA238 power monitors (Linux sysfs).

Jetson modules carry TI power monitors on I2C that measure the voltage and current of a few rails;
NVIDIA's Jetson Linux Developer Guide ("Platform Power and Performance", section on the on-board
power monitors) lists them per module, e.g. Jetson Orin Nano / Orin NX: one INA3221 at I2C bus 1,
address 0x40, channels `VDD_IN` (total module input), `VDD_CPU_GPU_CV` and `VDD_SOC`. The kernel
exposes them in one of these layouts, all read here:

- **hwmon, INA3221** (Jetson Linux 34+ / JetPack 5+, mainline `ina3221` driver): a folder
  `/sys/class/hwmon/hwmonN` whose `name` is `ina3221`, with per channel k = 1..3 `ink_label`
  (rail name), `ink_input` (bus voltage, mV) and `currk_input` (current, mA); `ink_enable` = 0
  marks a disabled channel, labels starting with `NC` an unconnected one (Linux
  Documentation/hwmon/ina3221.rst).
- **hwmon, INA238 family** (one rail per chip, e.g. the input rail of Jetson AGX Thor's carrier
  board; mainline `ina238` / `ina2xx` drivers): `name` `ina238` (or ina237, ina228, ina226,
  ina219...), `in1_input` (bus voltage, mV), `curr1_input` (mA); the rail name from the hwmon
  `label` attribute (device-tree `label`), else `in1_label`, else `<chip>@<hwmonN>`
  (Linux Documentation/hwmon/ina238.rst).
- **iio, INA3221x** (Jetson Linux 32 / JetPack 4, NVIDIA's `ina3221x` driver): a folder
  `/sys/bus/iio/devices/iio:deviceN` whose `name` is `ina3221x`, with per channel k = 0..2
  `rail_name_k`, `in_voltagek_input` (mV) and `in_currentk_input` (mA).

Power of a rail = voltage x current; the meter sums the rails the profile names
(`sensor.rails`, default the module input rail `VDD_IN` / `POM_5V_IN` / `VIN`; never a rail and its
sub-rails, which would count twice). A background thread samples them every
`sensor.sample_interval_s` and integrates with the trapezoid rule (nas/energy/sampling.py); the
shared protocol does the rest (warm-up, windows, repeats, idle baseline, guards). The monitors are
on the module: the carrier board (USB, fan, NVMe) is not included.

The sysfs root is injectable (constructor argument, or NAS_SYSFS_ROOT; nas/energy/boards.py) so
tests run on a fake tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nas.energy.base import Probe
from nas.energy.boards import BoardMeter, board_model, sysfs_root
from nas.energy.guards import Clock, stuck
from nas.energy.protocol import Sensor
from nas.energy.sampling import PowerSample, SampledPowerSensor
from nas.errors import MeterUnavailable
from nas.hardware import HardwareProfile

MODULE_INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")  # what each generation calls the module input
INA3221_CHANNELS = (1, 2, 3)
SINGLE_RAIL_CHIPS = ("ina219", "ina226", "ina228", "ina230", "ina231", "ina237", "ina238")
IIO_CHIPS = ("ina3221x", "ina3221")


def _read_text(path: Path) -> str:
    """One sysfs file's text (the one place files are read, so tests can fake a refusal)."""
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def _read(path: Path) -> str:
    try:
        return _read_text(path).strip().strip("\x00")
    except PermissionError:
        raise MeterUnavailable(
            f"Jetson INA: {path} is not readable by this user (Permission denied); run as root, or allow "
            f"reading: sudo chmod a+r {path}"
        ) from None
    except OSError as e:
        raise MeterUnavailable(f"Jetson INA: cannot read {path} ({e.strerror or e})") from None


def _read_int(path: Path) -> int:
    text = _read(path)
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        raise MeterUnavailable(f"Jetson INA: {path} does not hold an integer (read {text!r})") from None


def _optional(path: Path) -> str | None:
    return _read(path) if path.exists() else None


@dataclass(frozen=True)
class Rail:
    """One monitored rail: its label and the files holding its bus voltage (mV) and current (mA)."""

    label: str
    chip: str  # the driver's name: ina3221, ina238, ina3221x...
    layout: str  # "hwmon" | "iio"
    voltage_file: Path
    current_file: Path

    @property
    def where(self) -> str:
        """The chip and folder, for messages ("ina3221 hwmon1")."""
        return f"{self.chip} {self.voltage_file.parent.name}"


def find_rails(root: Path) -> list[Rail]:
    """Every INA rail the board exposes under `root` (hwmon and iio layouts), or MeterUnavailable."""
    hwmon, iio = root / "class" / "hwmon", root / "bus" / "iio" / "devices"
    if not hwmon.is_dir() and not iio.is_dir():
        raise MeterUnavailable(
            f"Jetson INA: no hwmon or iio sysfs under {root} ({hwmon}, {iio}); not a Linux board, or /sys "
            f"is not mounted (in a container, mount the host's /sys)"
        )
    rails: list[Rail] = []
    for d in sorted(hwmon.iterdir()) if hwmon.is_dir() else ():
        name = _optional(d / "name")
        if name == "ina3221":
            for k in INA3221_CHANNELS:
                v, i = d / f"in{k}_input", d / f"curr{k}_input"
                if not (v.exists() and i.exists()) or _optional(d / f"in{k}_enable") == "0":
                    continue
                label = _optional(d / f"in{k}_label") or f"{d.name}/channel{k}"
                if not label.startswith("NC"):  # "NC": not connected (Jetson Orin device trees)
                    rails.append(Rail(label, name, "hwmon", v, i))
        elif name in SINGLE_RAIL_CHIPS:
            v, i = d / "in1_input", d / "curr1_input"
            if v.exists() and i.exists():
                label = _optional(d / "label") or _optional(d / "in1_label") or f"{name}@{d.name}"
                rails.append(Rail(label, name, "hwmon", v, i))
    for d in sorted(iio.glob("iio:device*")) if iio.is_dir() else ():
        name = _optional(d / "name")
        if name not in IIO_CHIPS:
            continue
        for f in sorted(d.glob("rail_name_*")):
            k = f.name.removeprefix("rail_name_")
            v, i = d / f"in_voltage{k}_input", d / f"in_current{k}_input"
            if v.exists() and i.exists():
                rails.append(Rail(_read(f), name, "iio", v, i))
    if not rails:
        raise MeterUnavailable(
            f"Jetson INA: no INA3221 or INA238 power monitor under {hwmon} or {iio}; this is not a Jetson, "
            f"or a module without on-board monitors (e.g. Jetson Nano 2GB)"
        )
    return rails


def select_rails(rails: list[Rail], wanted: tuple[str, ...]) -> list[Rail]:
    """The rails named in `wanted` (default: the module input rail), each found exactly once."""
    have = ", ".join(f"{r.label} ({r.where})" for r in rails)
    if not wanted:
        for name in MODULE_INPUT_RAILS:
            if any(r.label == name for r in rails):
                wanted = (name,)
                break
        else:
            raise MeterUnavailable(
                f"Jetson INA: no module input rail ({', '.join(MODULE_INPUT_RAILS)}) on this board; it has: "
                f"{have}. Name the rails to sum in the profile (sensor.rails)"
            )
    out = []
    for name in wanted:
        hits = [r for r in rails if r.label == name]
        if len(hits) != 1:
            what = "not found" if not hits else f"found {len(hits)} times"
            raise MeterUnavailable(
                f"Jetson INA: rail {name!r} {what}; this board has: {have}. Set sensor.rails in the profile"
            )
        out.append(hits[0])
    return out


def check_board(profile: HardwareProfile, model: str, root: Path) -> None:
    """A profile that names its board (device.match) must run on that board."""
    if profile.device_match and not re.search(profile.device_match, model):
        raise MeterUnavailable(
            f"Jetson INA: this board is {model!r} ({root}/firmware/devicetree/base/model), but profile "
            f"{profile.name!r} describes a board matching {profile.device_match!r}; use the profile of this "
            f"board (nas profiles list)"
        )


def _power(rails: list[Rail]) -> PowerSample:
    raw = tuple((_read_int(r.voltage_file), _read_int(r.current_file)) for r in rails)
    return sum(mv * ma for mv, ma in raw) / 1e6, raw


class JetsonSensor(SampledPowerSensor):
    """The summed power of the profile's rails, sampled and integrated (`measured:jetson-ina`)."""

    method = "measured:jetson-ina"
    lock_key = "jetson-ina"
    nominal_update_period_s = 0.1

    def __init__(
        self,
        rails: list[Rail],
        device_name: str,
        clock: Clock,
        interval_s: float,
        start_thread: bool = True,
    ) -> None:
        self.rails = rails
        labels = ", ".join(r.label for r in rails)
        self.device_name = device_name
        self.driver_version = ", ".join(sorted({f"{r.chip} ({r.layout})" for r in rails}))
        self.scope = (
            f"rail(s) {labels} of the module's on-board power monitor (the carrier board, USB and fan are not included)"
        )
        self.api = (
            f"sysfs {rails[0].layout}: bus voltage (mV) x current (mA) of {labels}, sampled every "
            f"{interval_s * 1000:g} ms, trapezoid-integrated"
        )
        self.source = ", ".join(f"{r.voltage_file} x {r.current_file}" for r in rails)
        self.start_sampling(clock, interval_s, start_thread)

    def read_power(self) -> PowerSample:
        """Summed power of the rails now (W), and their raw (mV, mA) readings."""
        return _power(self.rails)


class JetsonMeter(BoardMeter):
    """Energy of a Jetson module through its INA3221 / INA238 monitors: `measured:jetson-ina`."""

    name = "jetson"
    torch_device: ClassVar[str] = "cuda"
    _probes: ClassVar[dict[tuple[Any, ...], Probe]] = {}

    @classmethod
    def probe(cls, profile: HardwareProfile) -> Probe:
        """Whether the profile's rails exist, are readable and move here (cached per root and profile)."""
        root = sysfs_root()
        key = (str(root), profile.device_match, profile.sensor.rails)
        if key not in cls._probes:
            cls._probes[key] = cls._probe(profile, root)
        return cls._probes[key]

    @classmethod
    def _probe(cls, profile: HardwareProfile, root: Path) -> Probe:
        try:
            model = board_model(root)
            rails = select_rails(find_rails(root), profile.sensor.rails)
            check_board(profile, model, root)
            moved, reads, watched = cls.watch(lambda: _power(rails)[1])
            if not moved:
                raise stuck(
                    "measured:jetson-ina",
                    model,
                    ", ".join(str(r.current_file) for r in rails),
                    "the probe",
                    watched,
                    reads,
                )
        except MeterUnavailable as e:
            return Probe(False, str(e))
        import torch

        if not torch.cuda.is_available():
            return Probe(
                False,
                f"the Jetson's power monitors are readable, but PyTorch {torch.__version__} has no "
                f"CUDA here; install NVIDIA's PyTorch for Jetson to run models on the GPU",
            )
        return Probe(True)

    @classmethod
    def clear_probe_cache(cls) -> None:
        """Forget cached probe answers (tests, or after changing the board)."""
        cls._probes.clear()

    def open_sensor(self) -> Sensor:
        """The profile's rails on this board (MeterUnavailable naming what is missing)."""
        model = board_model(self.root)
        check_board(self.profile, model, self.root)
        rails = select_rails(find_rails(self.root), self.profile.sensor.rails)
        return JetsonSensor(rails, model, self.clock, self.profile.sensor.sample_interval_s, self.start_thread)


__all__ = ["JetsonMeter", "JetsonSensor", "Rail", "find_rails", "select_rails", "sysfs_root"]
