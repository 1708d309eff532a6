"""The Raspberry Pi 5 meter with a fake `vcgencmd` on PATH, driven to the microjoule in fake time,
and its refusals: vcgencmd missing, /dev/vcio not permitted, a board without the PMIC ADC, a
missing rail, a stuck reading."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch
from board_fakes import PI5_MODEL, POLL_S, TICK_S, Board, BoardModel, FakePi5
from energy_fakes import short_profile

from nas.config import SensorSettings, load_profile
from nas.energy import Workload, create_meter
from nas.energy.pi5 import Pi5Meter, parse_pmic
from nas.errors import MeterUnavailable
from nas.models import ModelStats

STATS = ModelStats(params=10, macs=8, activation_elems=2, input_elems=4)
BATCH = 4
IDLE_W, RUN_W = 1.13, 3.13  # 3V3_SYS 0.33 W + VDD_CORE 0.8 V x 1.0 A idle / 3.5 A running

REAL_OUTPUT = """ 3V7_WL_SW_A current(0)=0.09368929A
   3V3_SYS_A current(1)=0.08783370A
  VDD_CORE_A current(7)=6.22421000A
      HDMI_A current(22)=0.02417580A
 3V7_WL_SW_V volt(8)=3.69977600V
   3V3_SYS_V volt(9)=3.31003300V
  VDD_CORE_V volt(15)=0.86173300V
      HDMI_V volt(23)=5.08664000V
     EXT5V_V volt(24)=5.09066000V
      BATT_V volt(25)=0.00000000V
