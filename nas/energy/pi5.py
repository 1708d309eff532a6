"""Raspberry Pi 5 through its PMIC's ADC (`vcgencmd pmic_read_adc`).

The Pi 5's power-management IC measures the current and voltage of its rails; the firmware
reports them through `vcgencmd pmic_read_adc`, one reading a line, currents and voltages of a rail
on separate lines with different ADC channel numbers (so rails pair by name, not by number):

      VDD_CORE_A current(7)=2.12345678A
      VDD_CORE_V volt(15)=0.80000000V
         EXT5V_V volt(24)=5.09066000V

Power of a rail = its current x its voltage. The meter sums the rails the profile names
(`sensor.rails`), by default every rail that has both a current and a voltage (the SoC core, DRAM
and the 0V8/1V1/1V8/3V3 system rails, HDMI, the Wi-Fi supply); readings without a partner (EXT5V_V,
BATT_V: the 5 V input has no current reading) are not power and never counted. The PMIC rails do
not include the 5 V input's conversion losses or USB peripherals. (HW-NAS-Bench's Pi 5
measurements sampled the VDD_CORE rail alone at 100 Hz; `sensor.rails: [VDD_CORE]` reproduces that.)

A background thread runs the command every `sensor.sample_interval_s` and integrates with the
trapezoid rule (nas/energy/sampling.py); the shared protocol does the rest (warm-up, windows,
repeats, idle baseline, guards). Each sample is a process start, so the sampling itself costs
CPU: it runs during the idle baseline as well, so net energy subtracts it.

`vcgencmd` is found on PATH (tests put a fake one there); it needs read access to /dev/vcio
(members of the `video` group on Raspberry Pi OS).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from typing import Any, ClassVar

from nas.energy.base import Probe
from nas.energy.boards import BoardMeter, board_model, sysfs_root
from nas.energy.guards import Clock, stuck
from nas.energy.protocol import Sensor
from nas.energy.sampling import PowerSample, SampledPowerSensor
from nas.errors import MeterUnavailable
from nas.hardware import HardwareProfile

COMMAND = ("vcgencmd", "pmic_read_adc")
CALL_TIMEOUT_S = 5.0
# "  VDD_CORE_A current(7)=2.12345678A" / "  VDD_CORE_V volt(15)=0.80000000V"
LINE = re.compile(r"^\s*(?P<rail>\S+)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>\S+?)(?P<unit>[AV])\s*$")


def parse_pmic(text: str) -> dict[str, dict[str, float]]:
    """`{rail: {"A": current, "V": voltage}}` from `vcgencmd pmic_read_adc` output.

    Lines that are not readings, and non-finite values (`nan`), are skipped; a reading's suffix
    (`_A` / `_V`) must agree with its unit.
    """
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or m["kind"] != m["unit"]:
            continue
        try:
            value = float(m["value"])
        except ValueError:
            continue
        if math.isfinite(value):
            out.setdefault(m["rail"], {})[m["kind"]] = value
    return out


def paired(readings: dict[str, dict[str, float]]) -> list[str]:
    """The rails with both a current and a voltage, sorted."""
    return sorted(r for r, v in readings.items() if "A" in v and "V" in v)


def find_vcgencmd() -> str:
    """The vcgencmd executable on PATH, or MeterUnavailable saying what is missing."""
    exe = shutil.which(COMMAND[0])
    if exe is None:
        raise MeterUnavailable(
            "Pi 5 PMIC: vcgencmd is not on PATH (Raspberry Pi OS ships it, package raspi-utils); this is not a "
            "Raspberry Pi, or PATH lacks /usr/bin"
        )
    return exe


def run_pmic(exe: str) -> str:
    """The text `vcgencmd pmic_read_adc` prints, or MeterUnavailable with the reason and the fix."""
    call = f"{exe} {COMMAND[1]}"
    try:
        done = subprocess.run([exe, COMMAND[1]], capture_output=True, text=True, timeout=CALL_TIMEOUT_S)
    except PermissionError:
        raise MeterUnavailable(f"Pi 5 PMIC: cannot run {exe} (Permission denied); make it executable") from None
    except FileNotFoundError:
        raise MeterUnavailable(f"Pi 5 PMIC: {exe} disappeared (not found)") from None
    except subprocess.TimeoutExpired:
        raise MeterUnavailable(f"Pi 5 PMIC: `{call}` did not answer within {CALL_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())[:200] or "no output"
        hint = ""
        if re.search(r"vcio|VCHI|ermission|denied", said):
            hint = (
                "; vcgencmd needs /dev/vcio: add the user to the video group (sudo usermod -aG video $USER, "
                "then log in again) or run as root"
            )
        raise MeterUnavailable(f"Pi 5 PMIC: `{call}` failed (exit {done.returncode}: {said}){hint}")
    return done.stdout


def select_rails(readings: dict[str, dict[str, float]], wanted: tuple[str, ...], call: str) -> tuple[str, ...]:
    """The rails to sum: `wanted`, or every paired rail; MeterUnavailable naming what is missing."""
    have = paired(readings)
    if not readings:
        raise MeterUnavailable(
            f"Pi 5 PMIC: `{call}` printed no rail readings; the PMIC ADC exists on the Raspberry Pi 5 only "
            f"(and needs a recent firmware)"
        )
    if not wanted:
        if not have:
            raise MeterUnavailable(f"Pi 5 PMIC: `{call}` printed no rail with both a current and a voltage")
        return tuple(have)
    missing = [r for r in wanted if r not in have]
    if missing:
        raise MeterUnavailable(
            f"Pi 5 PMIC: rail(s) {', '.join(missing)} have no current and voltage reading in `{call}`; it has: "
            f"{', '.join(have) or 'none'}. Set sensor.rails in the profile"
        )
    return tuple(wanted)


class PmicSensor(SampledPowerSensor):
    """The summed power of the profile's PMIC rails, sampled and integrated (`measured:pi5-pmic`)."""

    method = "measured:pi5-pmic"
    lock_key = "pi5-pmic"
    nominal_update_period_s = 0.1

    def __init__(
        self,
        exe: str,
        rails: tuple[str, ...],
        device_name: str,
        clock: Clock,
        interval_s: float,
        start_thread: bool = True,
    ) -> None:
        self.exe, self.rails = exe, rails
        self.device_name = device_name
        self.driver_version = None
        self.scope = (
            f"PMIC rail(s) {', '.join(rails)} (current x voltage; the 5 V input's conversion losses "
            f"and USB peripherals are not included)"
        )
        self.api = (
            f"vcgencmd pmic_read_adc: current (A) x voltage (V) per rail, sampled every "
            f"{interval_s * 1000:g} ms, trapezoid-integrated"
        )
        self.source = f"{exe} {COMMAND[1]}"
        self.start_sampling(clock, interval_s, start_thread)

    def read_power(self) -> PowerSample:
        """Summed power of the rails now (W), and their raw (A, V) readings; runs vcgencmd once."""
        readings = parse_pmic(run_pmic(self.exe))
        missing = [r for r in self.rails if r not in readings or len(readings[r]) < 2]
        if missing:
            raise MeterUnavailable(f"Pi 5 PMIC: `{self.source}` stopped reporting rail(s) {', '.join(missing)}")
        raw = tuple((readings[r]["A"], readings[r]["V"]) for r in self.rails)
        return sum(a * v for a, v in raw), raw


