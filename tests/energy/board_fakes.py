"""Fake edge boards for the Jetson and Raspberry Pi 5 meters: sysfs trees in a temp folder, a fake
`vcgencmd` on PATH, and a board in fake time whose sensor readings follow a known power.

Exactness: after every step of fake time the board writes its readings and takes one sample with
each attached sensor (the background thread's job, done deterministically). The readings carry a
dither that flips sign every step (+d, -d, +d...), so they always change (a live sensor) while the
trapezoid over any two consecutive samples averages to the true power exactly. Window edges read
the sensor at the time of the last step (dt = 0), so a window of steady work integrates to
power x duration up to float rounding (far below 1 uJ)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from torch import nn

TICK_S = 1 / 64  # one forward pass
POLL_S = 1 / 128  # idle polling in these tests


class Board:
    """A board in fake time: `idle_w` while sleeping, `run_w` while a model runs (ticks)."""

    def __init__(self, idle_w: float, run_w: float, write: Callable[[float, int], None], dither: bool = True) -> None:
        self.t, self.idle_w, self.run_w, self.write, self.dither = 0.0, idle_w, run_w, write, dither
        self.power_w, self.sign = idle_w, 1
        self.samplers: list[Callable[[], object]] = []
        self.write(self.power_w, self.sign if dither else 0)

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self._step(s, self.idle_w)

    def tick(self, dt: float) -> None:
        self._step(dt, self.run_w)

    def _step(self, dt: float, power_w: float) -> None:
        self.t += dt
        self.power_w = power_w
        if self.dither:
            self.sign = -self.sign
        self.write(power_w, self.sign if self.dither else 0)
        for sample in self.samplers:
            sample()


class BoardModel(nn.Module):
    """Each forward pass runs the board for one TICK_S."""

    def __init__(self, board: Board) -> None:
        super().__init__()
        self.board, self.calls = board, 0
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        self.board.tick(TICK_S)
        self.calls += 1
        return self.lin(x)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # atomic, as a sysfs read is
    tmp.write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ Jetson sysfs
ORIN_NANO = "NVIDIA Jetson Orin Nano Developer Kit"


class FakeJetsonTree:
    """A Jetson's sysfs in a temp folder, in one of three layouts:

    - `hwmon-ina3221`: Jetson Orin Nano on Jetson Linux 36 (mainline ina3221 hwmon driver):
      hwmon1 named ina3221 with channels VDD_IN, VDD_CPU_GPU_CV, VDD_SOC and the sum channel in7;
    - `iio-ina3221x`: Jetson Nano on Jetson Linux 32 (NVIDIA's iio driver): iio:device0 named
      ina3221x with rails POM_5V_IN, POM_5V_GPU, POM_5V_CPU (mV, mA and mW files);
    - `hwmon-ina238`: an INA238 input monitor (hwmon2 named ina238, device label VIN, one channel),
      next to an INA3221 with a not-connected channel (label NC...).

    Every tree also has an unrelated hwmon (the CPU's thermal sensor) that must be ignored.
    """

    def __init__(self, root: Path, layout: str, model: str = ORIN_NANO) -> None:
        self.root, self.layout = root, layout
        self.files: dict[str, tuple[Path, Path]] = {}  # rail -> (voltage mV, current mA)
        base = root / "firmware" / "devicetree" / "base"
        base.mkdir(parents=True)
        (base / "model").write_text(model + "\x00")
        hw = root / "class" / "hwmon"
        hw.mkdir(parents=True)
        thermal = hw / "hwmon0"
        thermal.mkdir()
        (thermal / "name").write_text("cpu_thermal\n")
        (thermal / "temp1_input").write_text("41000\n")
        if layout == "hwmon-ina3221":
            self._ina3221(hw / "hwmon1", ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"])
        elif layout == "iio-ina3221x":
            d = root / "bus" / "iio" / "devices" / "iio:device0"
            d.mkdir(parents=True)
            (d / "name").write_text("ina3221x\n")
            for k, rail in enumerate(["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]):
                (d / f"rail_name_{k}").write_text(rail + "\n")
                (d / f"in_power{k}_input").write_text("0\n")
                self._files(rail, d / f"in_voltage{k}_input", d / f"in_current{k}_input")
        elif layout == "hwmon-ina238":
            d = hw / "hwmon2"
            d.mkdir()
            (d / "name").write_text("ina238\n")
            (d / "label").write_text("VIN\n")
            (d / "in0_input").write_text("3\n")  # shunt voltage, mV: not a rail
            (d / "power1_input").write_text("0\n")
            self._files("VIN", d / "in1_input", d / "curr1_input")
            self._ina3221(hw / "hwmon3", ["VDD_GPU", "VDD_CPU_SOC_MSS", "NC_3"])
        else:
            raise ValueError(layout)

    def _ina3221(self, d: Path, labels: list[str]) -> None:
        d.mkdir()
        (d / "name").write_text("ina3221\n")
        (d / "update_interval").write_text("7\n")
        (d / "in7_label").write_text("sum of shunt voltages\n")
        (d / "in7_input").write_text("120\n")
        for k, label in enumerate(labels, start=1):
            (d / f"in{k}_label").write_text(label + "\n")
            (d / f"in{k}_enable").write_text("1\n")
            (d / f"in{k + 3}_input").write_text("40\n")  # shunt voltage, uV
            self._files(label, d / f"in{k}_input", d / f"curr{k}_input")

    def _files(self, rail: str, v: Path, i: Path) -> None:
        self.files[rail] = (v, i)
        v.write_text("5000\n")
        i.write_text("100\n")

    def set(self, rail: str, mv: int, ma: int) -> None:
        v, i = self.files[rail]
        _write(v, f"{mv}\n")
        _write(i, f"{ma}\n")

    def writer(self, rail: str, mv: int = 5000, others_ma: int = 700) -> Callable[[float, int], None]:
        """Writes `rail` at `mv` with the board's power (whole mA, +-1 mA dither), and moves every
        other rail too (they must never be counted)."""

        def write(power_w: float, sign: int) -> None:
            ma = round(power_w * 1e6 / mv)
            assert abs(ma * mv / 1e6 - power_w) < 1e-12, "choose a power that is whole mA at this voltage"
            self.set(rail, mv, ma + sign)
            for other in self.files:
                if other != rail:
                    self.set(other, 1000, others_ma + 3 * sign)

        return write


# ------------------------------------------------------------------------------ fake vcgencmd
PI5_MODEL = "Raspberry Pi 5 Model B Rev 1.0"
VCGENCMD = """#!/bin/sh
if [ "$1" != "pmic_read_adc" ]; then echo 'error=1 error_msg="Command not registered"'; exit 1; fi
if [ -n "$FAKE_VCGENCMD_FAIL" ]; then echo "$FAKE_VCGENCMD_FAIL" >&2; exit 255; fi
cat "$FAKE_PMIC_STATE"
"""


class FakePi5:
    """A fake `vcgencmd` on PATH printing `pmic_read_adc` lines from a state file, and a sysfs root
    naming the board. Rails (as on a real Pi 5, currents and voltages on separate lines with their
    own ADC channel numbers): VDD_CORE (0.8 V, current follows the board's power), 3V3_SYS (0.1 A at
    3.3 V, constant), DDR_VDDQ (current only here: never counted), EXT5V_V and BATT_V=nan (voltage
    only: never counted)."""

    CORE_V = 0.8
    SYS_W = 0.1 * 3.3

    def __init__(self, tmp: Path, monkeypatch, model: str = PI5_MODEL, on_path: bool = True) -> None:
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.state = tmp / "pmic.txt"
        self.root = tmp / "sys"
        base = self.root / "firmware" / "devicetree" / "base"
        base.mkdir(parents=True)
        (base / "model").write_text(model + "\x00")
        exe = self.bin / "vcgencmd"
        exe.write_text(VCGENCMD)
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("FAKE_PMIC_STATE", str(self.state))
        monkeypatch.setenv("NAS_SYSFS_ROOT", str(self.root))
        if on_path:
            monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")
        self.print(1.0, 0.0)

    def print(self, core_a: float, dither_a: float) -> None:
        text = (
            f"  DDR_VDDQ_A current(4)=0.06666720A\n"
            f"  VDD_CORE_A current(7)={core_a + dither_a:.8f}A\n"
            f"   3V3_SYS_A current(1)=0.10000000A\n"
            f"   3V3_SYS_V volt(9)=3.30000000V\n"
            f"  VDD_CORE_V volt(15)={self.CORE_V:.8f}V\n"
            f"     EXT5V_V volt(24)=5.09066000V\n"
            f"      BATT_V volt(25)=nanV\n"
        )
        _write(self.state, text)

    def writer(self, dither_a: float = 0.00125) -> Callable[[float, int], None]:
        """The board's total power as VDD_CORE current (plus the constant 3V3_SYS), dithered."""

        def write(power_w: float, sign: int) -> None:
            self.print((power_w - self.SYS_W) / self.CORE_V, sign * dither_a)

        return write
