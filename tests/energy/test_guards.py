"""The protocol's guards (issue 13 part 1), each fault at the seam where it happens: a stuck RAPL
counter (fake sysfs), a stuck NVML counter (fake pynvml), power dropping after the idle baseline,
a net energy that stays negative, the idle baseline's refresh, and the hypervolume's reference."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import optuna
import pytest
import torch
from energy_fakes import POLL_S, TICK_S, FakeGpu, PowerDevice, TickingModel, short_profile
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.config import Protocol
from nas.energy import Workload, create_meter
from nas.energy.guards import implausible
from nas.energy.nvml import NvmlMeter
from nas.energy.protocol import IdleBaseline, Window, summarise
from nas.energy.rapl import RaplMeter
from nas.errors import ImplausibleEnergy, MeterUnavailable, TrialFault
from nas.hypervolume import ReferencePoint, default_reference, summarize
from nas.models import ModelStats
from nas.pareto import TrialRecord

STATS = ModelStats(params=10, macs=8, activation_elems=2, input_elems=4)


def workload(model) -> Workload:
    return Workload(model, torch.zeros(4, 4), STATS, "fp32")


def nvml_meter(gpu: FakeGpu, **protocol) -> NvmlMeter:
    m = NvmlMeter(short_profile(**protocol), clock=gpu.device.clock, sleep=gpu.device.sleep)
    m.idle_poll_s = POLL_S
    return m


# ----------------------------------------------------------------------------- stuck counters
def test_stuck_rapl_counter_is_refused_by_the_probe_and_the_meter(powercap, monkeypatch):
    tree = powercap(packages=1, live=False, start_uj=5_000_000)  # counters that never move
    monkeypatch.setattr(RaplMeter, "probe_watch_s", 0.01)
    probe = RaplMeter.probe(short_profile("cpu-rapl"))
    assert not probe.usable
    assert "did not change during the probe" in probe.reason and "intel-rapl:0/energy_uj" in probe.reason
    with pytest.raises(MeterUnavailable, match="measures with RAPL.*did not change.*--allow-estimate"):
        create_meter(short_profile("cpu-rapl"))
    assert create_meter(short_profile("cpu-rapl"), allow_estimate=True).name == "estimate"

    # a meter opened anyway (the counter froze after the probe): the idle baseline refuses, never 0 J
    dev = PowerDevice()
    meter = RaplMeter(short_profile("cpu-rapl"), clock=dev.clock, sleep=dev.sleep, start_thread=False)
    meter.idle_poll_s = POLL_S
    with pytest.raises(MeterUnavailable) as e:
        meter.measure_inference(workload(TickingModel(dev)))
    meter.close()
    msg = str(e.value)
    assert msg.startswith("measured:rapl:") and str(tree.root / "intel-rapl:0" / "energy_uj") in msg
    assert "during the 0.25 s idle baseline" in msg and "watched 0.25 s" in msg


def test_rapl_counter_that_freezes_after_the_baseline(powercap):
    """The counter moves while idle, then stops: the first window refuses (not 0 J per inference)."""
    tree = powercap(packages=1)
    dev = PowerDevice(idle_w=64.0)
    model = TickingModel(dev, lambda k: 0.125)
    dev.listeners.append(lambda: None if model.calls else tree.set(0, round(dev.energy_j() * 1e6)))
    meter = RaplMeter(short_profile("cpu-rapl"), clock=dev.clock, sleep=dev.sleep, start_thread=False)
    meter.idle_poll_s = POLL_S
    with pytest.raises(MeterUnavailable) as e:
        meter.measure_inference(workload(model))
    meter.close()
    msg = str(e.value)
    assert "did not change during measurement window 1 of 3 (8 batches)" in msg
    assert f"watched {8 * TICK_S:.3g} s" in msg and "energy_uj" in msg


def test_stuck_nvml_counter(fake_nvml, monkeypatch):
    gpu = FakeGpu(device=PowerDevice(idle_w=0.0))  # the counter reads the same mJ forever
    fake_nvml([gpu])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(NvmlMeter, "probe_watch_s", 0.25)
    reason = NvmlMeter.probe(short_profile()).reason
    assert "measured:nvml-counter" in reason and "NVIDIA H100" in reason
    assert "nvmlDeviceGetTotalEnergyConsumption" in reason and "did not change during the probe" in reason
    with pytest.raises(MeterUnavailable, match="idle baseline.*nvmlDeviceGetTotalEnergyConsumption"):
        nvml_meter(gpu).measure_inference(workload(TickingModel(gpu.device, lambda k: 0.0)))


def test_a_moving_nvml_counter_passes_the_probe(fake_nvml, monkeypatch):
    fake_nvml([FakeGpu()])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert NvmlMeter.probe(short_profile()).usable


# ----------------------------------------------------------------------------- implausible energy
def test_power_drop_after_the_baseline_re_baselines_and_re_measures(fake_nvml):
    """Idle 64 W during the baseline, then another process stops and the device idles at 32 W:
    net goes negative, so a fresh baseline is taken and the windows measured again."""
    dev = PowerDevice(idle_w=64.0)
    gpu = FakeGpu(device=dev)
    fake_nvml([gpu])

    def work(k: int) -> float:
        dev.idle_w = dev.run_w = 32.0  # from the first forward pass on
        return 0.01

    meter = nvml_meter(gpu)
    record = meter.measure_inference(workload(TickingModel(dev, work)))
    first = record.protocol["remeasured"]["first_attempt"]
    assert "at or below zero" in record.protocol["remeasured"]["reason"]
    assert first["idle"]["power_w"] == pytest.approx(64.0, abs=0.01) and first["net_energy_per_inference_j"] < 0
    assert record.idle_power_w == pytest.approx(32.0, abs=0.01)
    assert record.protocol["idle"]["number"] == 2 and record.protocol["idle"]["reason"].startswith("re-measured")
    assert record.protocol["idle_measured_for_this_record"] is True
    assert record.idle_measured_at == record.protocol["idle"]["measured_at"]
    # 0.01 J of work per batch of 4: 2.5 mJ per inference (counter in whole mJ: within 1 mJ / 32)
    assert record.net_energy_per_inference_j == pytest.approx(0.0025, abs=2e-3 / 32)
    assert record.energy_per_inference_j > 0


def test_net_that_stays_negative_fails_the_trial_with_its_raw_record(fake_nvml):
    """A device that draws less while running than while idle (64 W idle, 32 W running): the
    re-measurement is negative too, so the trial fails with its own reason."""
    dev = PowerDevice(idle_w=64.0, run_w=32.0)
    gpu = FakeGpu(device=dev)
    fake_nvml([gpu])
    with pytest.raises(ImplausibleEnergy) as e:
        nvml_meter(gpu).measure_inference(workload(TickingModel(dev, lambda k: 0.01)))
    err = e.value
    assert isinstance(err, TrialFault) and err.reason == "implausible_energy"
    assert "after a fresh idle baseline and one re-measurement" in str(err)
    raw = err.attrs["energy_raw"]
    assert raw["net_energy_per_inference_j"] < 0 and raw["method"] == "measured:nvml-counter"
    assert len(raw["windows_j"]) == 3 and raw["protocol"]["idle"]["number"] == 2
    assert raw["protocol"]["remeasured"]["first_attempt"]["net_energy_per_inference_j"] < 0


def test_below_the_stated_floor_is_implausible_too(fake_nvml):
    """Net above zero but under measurement.min_net_fraction x gross cannot be told from drift."""
    dev = PowerDevice(idle_w=64.0)
    gpu = FakeGpu(device=dev)
    fake_nvml([gpu])
    # work 0.04 J per 1/64 s batch = 2.56 W on 64 W: net/gross = 3.8%
    model = TickingModel(dev, lambda k: 0.04)
    with pytest.raises(ImplausibleEnergy, match="plausibility floor 0.05 x gross"):
        nvml_meter(gpu, min_net_fraction=0.05).measure_inference(workload(model))
    record = nvml_meter(gpu, min_net_fraction=0.01).measure_inference(workload(TickingModel(dev, lambda k: 0.04)))
    assert "remeasured" not in record.protocol and record.net_energy_per_inference_j > 0


def test_search_counts_the_fault_and_keeps_the_raw_record():
    """The trial objective stores a TrialFault's attributes on the failed trial."""
    from nas.search.objective import TrialObjective

    obj = TrialObjective.__new__(TrialObjective)
    obj.ctx = SimpleNamespace(host="test-host")

    def run(trial):
        raise ImplausibleEnergy("net stayed negative", {"method": "measured:test", "windows_j": [1.0, 2.0]})

    obj._run = run
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.optimize(obj, n_trials=1, catch=(TrialFault,))
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["fail_reason"] == "implausible_energy"
    assert t.user_attrs["energy_raw"] == {"method": "measured:test", "windows_j": [1.0, 2.0]}