class Pi5Meter(BoardMeter):
    """Energy of a Raspberry Pi 5 through its PMIC's rail readings: `measured:pi5-pmic`."""

    name = "pi5"
    torch_device: ClassVar[str] = "cpu"
    _probes: ClassVar[dict[tuple[Any, ...], Probe]] = {}

    @classmethod
    def probe(cls, profile: HardwareProfile) -> Probe:
        """Whether vcgencmd answers with the profile's rails, and they move (cached per PATH and profile)."""
        import os

        key = (
            os.environ.get("PATH"),
            str(sysfs_root()),
            profile.device_match,
            profile.sensor.rails,
        )
        if key not in cls._probes:
            cls._probes[key] = cls._probe(profile)
        return cls._probes[key]

    @classmethod
    def _probe(cls, profile: HardwareProfile) -> Probe:
        try:
            exe = find_vcgencmd()
            call = f"{exe} {COMMAND[1]}"
            rails = select_rails(parse_pmic(run_pmic(exe)), profile.sensor.rails, call)
            check_board(profile, board_model(sysfs_root()))
            moved, reads, watched = cls.watch(
                lambda: tuple(
                    sorted((r, tuple(sorted(v.items()))) for r, v in parse_pmic(run_pmic(exe)).items() if r in rails)
                )
            )
            if not moved:
                raise stuck(
                    "measured:pi5-pmic",
                    board_model(sysfs_root()),
                    call,
                    "the probe",
                    watched,
                    reads,
                )
        except MeterUnavailable as e:
            return Probe(False, str(e))
        return Probe(True)

    @classmethod
    def clear_probe_cache(cls) -> None:
        """Forget cached probe answers (tests, or after changing PATH)."""
        cls._probes.clear()

    def open_sensor(self) -> Sensor:
        """The PMIC rails of the profile through vcgencmd (MeterUnavailable naming what is missing)."""
        exe = find_vcgencmd()
        model = board_model(self.root)
        check_board(self.profile, model)
        rails = select_rails(parse_pmic(run_pmic(exe)), self.profile.sensor.rails, f"{exe} {COMMAND[1]}")
        return PmicSensor(exe, rails, model, self.clock, self.profile.sensor.sample_interval_s, self.start_thread)


def check_board(profile: HardwareProfile, model: str) -> None:
    """A profile that names its board (device.match) must run on that board."""
    if profile.device_match and not re.search(profile.device_match, model):
        raise MeterUnavailable(
            f"Pi 5 PMIC: this board is {model!r} (device-tree model), but profile {profile.name!r} describes a "
            f"board matching {profile.device_match!r}; use the profile of this board (nas profiles list)"
        )


__all__ = ["Pi5Meter", "PmicSensor", "find_vcgencmd", "paired", "parse_pmic"]
