"""The Jetson meter on fake sysfs trees (three board layouts), driven to the microjoule in fake
time, and its refusals: no monitor, a missing rail, a permission error, a stuck reading."""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from board_fakes import ORIN_NANO, POLL_S, TICK_S, Board, BoardModel, FakeJetsonTree
from energy_fakes import short_profile

import nas.energy.jetson as jetson
from nas.config import SensorSettings, load_profile
from nas.energy import Workload, create_meter
from nas.energy.jetson import JetsonMeter, find_rails, select_rails
from nas.energy.sampling import PowerIntegrator
from nas.errors import MeterUnavailable
from nas.models import ModelStats

STATS = ModelStats(params=10, macs=8, activation_elems=2, input_elems=4)
BATCH = 4
IDLE_W, RUN_W = 5.0, 7.5  # whole mA at 5 V: 1000 mA and 1500 mA (+-1 mA dither = +-5 mW)


@pytest.fixture
def jetson_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # NVIDIA's PyTorch for Jetson
    JetsonMeter.clear_probe_cache()

    def build(layout: str, **kw) -> FakeJetsonTree:
        tree = FakeJetsonTree(tmp_path / "sys", layout, **kw)
        monkeypatch.setenv("NAS_SYSFS_ROOT", str(tree.root))
        JetsonMeter.clear_probe_cache()
        return tree

    yield build
    JetsonMeter.clear_probe_cache()


def profile(rails: tuple[str, ...] = ("VDD_IN",), match: str | None = "Orin Nano", **protocol):
    p = short_profile("jetson-orin-nano", **{"subtract_idle": True, **protocol})
    return replace(p, device_match=match, sensor=SensorSettings(rails=rails, sample_interval_s=0.01))


def measure(tree: FakeJetsonTree, rail: str, p) -> tuple[object, Board]:
    board = Board(IDLE_W, RUN_W, tree.writer(rail))
    meter = JetsonMeter(p, clock=board.clock, sleep=board.sleep, start_thread=False)
    meter.idle_poll_s = POLL_S
    board.samplers.append(meter.sensor.sample)  # what the sampling thread does, at each step
    record = meter.measure_inference(Workload(BoardModel(board), torch.zeros(BATCH, 4), STATS, "fp16"))
    meter.close()
    return record, board


@pytest.mark.parametrize(
    ("layout", "rail", "chip"),
    [
        ("hwmon-ina3221", "VDD_IN", "ina3221 (hwmon)"),
        ("iio-ina3221x", "POM_5V_IN", "ina3221x (iio)"),
        ("hwmon-ina238", "VIN", "ina238 (hwmon)"),
    ],
)
def test_constant_power_times_window_to_the_microjoule(jetson_tree, layout, rail, chip):
    tree = jetson_tree(layout)
    record, board = measure(tree, rail, profile(rails=(rail,)))
    # min window 0.125 s = 8 batches of 1/64 s; 7.5 W while running, 5 W idle; 32 inferences a window
    assert record.method == "measured:jetson-ina" and record.driver_version == chip
    assert record.protocol["batches_per_window"] == 8 and record.inferences_per_window == 32
    assert all(abs(w - RUN_W * 8 * TICK_S) < 1e-6 for w in record.windows_j)  # 0.9375 J, to the uJ
    assert abs(record.idle_power_w - IDLE_W) < 1e-6 / 0.25  # 1.25 J over the 0.25 s baseline, to the uJ
    assert abs(record.gross_energy_per_inference_j - RUN_W * TICK_S / BATCH) < 1e-6
    assert abs(record.net_energy_per_inference_j - (RUN_W - IDLE_W) * TICK_S / BATCH) < 1e-6  # 9765.625 uJ
    assert record.energy_per_inference_j == record.net_energy_per_inference_j and record.objective_uses == "net"
    assert record.device_name == ORIN_NANO and rail in record.scope and "carrier board" in record.scope
    assert record.latency_s == TICK_S