"""


@pytest.fixture
def pi5(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    Pi5Meter.clear_probe_cache()

    def build(**kw) -> FakePi5:
        fake = FakePi5(tmp_path, monkeypatch, **kw)
        Pi5Meter.clear_probe_cache()
        return fake

    yield build
    Pi5Meter.clear_probe_cache()


def profile(rails: tuple[str, ...] = (), **protocol):
    p = short_profile("raspberry-pi-5", **{"subtract_idle": True, **protocol})
    return replace(p, sensor=SensorSettings(rails=rails, sample_interval_s=0.05))


def test_parse_pairs_rails_by_name_not_channel_number():
    r = parse_pmic(REAL_OUTPUT + "garbage line\n  BAD_V volt(1)=1.0A\n  X_V volt(2)=nanV\n")
    assert r["VDD_CORE"] == {"A": 6.22421, "V": 0.861733}
    assert r["EXT5V"] == {"V": 5.09066} and "BAD" not in r and "X" not in r
    assert sorted(k for k, v in r.items() if len(v) == 2) == [
        "3V3_SYS",
        "3V7_WL_SW",
        "HDMI",
        "VDD_CORE",
    ]


def test_constant_power_times_window_to_the_microjoule(pi5):
    fake = pi5()
    board = Board(IDLE_W, RUN_W, fake.writer())
    meter = Pi5Meter(profile(), clock=board.clock, sleep=board.sleep, start_thread=False)
    meter.idle_poll_s = POLL_S
    board.samplers.append(meter.sensor.sample)
    record = meter.measure_inference(Workload(BoardModel(board), torch.zeros(BATCH, 4), STATS, "fp32"))
    meter.close()
    # default rails: those with both readings (3V3_SYS, VDD_CORE); DDR_VDDQ (current only), EXT5V and
    # BATT (voltage only) never count
    assert record.method == "measured:pi5-pmic" and "3V3_SYS, VDD_CORE" in record.scope
    assert record.device_name == PI5_MODEL and record.inferences_per_window == 32
    assert all(abs(w - RUN_W * 8 * TICK_S) < 1e-6 for w in record.windows_j)  # 0.39125 J, to the uJ
    assert abs(record.idle_power_w - IDLE_W) < 1e-6 / 0.25
    assert abs(record.net_energy_per_inference_j - (RUN_W - IDLE_W) * TICK_S / BATCH) < 1e-6  # 7812.5 uJ
    assert record.energy_per_inference_j == record.net_energy_per_inference_j
    assert "vcgencmd pmic_read_adc" in record.api


def test_named_rail_only(pi5):
    fake = pi5()
    board = Board(IDLE_W, RUN_W, fake.writer())
    meter = Pi5Meter(profile(rails=("VDD_CORE",)), clock=board.clock, sleep=board.sleep, start_thread=False)
    meter.idle_poll_s = POLL_S
    board.samplers.append(meter.sensor.sample)
    record = meter.measure_inference(Workload(BoardModel(board), torch.zeros(BATCH, 4), STATS, "fp32"))
    meter.close()
    core_w = RUN_W - FakePi5.SYS_W  # 3V3_SYS no longer counted
    assert all(abs(w - core_w * 8 * TICK_S) < 1e-6 for w in record.windows_j)
    assert abs(record.idle_power_w - (IDLE_W - FakePi5.SYS_W)) < 1e-6 / 0.25


def test_probe_and_factory_with_a_live_pmic(pi5, monkeypatch):
    fake = pi5()
    steps = itertools.count()
    monkeypatch.setattr(Pi5Meter, "probe_sleep", staticmethod(lambda s: fake.print(1.0 + next(steps) / 1000, 0.0)))
    assert Pi5Meter.probe(load_profile("raspberry-pi-5")).usable
    assert isinstance(create_meter(load_profile("raspberry-pi-5")), Pi5Meter)


# ----------------------------------------------------------------------------- refusals
def test_vcgencmd_not_on_path(pi5, monkeypatch):
    pi5(on_path=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = Pi5Meter.probe(load_profile("raspberry-pi-5")).reason
    assert reason.startswith("Pi 5 PMIC: vcgencmd is not on PATH") and "\n" not in reason
    with pytest.raises(MeterUnavailable, match=r"measures with PI5.*vcgencmd is not on PATH.*--allow-estimate"):
        create_meter(load_profile("raspberry-pi-5"))
    assert create_meter(load_profile("raspberry-pi-5"), allow_estimate=True).name == "estimate"


def test_no_access_to_dev_vcio(pi5, monkeypatch):
    pi5()
    monkeypatch.setenv("FAKE_VCGENCMD_FAIL", "Can't open device file: /dev/vcio (Permission denied)")
    reason = Pi5Meter.probe(load_profile("raspberry-pi-5")).reason
    assert "failed (exit 255: Can't open device file: /dev/vcio (Permission denied))" in reason
    assert "usermod -aG video" in reason


def test_a_board_without_the_pmic_adc(pi5):
    fake = pi5(model="Raspberry Pi 4 Model B Rev 1.4")
    fake.state.write_text('error=2 error_msg="Invalid arguments"\n')
    reason = Pi5Meter.probe(load_profile("raspberry-pi-5")).reason
    assert "printed no rail readings" in reason and "Raspberry Pi 5 only" in reason


def test_another_board_is_refused(pi5, monkeypatch):
    pi5(model="Raspberry Pi 4 Model B Rev 1.4")
    reason = Pi5Meter.probe(load_profile("raspberry-pi-5")).reason
    assert "Raspberry Pi 4 Model B" in reason and "Raspberry Pi 5" in reason


def test_a_missing_rail_lists_the_rails(pi5):
    pi5()
    reason = Pi5Meter.probe(profile(rails=("DDR_VDDQ",))).reason
    assert "DDR_VDDQ have no current and voltage reading" in reason and "3V3_SYS, VDD_CORE" in reason


def test_stuck_reading_is_refused_by_the_probe_and_the_meter(pi5, monkeypatch):
    fake = pi5()  # the state file never changes
    monkeypatch.setattr(Pi5Meter, "probe_watch_s", 0.02)
    reason = Pi5Meter.probe(load_profile("raspberry-pi-5")).reason
    assert "did not change during the probe" in reason and "vcgencmd pmic_read_adc" in reason
    board = Board(IDLE_W, RUN_W, fake.writer(), dither=False)
    meter = Pi5Meter(profile(), clock=board.clock, sleep=board.sleep, start_thread=False)
    meter.idle_poll_s = POLL_S
    board.samplers.append(meter.sensor.sample)
    with pytest.raises(MeterUnavailable) as e:
        meter.measure_inference(Workload(BoardModel(board), torch.zeros(BATCH, 4), STATS, "fp32"))
    meter.close()
    msg = str(e.value)
    assert msg.startswith("measured:pi5-pmic:") and "0.25 s idle baseline" in msg and "watched 0.25 s" in msg
    assert f"{fake.bin / 'vcgencmd'} pmic_read_adc" in msg
