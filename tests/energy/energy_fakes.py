"""Fake hardware at the library seams (used by conftest.py and the tests): a fake `pynvml` module, a fake powercap sysfs tree, and a
fake device whose energy follows simple physics in fake time, so every expected value in the tests
is computed from that physics, never copied from the meters' output."""

from __future__ import annotations

import math
import os
import types
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from nas.config import PROFILES_DIR, Protocol, load_profile

TICK_S = 1 / 64  # fake time per batch: a binary fraction, so sums of times are exact floats
POLL_S = 1 / 512  # idle polling interval in tests (also exact)


# ------------------------------------------------------------------------------ fake time / device
class FakeDevice:
    """Energy = work done + idle power x fake time. `sleep` advances time; `tick` does work."""

    def __init__(self, idle_w: float = 64.0) -> None:
        self.t = 0.0
        self.idle_w = idle_w
        self.work_j = 0.0
        self.listeners: list = []

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s
        self._changed()

    def tick(self, dt: float, work_j: float) -> None:
        self.t += dt
        self.work_j += work_j
        self._changed()

    def energy_j(self) -> float:
        return self.work_j + self.idle_w * self.t

    def _changed(self) -> None:
        for f in self.listeners:
            f()


class TickingModel(nn.Module):
    """A model whose k-th forward call does `energy_of(k)` joules of work in TICK_S of fake time."""

    def __init__(self, device: FakeDevice, energy_of=lambda k: 0.25, dt: float = TICK_S) -> None:
        super().__init__()
        self.device, self.energy_of, self.dt = device, energy_of, dt
        self.calls = 0
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.device.tick(self.dt, self.energy_of(self.calls))
        self.calls += 1
        return self.lin(x)


def short_profile(name: str = "nvidia-h100", **protocol) -> object:
    """A shipped profile with a short protocol for fake-time tests."""
    base = dict(
        warmup_batches=2, min_window_s=0.125, min_inferences=16, repeats=3, idle_window_s=0.25, subtract_idle=False
    )
    base.update(protocol)
    return replace(load_profile(PROFILES_DIR / f"{name}.yaml"), protocol=Protocol(**base))


# ------------------------------------------------------------------------------ fake pynvml
@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-11111111-2222-3333-4444-555555555555"
    arch: int = 9  # NVML_DEVICE_ARCH_HOPPER
    counter: bool = True  # nvmlDeviceGetTotalEnergyConsumption supported
    power: bool = True  # nvmlDeviceGetPowerUsage supported
    power_w: object = None  # callable(t) -> W for the power path; default: the device's idle power
    permission: bool = True
    device: FakeDevice = field(default_factory=FakeDevice)