# ----------------------------------------------------------------------------- baseline refresh
def test_idle_baseline_is_refreshed_at_the_profile_interval(fake_nvml):
    dev = PowerDevice(idle_w=64.0)
    gpu = FakeGpu(device=dev)
    fake_nvml([gpu])
    meter = nvml_meter(gpu, idle_refresh_s=10.0)
    model = TickingModel(dev, lambda k: 0.25)
    a = meter.measure_inference(workload(model))
    b = meter.measure_inference(workload(model))  # a second or so later: same baseline
    dev.sleep(10.0)
    dev.idle_w = dev.run_w = 48.0  # the device cooled: the refreshed baseline sees it
    c = meter.measure_inference(workload(model))
    ia, ib, ic = (r.protocol["idle"] for r in (a, b, c))
    assert ia["number"] == ib["number"] == 1 and ia == ib and ia["reason"] == "first measurement"
    assert a.protocol["idle_measured_for_this_record"] and not b.protocol["idle_measured_for_this_record"]
    assert ic["number"] == 2 and ic["reason"].startswith("refresh:") and "idle_refresh_s = 10 s" in ic["reason"]
    assert c.protocol["idle_measured_for_this_record"]
    assert a.idle_power_w == pytest.approx(64.0, abs=0.01) and c.idle_power_w == pytest.approx(48.0, abs=0.01)
    assert c.idle_measured_at == ic["measured_at"] and a.idle_measured_at == ia["measured_at"]


