"""The shared measurement protocol and the per-device lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch
from energy_fakes import TICK_S, FakeDevice, FakeGpu, TickingModel, short_profile

from nas.config import Protocol
from nas.energy import Workload
from nas.energy.lock import DeviceLock, lock_dir, lock_path
from nas.energy.nvml import NvmlMeter
from nas.energy.protocol import (
    IdleBaseline,
    Sensor,
    Window,
    measure_idle,
    plan_batches,
    run_protocol,
    summarise,
    target_window_s,
)
from nas.errors import MeterUnavailable
from nas.models import ModelStats


class StepSensor(Sensor):
    """A counter that reads the fake device's energy, quantised to `step_j`."""

    method, api, scope, device_name, lock_key = "measured:test", "test", "device", "fake", "fake"

    def __init__(self, dev: FakeDevice, step_j: float = 1.0, counts_updates: bool = True) -> None:
        self.dev, self.step_j, self.counts_updates = dev, step_j, counts_updates

    def read_j(self) -> float:
        return (self.dev.energy_j() // self.step_j) * self.step_j


def idle(power_w: float = 10.0, period_s: float = 0.1) -> IdleBaseline:
    return IdleBaseline(power_w, power_w, 1.0, 10, period_s, "measured:idle-polling", "2026-01-01T00:00:00+00:00")


def test_idle_baseline_counts_sensor_updates():
    dev = FakeDevice(idle_w=64.0)  # 1 J every 1/64 s: with a 1 J step, one update per 1/64 s
    base = measure_idle(StepSensor(dev), 1.0, dev.clock, dev.sleep, poll_s=1 / 1024)
    assert base.power_w == 64.0 and base.energy_j == 64.0 and base.window_s == 1.0
    assert base.update_period_method == "measured:idle-polling"
    assert base.update_period_s == pytest.approx(1 / 64)
    assert base.updates == 64


def test_idle_baseline_uses_nominal_period_when_updates_are_invisible():
    dev = FakeDevice(idle_w=64.0)
    s = StepSensor(dev, counts_updates=False)
    s.nominal_update_period_s = 0.25
    base = measure_idle(s, 0.5, dev.clock, dev.sleep, poll_s=1 / 64)
    assert base.update_period_method == "nominal" and base.update_period_s == 0.25 and base.updates == -1
    assert target_window_s(Protocol(min_window_s=1.0), base) == 2.5  # 10 updates beat the 1 s minimum


def test_plan_batches_meets_both_the_time_and_the_inference_minimum():
    dev = FakeDevice()
    model, batch = TickingModel(dev), torch.zeros(4, 4)
    n, per_batch = plan_batches(model, batch, 0.5, 16, dev.clock, lambda: None)
    assert per_batch == TICK_S and n == 32  # 0.5 s / (1/64 s)
    n, _ = plan_batches(model, batch, 0.01, 400, dev.clock, lambda: None)
    assert n == 100  # 400 inferences / 4 per batch beats the 0.01 s window


def test_windows_shorter_than_planned_are_lengthened_and_redone():
    dev = FakeDevice()
    # the probe batch (the 3rd call, after 2 warm-up ones) is slow; later batches take half as long
    model = TickingModel(dev)
    model.forward_dt = lambda k: 2 * TICK_S if k == 2 else TICK_S
    original = model.forward

    def forward(x):
        model.dt = model.forward_dt(model.calls)
        return original(x)

    model.forward = forward
    stats = ModelStats(params=1, macs=1, activation_elems=1, input_elems=4)
    proto = Protocol(warmup_batches=2, min_window_s=0.125, min_inferences=1, repeats=3)
    rec = run_protocol(
        StepSensor(dev, step_j=1e-6),
        Workload(model, torch.zeros(4, 4), stats, "fp32"),
        proto,
        idle(period_s=0.001),
        dev.clock,
        lambda: None,
    )
    # planned 0.125 s / (2/64 s) = 4 batches = 1/16 s: too short, so 4 x 2 x 1.1 -> 9 batches
    assert rec.protocol["replanned"] == 1 and rec.protocol["batches_per_window"] == 9
    assert rec.window_s == 9 * TICK_S >= 0.125


def test_summary_median_spread_gross_and_net():
    stats = ModelStats(params=1, macs=1, activation_elems=1, input_elems=1)
    work = Workload(torch.nn.Identity(), torch.zeros(10, 1), stats, "fp32")
    windows = [Window(30.0, 1.0), Window(36.0, 1.5), Window(33.0, 1.25)]  # J, s
    proto = Protocol(repeats=3, subtract_idle=True)
    rec = summarise(
        StepSensor(FakeDevice()),
        work,
        proto,
        idle(power_w=10.0),
        windows,
        batches=5,
        target_s=1.0,
        probe_s_per_batch=0.2,
        measurement_s=4.0,
        idle_measured_now=False,
    )
    # 50 inferences per window; gross 0.60 / 0.72 / 0.66; net (30-10)/50=0.40, (36-15)/50=0.42, (33-12.5)/50=0.41
    assert rec.gross_energy_per_inference_j == pytest.approx(0.66)
    assert rec.net_energy_per_inference_j == pytest.approx(0.41)
    assert rec.energy_per_inference_j == rec.net_energy_per_inference_j and rec.objective_uses == "net"
    assert rec.spread_j == pytest.approx(0.02)  # of the figure the objective uses
    assert rec.latency_s == pytest.approx(0.25) and rec.window_s == 1.25
    assert rec.protocol["net_per_inference_j"] == pytest.approx([0.40, 0.42, 0.41])
    assert rec.protocol["sensor_updates_per_window"] == pytest.approx(12.5)


# ----------------------------------------------------------------------------- the lock
HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nas.energy.lock import DeviceLock
    with DeviceLock(sys.argv[1], Path(sys.argv[2])):
        print("held", flush=True)
        time.sleep(float(sys.argv[3]))
    """
)


def hold_in_other_process(key: str, directory, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, key, str(directory), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_two_processes_never_hold_one_device(tmp_path):
    proc = hold_in_other_process("nvml-GPU-abc", tmp_path, 30)
    try:
        with pytest.raises(MeterUnavailable, match=rf"being measured by another process \(pid {proc.pid}\)"):
            DeviceLock("nvml-GPU-abc", tmp_path, timeout_s=0.2).acquire()
        with DeviceLock("nvml-GPU-other", tmp_path, timeout_s=0.2):  # another device is free
            pass
    finally:
        proc.kill()
        proc.wait()
    with DeviceLock("nvml-GPU-abc", tmp_path, timeout_s=2.0) as lock:  # the kernel dropped it
        assert lock.held


def test_waiting_for_the_lock_then_getting_it(tmp_path):
    proc = hold_in_other_process("rapl-packages", tmp_path, 0.5)
    t0 = time.monotonic()
    with DeviceLock("rapl-packages", tmp_path):
        waited = time.monotonic() - t0
    proc.wait()
    assert waited >= 0.2


def test_lock_is_reentrant_in_a_process_and_serialises_threads(tmp_path):
    lock = DeviceLock("dev", tmp_path)
    order = []
    with lock:
        with DeviceLock("dev", tmp_path):  # re-entrant: a search holds it around measure_inference
            assert lock.held

        def other() -> None:
            with DeviceLock("dev", tmp_path):
                order.append("thread")

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.1)
        order.append("main")
    t.join(5)
    assert order == ["main", "thread"]
    assert not lock.held


def test_lock_path_and_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path))
    assert lock_dir() == tmp_path
    assert lock_path("nvml-GPU-1/2 x") == tmp_path / "nvml-GPU-1_2_x.lock"
    monkeypatch.delenv("NAS_LOCK_DIR")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert str(lock_dir()) == "/tmp/energy-nas-locks"


def test_training_window_holds_the_lock_against_other_processes(fake_nvml, tmp_path):
    gpu = FakeGpu()
    fake_nvml([gpu])
    meter = NvmlMeter(short_profile(), clock=gpu.device.clock, sleep=gpu.device.sleep)
    key = meter.sensor.lock_key
    meter.begin_window()
    try:
        code = (
            "import sys; from pathlib import Path; from nas.energy.lock import DeviceLock\n"
            "try:\n DeviceLock(sys.argv[1], Path(sys.argv[2]), timeout_s=0.2).acquire(); print('got it')\n"
            "except Exception as e: print(type(e).__name__)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, key, str(tmp_path / "locks")], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert out == "MeterUnavailable"
    finally:
        meter.end_window()
    assert not meter.device_lock().held