def test_other_rails_are_never_summed_but_can_be_named(jetson_tree):
    tree = jetson_tree("hwmon-ina3221")
    rails = find_rails(tree.root)
    assert [r.label for r in rails] == [
        "VDD_IN",
        "VDD_CPU_GPU_CV",
        "VDD_SOC",
    ]  # the sum channel in7 is no rail
    assert [r.label for r in select_rails(rails, ())] == ["VDD_IN"]  # default: the module input rail
    # two rails named: their powers add (the writer moves the others at 1 V x 700 mA +- 3 mA)
    board = Board(IDLE_W, RUN_W, tree.writer("VDD_IN"))
    meter = JetsonMeter(
        profile(rails=("VDD_IN", "VDD_SOC")),
        clock=board.clock,
        sleep=board.sleep,
        start_thread=False,
    )
    meter.idle_poll_s = POLL_S
    board.samplers.append(meter.sensor.sample)
    rec = meter.measure_inference(Workload(BoardModel(board), torch.zeros(BATCH, 4), STATS, "fp16"))
    meter.close()
    assert all(abs(w - (RUN_W + 0.7) * 8 * TICK_S) < 1e-6 for w in rec.windows_j)


def test_ina238_layout_skips_not_connected_channels(jetson_tree):
    tree = jetson_tree("hwmon-ina238")
    labels = [r.label for r in find_rails(tree.root)]
    assert labels == ["VIN", "VDD_GPU", "VDD_CPU_SOC_MSS"]  # NC_3 is not connected
    assert [r.label for r in select_rails(find_rails(tree.root), ())] == ["VIN"]


def test_probe_and_factory_on_a_live_board(jetson_tree, monkeypatch):
    tree = jetson_tree("hwmon-ina3221")
    steps = itertools.count()  # the probe's polls see a live reading
    monkeypatch.setattr(
        JetsonMeter,
        "probe_sleep",
        staticmethod(lambda s: tree.set("VDD_IN", 5000, 1000 + next(steps))),
    )
    assert JetsonMeter.probe(profile()).usable
    assert isinstance(create_meter(profile()), JetsonMeter)


def test_background_thread_in_real_time_stays_within_the_dither_band(jetson_tree, monkeypatch):
    """The real sampling thread, real time: power flips between 4.995 and 5.005 W; whatever the
    sampling instants, the trapezoid of readings in [P - d, P + d] over the sampled interval T lies
    within d x T of P x T. T runs from the sample that opened the window to the one that closed it
    (both taken by the measuring thread); the window's wall-clock duration brackets T by however
    long the scheduler kept the thread waiting between reading the clock and the sensor, which a
    loaded machine makes as long as it likes, so the energy is compared with T, never with it."""
    tree = jetson_tree("hwmon-ina3221")
    guard = threading.Lock()  # so that a sample and its time are read together, whichever thread samples
    edges: list[tuple[float, float]] = []  # (time, energy) of each sample the measuring thread took
    background: list[float] = []  # times of the sampling thread's samples
    original = PowerIntegrator.sample

    def sample(self: PowerIntegrator) -> float:
        with guard:
            energy = original(self)
            if threading.current_thread() is threading.main_thread():
                edges.append((self._t, energy))
            else:
                background.append(self._t)
            return energy

    monkeypatch.setattr(PowerIntegrator, "sample", sample)
    stop = threading.Event()

    def flip() -> None:
        sign = 1
        while not stop.wait(0.001):
            sign = -sign
            tree.set("VDD_IN", 5000, 1000 + sign)

    writer = threading.Thread(target=flip, daemon=True)
    writer.start()
    meter = JetsonMeter(profile())  # real clock, real thread (every 10 ms)
    try:
        meter.begin_window()
        deadline = time.monotonic() + 60  # waits for the thread's samples, however slowly they come
        while sum(t > edges[0][0] for t in background) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        reading = meter.end_window()
    finally:
        meter.close()
        stop.set()
        writer.join(5)
    assert len(edges) == 2, edges  # the window's two edges, nothing else sampled in the measuring thread
    (t0, e0), (t1, e1) = edges
    assert sum(t0 < t < t1 for t in background) >= 10, "the sampling thread did not sample inside the window"
    assert reading.energy_j == e1 - e0
    sampled_s = t1 - t0
    d = 5000 * 1 / 1e6
    assert abs(reading.energy_j - 5.0 * sampled_s) <= d * sampled_s + 1e-9
    assert sampled_s <= reading.duration_s  # the window's clock readings bracket its samples
    assert reading.method == "measured:jetson-ina"