def test_profile_states_the_refresh_interval_and_floor():
    p = short_profile()
    assert p.protocol.idle_refresh_s == 600.0 and p.protocol.min_net_fraction == 0.01


# ----------------------------------------------------------------------------- never negative
IDLE = IdleBaseline(10.0, 10.0, 1.0, 10, 0.1, "measured:idle-polling", "2026-01-01T00:00:00+00:00")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 100), st.floats(0.01, 10)), min_size=1, max_size=5),
    st.floats(0, 100),
    st.booleans(),
    st.floats(0, 0.5),
)
def test_a_plausible_record_always_has_a_positive_objective(windows, idle_w, subtract, floor):
    proto = Protocol(repeats=len(windows), subtract_idle=subtract, min_net_fraction=floor)
    work = Workload(torch.nn.Identity(), torch.zeros(4, 1), STATS, "fp32")
    rec = summarise(
        _sensor(),
        work,
        proto,
        replace(IDLE, power_w=idle_w),
        [Window(e, d) for e, d in windows],
        batches=2,
        target_s=1.0,
        probe_s_per_batch=0.1,
        measurement_s=1.0,
        idle_measured_now=False,
    )
    if implausible(rec, proto) is None:
        assert (
            rec.energy_per_inference_j > 0 and rec.net_energy_per_inference_j > floor * rec.gross_energy_per_inference_j
        )


def _sensor():
    return SimpleNamespace(method="measured:test", api="test", scope="device", device_name="fake", driver_version=None)


def _rec(n: int, acc: float, energy: float) -> TrialRecord:
    return TrialRecord(
        number=n,
        values={"accuracy": acc, "energy": energy},
        accuracy=acc,
        test_accuracy=None,
        energy_per_inference_j=energy,
        energy_method="measured:test",
        latency_s=None,
        params=0,
        macs=0,
        architecture={},
        feasible=True,
    )


def test_hypervolume_reference_is_never_below_zero_energy():
    # energies stored by an unguarded older version: all negative
    records = [_rec(0, 0.5, -2.0), _rec(1, 0.9, -1.0)]
    ref = default_reference(records)
    assert ref.energy_per_inference_j == 0.0
    assert ReferencePoint(0.0, -3.0, "given").energy_per_inference_j == 0.0
    s = summarize(records)
    assert s.hypervolume == 0.0 and s.fraction == 0.0
    # one negative among positive ones counts as 0 J: its box ends at the reference, not beyond
    mixed = [_rec(0, 0.5, 2.0), _rec(1, 1.0, -1.0)]
    s = summarize(mixed, ReferencePoint(0.0, 4.0, "test"))
    assert s.hypervolume == pytest.approx(1.0 * 4.0) and s.fraction == pytest.approx(1.0)


def test_a_window_shorter_than_ten_updates_is_lengthened_not_called_stuck():
    """A window that saw no counter update because it was short (the plan overestimated a batch)
    is returned for re-planning; only a window of 10 update periods without a change is stuck."""
    from nas.energy.protocol import measure_windows

    dev = PowerDevice(idle_w=0.0)  # the counter never moves
    sensor = SimpleNamespace(
        read_j=dev.energy_j,
        change_count=lambda: None,
        method="measured:test",
        device_name="fake",
        where="fake counter",
    )
    model, batch = TickingModel(dev, lambda k: 0.0), torch.zeros(4, 4)
    short = measure_windows(sensor, model, batch, 2, 3, dev.clock, lambda: None, stuck_after_s=10 * 0.1)
    assert [(w.energy_j, w.duration_s) for w in short] == [(0.0, 2 * TICK_S)] * 3
    with pytest.raises(MeterUnavailable, match="did not change during measurement window 1 of 3 .64 batches."):
        measure_windows(sensor, model, batch, 64, 3, dev.clock, lambda: None, stuck_after_s=10 * 0.1)