class FakeNvml:
    """Builds a module that quacks like nvidia-ml-py's `pynvml` for the calls the meter makes."""

    ARCH_PASCAL, ARCH_VOLTA, ARCH_AMPERE, ARCH_HOPPER = 4, 5, 7, 9

    def __init__(self, gpus: list[FakeGpu], init_error: str | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.inits = self.shutdowns = 0
        self.module = self._build()

    def _build(self) -> types.ModuleType:
        m = types.ModuleType("pynvml")

        class NVMLError(Exception):
            pass

        for cls in ("LibraryNotFound", "DriverNotLoaded", "NoPermission", "NotSupported", "Unknown"):
            setattr(m, f"NVMLError_{cls}", type(f"NVMLError_{cls}", (NVMLError,), {}))
        m.NVMLError = NVMLError
        m.NVML_DEVICE_ARCH_VOLTA = self.ARCH_VOLTA
        fake = self

        def gpu(handle: int) -> FakeGpu:
            return fake.gpus[handle]

        def nvmlInit() -> None:
            if fake.init_error:
                raise getattr(m, f"NVMLError_{fake.init_error}")()
            fake.inits += 1

        def nvmlShutdown() -> None:
            fake.shutdowns += 1

        def energy(handle: int) -> int:
            g = gpu(handle)
            if not g.permission:
                raise m.NVMLError_NoPermission()
            if not g.counter or g.arch < fake.ARCH_VOLTA:
                raise m.NVMLError_NotSupported()
            return math.floor(g.device.energy_j() * 1000 + 1e-9)  # mJ, as the driver counts

        def power(handle: int) -> int:
            g = gpu(handle)
            if not g.power:
                raise m.NVMLError_NotSupported()
            watts = g.power_w(g.device.t) if g.power_w else g.device.idle_w
            return round(watts * 1000)  # mW

        m.nvmlInit, m.nvmlShutdown = nvmlInit, nvmlShutdown
        m.nvmlDeviceGetCount = lambda: len(fake.gpus)
        m.nvmlDeviceGetHandleByIndex = lambda i: i
        m.nvmlDeviceGetUUID = lambda h: gpu(h).uuid
        m.nvmlDeviceGetName = lambda h: gpu(h).name.encode()  # older bindings return bytes
        m.nvmlSystemGetDriverVersion = lambda: "550.54.15"
        m.nvmlDeviceGetArchitecture = lambda h: gpu(h).arch
        m.nvmlDeviceGetTotalEnergyConsumption = energy
        m.nvmlDeviceGetPowerUsage = power
        return m


# ------------------------------------------------------------------------------ fake sysfs
class FakePowercap:
    """A powercap tree in a temp folder: package zones, sub-zones, an mmio twin and a psys zone."""

    def __init__(self, root: Path, packages: int = 1, max_range_uj: int = 262_143_328_850, start_uj: int = 0) -> None:
        self.root = root
        self.max_range_uj = max_range_uj
        self.others: list[Path] = []
        (root / "intel-rapl").mkdir(parents=True)  # the control-type folder: no energy_uj
        (root / "intel-rapl" / "enabled").write_text("1\n")
        for n in range(packages):
            self._zone(f"intel-rapl:{n}", f"package-{n}", start_uj)
            self._zone(f"intel-rapl:{n}:0", "core", 5_000_000)  # part of package n: never added
            self._zone(f"intel-rapl:{n}:1", "dram", 7_000_000)
        self._zone("intel-rapl-mmio:0", "package-0", 9_000_000)  # a second view of package 0
        self._zone(f"intel-rapl:{packages}", "psys", 11_000_000)  # platform, not a package

    def _zone(self, folder: str, name: str, energy_uj: int) -> None:
        d = self.root / folder
        d.mkdir()
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy_uj}\n")
        (d / "max_energy_range_uj").write_text(f"{self.max_range_uj}\n")
        if not (folder.count(":") == 1 and folder.startswith("intel-rapl:") and name.startswith("package")):
            self.others.append(d)

    def set(self, package: int, energy_uj: int) -> None:
        # atomic, as a sysfs read is: the meter's polling thread may read at any moment
        path = self.root / f"intel-rapl:{package}" / "energy_uj"
        tmp = path.with_name(".energy_uj.tmp")
        tmp.write_text(f"{energy_uj % self.max_range_uj}\n")
        os.replace(tmp, path)

    def bump(self, energy_uj: int) -> None:
        """Add `energy_uj` to every package counter (a live package between two reads)."""
        n = 0
        while (self.root / f"intel-rapl:{n}" / "name").exists():
            path = self.root / f"intel-rapl:{n}" / "energy_uj"
            if (self.root / f"intel-rapl:{n}" / "name").read_text().startswith("package"):
                self.set(n, int(path.read_text()) + energy_uj)
            n += 1

    def set_others(self, value: int) -> None:
        """Change every zone that must never be counted (sub-zones, mmio twin, psys)."""
        for d in self.others:
            (d / "energy_uj").write_text(f"{value}\n")


class CpuTimeCounter:
    """Drives a FakePowercap in real time like a CPU package: `idle_w` always, plus `busy_w` per
    CPU-second this process burns (time.process_time). Inference windows burn CPU and idle polling
    sleeps, so the net energy is positive, as on a real package. The counter is brought up to date
    whenever the `rapl` meter reads it (its one file-reading seam, nas.energy.rapl._read_text), so
    each reading is exact at the moment it is taken, however loaded the machine is (a thread that
    rewrote it every few ms could stall for longer than a window). A context manager."""

    def __init__(self, tree: FakePowercap, monkeypatch, idle_w: float = 2.0, busy_w: float = 20.0) -> None:
        self.tree, self.monkeypatch, self.idle_w, self.busy_w = tree, monkeypatch, idle_w, busy_w

    def update(self) -> None:
        """Set package 0 to the energy since entering: idle power x wall time + busy power x CPU time."""
        import time

        uj = round((self.idle_w * (time.monotonic() - self.t0) + self.busy_w * (time.process_time() - self.c0)) * 1e6)
        self.tree.set(0, uj)

    def __enter__(self) -> CpuTimeCounter:
        import time

        from nas.energy import rapl

        self.t0, self.c0 = time.monotonic(), time.process_time()
        self._read, watched = rapl._read_text, self.tree.root / "intel-rapl:0" / "energy_uj"

        def read_text(path: Path) -> str:
            if Path(path) == watched:
                self.update()
            return self._read(path)

        self.monkeypatch.setattr(rapl, "_read_text", read_text)
        return self

    def __exit__(self, *exc) -> None:
        from nas.energy import rapl

        self.monkeypatch.setattr(rapl, "_read_text", self._read)


class PowerDevice(FakeDevice):
    """A fake device whose energy integrates power over fake time: `idle_w` while sleeping (idle
    polling) and `run_w` while a model ticks, plus the ticks' work. Changing either power applies
    from then on (unlike FakeDevice, whose idle energy is idle_w x t for all time)."""

    def __init__(self, idle_w: float = 64.0, run_w: float | None = None) -> None:
        super().__init__(idle_w)
        self.run_w = idle_w if run_w is None else run_w
        self.acc_j = 0.0

    def sleep(self, s: float) -> None:
        self.acc_j += self.idle_w * s
        super().sleep(s)

    def tick(self, dt: float, work_j: float) -> None:
        self.acc_j += self.run_w * dt
        super().tick(dt, work_j)

    def energy_j(self) -> float:
        return self.acc_j + self.work_j