# ----------------------------------------------------------------------------- refusals
def test_no_monitor_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_SYSFS_ROOT", str(tmp_path / "absent"))
    JetsonMeter.clear_probe_cache()
    reason = JetsonMeter.probe(load_profile("jetson-orin-nano")).reason
    assert "no hwmon or iio sysfs" in reason and "\n" not in reason
    (tmp_path / "x86" / "class" / "hwmon" / "hwmon0").mkdir(parents=True)
    (tmp_path / "x86" / "class" / "hwmon" / "hwmon0" / "name").write_text("coretemp\n")
    monkeypatch.setenv("NAS_SYSFS_ROOT", str(tmp_path / "x86"))
    JetsonMeter.clear_probe_cache()
    reason = JetsonMeter.probe(load_profile("jetson-orin-nano")).reason
    assert "no INA3221 or INA238 power monitor" in reason and "not a Jetson" in reason
    with pytest.raises(MeterUnavailable, match=r"measures with JETSON.*INA3221.*--allow-estimate"):
        create_meter(load_profile("jetson-orin-nano"))
    assert create_meter(load_profile("jetson-orin-nano"), allow_estimate=True).name == "estimate"
    JetsonMeter.clear_probe_cache()


def test_a_rail_the_board_lacks_lists_what_it_has(jetson_tree):
    jetson_tree("iio-ina3221x")
    reason = JetsonMeter.probe(profile(rails=("VDD_IN",))).reason
    assert "rail 'VDD_IN' not found" in reason and "POM_5V_IN (ina3221x iio:device0)" in reason
    assert "sensor.rails" in reason


def test_another_board_is_refused(jetson_tree):
    jetson_tree("hwmon-ina3221", model="NVIDIA Jetson AGX Orin Developer Kit")
    reason = JetsonMeter.probe(profile()).reason
    assert "NVIDIA Jetson AGX Orin Developer Kit" in reason and "Orin Nano" in reason


def test_permission_error_says_how_to_fix(jetson_tree, monkeypatch):
    # chmod 000 does not stop root, so the refusal is simulated where the meter opens files
    tree = jetson_tree("hwmon-ina3221")
    real = jetson._read_text

    def refuse(path: Path) -> str:
        if path.name == "curr1_input":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(jetson, "_read_text", refuse)
    reason = JetsonMeter.probe(profile()).reason
    assert f"{tree.files['VDD_IN'][1]} is not readable by this user (Permission denied)" in reason
    assert "sudo chmod a+r" in reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files; the simulated test covers it")
def test_permission_error_real_chmod(jetson_tree):
    tree = jetson_tree("hwmon-ina3221")
    tree.files["VDD_IN"][1].chmod(0)
    assert "Permission denied" in JetsonMeter.probe(profile()).reason


def test_stuck_reading_is_refused_by_the_probe_and_the_meter(jetson_tree, monkeypatch):
    tree = jetson_tree("hwmon-ina3221")  # files that never change
    monkeypatch.setattr(JetsonMeter, "probe_watch_s", 0.02)
    reason = JetsonMeter.probe(profile()).reason
    assert "did not change during the probe" in reason and str(tree.files["VDD_IN"][1]) in reason
    # a board whose reading froze after the probe: the idle baseline refuses, never a plausible energy
    board = Board(IDLE_W, RUN_W, tree.writer("VDD_IN"), dither=False)
    meter = JetsonMeter(profile(), clock=board.clock, sleep=board.sleep, start_thread=False)
    meter.idle_poll_s = POLL_S
    board.samplers.append(meter.sensor.sample)
    with pytest.raises(MeterUnavailable) as e:
        meter.measure_inference(Workload(BoardModel(board), torch.zeros(BATCH, 4), STATS, "fp16"))
    meter.close()
    msg = str(e.value)
    assert msg.startswith("measured:jetson-ina:") and "0.25 s idle baseline" in msg and "watched 0.25 s" in msg
    assert str(tree.files["VDD_IN"][0]) in msg and str(tree.files["VDD_IN"][1]) in msg
