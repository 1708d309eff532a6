"""The NVML meter driven through a fake `pynvml` at the library seam, in fake time.

Fake physics (conftest.FakeDevice): energy = work + 64 W x t; one batch takes 1/64 s. With the test
protocol (min window 0.125 s, 3 repeats, 2 warm-up batches) a window is 8 batches of 4 inputs.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
import torch
from energy_fakes import POLL_S, TICK_S, FakeDevice, FakeGpu, FakeNvml, TickingModel, short_profile

from nas.config import load_profile
from nas.energy import Workload, create_meter
from nas.energy.estimate import EstimateMeter
from nas.energy.nvml import NvmlMeter, PowerIntegrator, visible_devices
from nas.errors import MeterUnavailable
from nas.models import ModelStats

STATS = ModelStats(params=10, macs=8, activation_elems=2, input_elems=4)
BATCH = 4


def workload(model) -> Workload:
    return Workload(model, torch.zeros(BATCH, 4), STATS, "bf16")


def meter_for(gpu: FakeGpu, profile=None, **kw) -> NvmlMeter:
    m = NvmlMeter(profile or short_profile(**kw), clock=gpu.device.clock, sleep=gpu.device.sleep)
    m.idle_poll_s = POLL_S
    return m


def expected_windows(energy_of, warmup: int, probe: int, batches: int, repeats: int, idle_w: float):
    """(gross J, duration s) of each window, from the fake physics: calls are numbered from 0."""
    out, k = [], warmup + probe
    for _ in range(repeats):
        work = sum(energy_of(i) for i in range(k, k + batches))
        out.append((work + idle_w * batches * TICK_S, batches * TICK_S))
        k += batches
    return out


def uj(x: float) -> int:
    return round(x * 1e6)


# ----------------------------------------------------------------------------- counter path
def test_counter_path_energy_per_inference_to_the_microjoule(fake_nvml):
    gpu = FakeGpu()
    fake = fake_nvml([gpu])
    meter = meter_for(gpu)
    drift = lambda k: 0.25 + 0.004 * k  # noqa: E731  hot silicon: each batch costs 4 mJ more
    record = meter.measure_inference(workload(TickingModel(gpu.device, drift)))

    windows = expected_windows(drift, warmup=2, probe=1, batches=8, repeats=3, idle_w=64.0)
    inferences = 8 * BATCH
    gross = [e / inferences for e, _ in windows]
    net = [(e - 64.0 * d) / inferences for e, d in windows]
    assert record.method == "measured:nvml-counter"
    assert record.device_name == "NVIDIA H100 80GB HBM3" and record.driver_version == "550.54.15"
    assert [uj(w) for w in record.windows_j] == [uj(e) for e, _ in windows]
    assert uj(record.gross_energy_per_inference_j) == uj(statistics.median(gross))
    assert uj(record.net_energy_per_inference_j) == uj(statistics.median(net))
    assert record.objective_uses == "gross" and not record.idle_subtracted
    assert record.energy_per_inference_j == record.gross_energy_per_inference_j
    assert uj(record.spread_j) == uj(max(gross) - min(gross))
    assert record.repeats == 3 and record.inferences_per_window == inferences
    assert record.window_s == 8 * TICK_S and record.latency_s == TICK_S
    assert record.idle_power_w == 64.0
    idle = record.protocol["idle"]
    assert idle["update_period_method"] == "measured:idle-polling" and idle["update_period_s"] == POLL_S
    assert record.protocol["idle_measured_for_this_record"] is True
    meter.close()
    assert fake.inits == fake.shutdowns  # every nvmlInit is matched


def test_net_objective_and_idle_measured_once(fake_nvml):
    gpu = FakeGpu()
    fake_nvml([gpu])
    meter = meter_for(gpu, subtract_idle=True)
    first = meter.measure_inference(workload(TickingModel(gpu.device)))
    second = meter.measure_inference(workload(TickingModel(gpu.device)))
    # constant 0.25 J per batch: net = 8 x 0.25 J / 32 inferences, exactly
    assert uj(first.energy_per_inference_j) == uj(0.0625) == uj(first.net_energy_per_inference_j)
    assert first.objective_uses == "net" and first.idle_subtracted
    assert uj(first.gross_energy_per_inference_j) == uj((2.0 + 64 * 0.125) / 32)
    assert first.protocol["idle_measured_for_this_record"] is True
    assert second.protocol["idle_measured_for_this_record"] is False
    assert second.protocol["idle"] == first.protocol["idle"]


def test_window_is_at_least_ten_counter_updates(fake_nvml):
    gpu = FakeGpu()
    fake_nvml([gpu])
    meter = meter_for(gpu, min_window_s=1 / 64, min_inferences=1)
    meter.idle_poll_s = 1 / 32  # the counter now changes only every 1/32 s: 10 updates = 0.3125 s
    record = meter.measure_inference(workload(TickingModel(gpu.device)))
    assert record.protocol["target_window_s"] == 10 / 32
    assert record.window_s >= 10 / 32 and record.protocol["batches_per_window"] == 20


def test_training_window_gross_and_net(fake_nvml):
    gpu = FakeGpu()
    fake_nvml([gpu])
    meter = meter_for(gpu)
    meter.idle_baseline()
    meter.begin_window()
    gpu.device.tick(0.5, 12.0)  # half a second of training doing 12 J of work
    reading = meter.end_window()
    assert reading.method == "measured:nvml-counter"
    assert uj(reading.energy_j) == uj(12.0 + 64 * 0.5) and reading.duration_s == 0.5
    assert uj(reading.net_energy_j) == uj(12.0) and reading.idle_power_w == 64.0
    with pytest.raises(RuntimeError):
        meter.end_window()


# ----------------------------------------------------------------------------- power path
def test_power_sampling_path_before_volta(fake_nvml):
    gpu = FakeGpu(name="Tesla P100-PCIE-16GB", arch=FakeNvml.ARCH_PASCAL)
    fake_nvml([gpu])
    model = TickingModel(gpu.device, lambda k: 0.0)  # the work shows in the power reading
    # idle: 64 W drifting up 0.512 W/s; running: 16 W more. Linear between samples, so the trapezoid
    # is exact, and whole mW at every fake time (all multiples of 1/512 s), so NVML's rounding is too
    gpu.power_w = lambda t: 64.0 + 0.512 * t + (16.0 if model.calls else 0.0)
    meter = NvmlMeter(
        replace(short_profile(), device_match="P100"), clock=gpu.device.clock, sleep=gpu.device.sleep, sample_s=1e9
    )  # no background samples: window edges only
    meter.idle_poll_s = POLL_S
    record = meter.measure_inference(workload(model))
    meter.close()
    # integrated power cannot show updates by polling: the nominal 0.1 s period is used, so a
    # window lasts 10 x 0.1 s = 64 batches; idle 0.25 s, then 2 warm-up and 1+2+4 probe batches
    assert record.method == "measured:nvml-power"
    assert "nvmlDeviceGetPowerUsage" in record.api
    assert record.protocol["batches_per_window"] == 64
    starts = [0.25 + 9 * TICK_S + i for i in range(3)]
    assert [uj(w) for w in record.windows_j] == [uj(80.0 + 0.512 * (t + 0.5)) for t in starts]
    idle_w = 64.0 + 0.512 * 0.125
    assert uj(record.idle_power_w) == uj(idle_w)
    assert uj(record.net_energy_per_inference_j) == uj((80.0 + 0.512 * (starts[1] + 0.5) - idle_w) / (64 * BATCH))
    assert record.protocol["idle"]["update_period_method"] == "nominal"
    assert record.protocol["target_window_s"] == 1.0


def test_frozen_power_reading_is_stuck_not_a_measurement(fake_nvml):
    """Integrating a frozen power value gives a plausible energy; the raw reading shows it is stuck."""
    gpu = FakeGpu(name="Tesla P100-PCIE-16GB", arch=FakeNvml.ARCH_PASCAL, power_w=lambda t: 64.0)
    fake_nvml([gpu])
    meter = NvmlMeter(
        replace(short_profile(), device_match="P100"), clock=gpu.device.clock, sleep=gpu.device.sleep, sample_s=1e9
    )
    meter.idle_poll_s = POLL_S
    with pytest.raises(MeterUnavailable) as e:
        meter.measure_inference(workload(TickingModel(gpu.device)))
    meter.close()
    msg = str(e.value)
    assert "measured:nvml-power" in msg and "Tesla P100" in msg and "idle baseline" in msg
    assert "nvmlDeviceGetPowerUsage" in msg and "watched 0.25 s" in msg


def test_counter_not_supported_falls_back_to_power(fake_nvml):
    gpu = FakeGpu(counter=False)
    fake_nvml([gpu])
    meter = meter_for(gpu)
    assert meter.sensor.method == "measured:nvml-power"
    meter.close()


def test_power_integrator_is_exact_for_linear_power():
    dev = FakeDevice()
    integ = PowerIntegrator(lambda: (100.0 + 40.0 * dev.t, dev.t), dev.clock, start=False)
    e0 = integ.energy_j()
    for dt in (0.5, 0.25, 1.25, 0.125):  # uneven samples: trapezoid is exact for linear power
        dev.t += dt
        integ.sample()
    dev.t += 0.875
    e1 = integ.energy_j()
    t1 = 3.0
    assert uj(e1 - e0) == uj(100.0 * t1 + 20.0 * t1 * t1)
    assert integ.changes == 5 and integ.samples == 7


def test_power_integrator_thread_samples_in_background():
    import time

    calls = []

    def power() -> tuple[float, int]:
        calls.append(1)
        return 5.0, 5000

    integ = PowerIntegrator(power, time.perf_counter, interval_s=0.002)
    deadline = time.monotonic() + 2.0
    while len(calls) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    integ.close()
    assert len(calls) >= 5


# ----------------------------------------------------------------------------- failures
def test_not_supported_is_unavailable_with_the_reason(fake_nvml, monkeypatch):
    fake_nvml([FakeGpu(counter=False, power=False)])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    probe = NvmlMeter.probe(short_profile())
    assert not probe.usable
    assert "supports neither the energy counter nor power readings" in probe.reason
    with pytest.raises(MeterUnavailable, match=r"measures with NVML.*Not Supported.*--allow-estimate"):
        create_meter(short_profile())
    assert isinstance(create_meter(short_profile(), allow_estimate=True), EstimateMeter)


@pytest.mark.parametrize(
    ("error", "says"),
    [("LibraryNotFound", "no NVIDIA driver on this machine"), ("DriverNotLoaded", "driver is not loaded")],
)
def test_no_driver(fake_nvml, error, says):
    fake_nvml([FakeGpu()], init_error=error)
    probe = NvmlMeter.probe(short_profile())
    assert not probe.usable and says in probe.reason and "\n" not in probe.reason


def test_no_permission(fake_nvml, monkeypatch):
    fake_nvml([FakeGpu(permission=False)])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    probe = NvmlMeter.probe(short_profile())
    assert not probe.usable and "no permission" in probe.reason


def test_bindings_missing(fake_nvml, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    NvmlMeter.clear_probe_cache()
    assert "pip install nvidia-ml-py" in NvmlMeter.probe(short_profile()).reason


def test_device_name_mismatch_names_both(fake_nvml, monkeypatch):
    fake_nvml([FakeGpu(name="NVIDIA A100-SXM4-80GB")])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(MeterUnavailable) as e:
        create_meter(short_profile("nvidia-h100"))
    assert "NVIDIA A100-SXM4-80GB" in str(e.value) and "H100" in str(e.value) and "nvidia-h100" in str(e.value)


def test_usable_probe_is_cached(fake_nvml, monkeypatch):
    fake = fake_nvml([FakeGpu()])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert NvmlMeter.probe(short_profile()).usable
    assert NvmlMeter.probe(short_profile()).usable
    assert fake.inits == 1 == fake.shutdowns
    assert isinstance(create_meter(short_profile()), NvmlMeter)


def test_torch_without_cuda_is_unavailable(fake_nvml, monkeypatch):
    fake_nvml([FakeGpu()])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "has no CUDA" in NvmlMeter.probe(short_profile()).reason


_TOUCHES = textwrap.dedent("""
    import json, sys, types
    calls = []

    class Trap(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):  # module machinery (inspect, import) probing for dunders
                raise AttributeError(name)
            calls.append("pynvml." + name)
            raise RuntimeError("a trap, not a driver")

    sys.modules["pynvml"] = Trap("pynvml")
    roots = (sys.argv[1], "/sys/class/powercap", "/dev/nvidia")

    def hook(event, args):
        if event in ("open", "os.listdir", "os.scandir") and args and str(args[0]).startswith(roots):
            calls.append(event + " " + str(args[0]))

    sys.addaudithook(hook)
    import nas.energy, nas.energy.estimate, nas.energy.nvml, nas.energy.rapl
    from nas.config import load_profile
    at_import = list(calls)
    for meter, profile in ((nas.energy.rapl.RaplMeter, "cpu-rapl"), (nas.energy.nvml.NvmlMeter, "nvidia-l4")):
        try:
            meter.probe(load_profile(profile))
        except Exception:
            pass  # the trap raises; what counts is that probing reached the hardware
    print(json.dumps({"import": at_import, "probe": calls[len(at_import):]}))
""")


def test_import_never_touches_hardware(powercap):
    """Importing the meters calls no NVML function and reads no sensor file; probing does both."""
    tree = powercap()
    proc = subprocess.run(
        [sys.executable, "-c", _TOUCHES, str(tree.root)], capture_output=True, text=True, timeout=300, check=True
    )
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["import"] == []
    assert any(c.startswith("pynvml.") for c in seen["probe"]), seen["probe"]  # the control: the trap works
    assert any(str(tree.root) in c for c in seen["probe"]), seen["probe"]


def test_an_unused_meter_never_initialises_nvml(fake_nvml):
    fake = fake_nvml()
    NvmlMeter(load_profile("nvidia-h100")).close()  # constructing and closing an unused meter
    assert fake.inits == fake.shutdowns == 0


# ----------------------------------------------------------------------------- CUDA_VISIBLE_DEVICES
def four_gpus() -> list[FakeGpu]:
    return [FakeGpu(uuid=f"GPU-{c * 8}-0000-0000-0000-000000000000") for c in "abcd"]


@pytest.mark.parametrize(
    ("visible", "index", "nvml_index"),
    [(None, 1, 1), ("2,0", 0, 2), ("2,0", 1, 0), ("GPU-cccc", 0, 2), ("3,GPU-bbbbbbbb", 1, 1)],
)
def test_cuda_index_maps_to_nvml_index(fake_nvml, monkeypatch, visible, index, nvml_index):
    fake_nvml(four_gpus())
    if visible is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    profile = replace(short_profile(), device_index=index)
    meter = NvmlMeter(profile)
    assert meter.sensor.info.nvml_index == nvml_index
    assert meter.sensor.lock_key == f"nvml-{four_gpus()[nvml_index].uuid}"
    assert meter.torch_device == f"cuda:{index}"
    meter.close()


@pytest.mark.parametrize(
    ("visible", "says"),
    [
        ("", "makes 0 GPU(s) visible"),
        ("-1", "makes 0 GPU(s) visible"),
        ("1", "makes 1 GPU(s) visible"),
        ("MIG-1234", "MIG instance"),
        ("GPU-ffff", "matches 0 of the 4 GPUs"),
    ],
)
def test_cuda_visible_devices_errors(fake_nvml, monkeypatch, visible, says):
    fake_nvml(four_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    profile = replace(short_profile(), device_index=1 if visible == "1" else 0)
    with pytest.raises(MeterUnavailable, match=re.escape(says)):
        NvmlMeter(profile).open_sensor()


def test_visible_devices_parsing_stops_at_the_first_invalid_entry():
    assert visible_devices("0,2,GPU-ab") == ["0", "2", "GPU-ab"]
    assert visible_devices("1, 3 ,x,2") == ["1", "3"]
    assert visible_devices("-1,0") == []


def test_measurement_holds_the_device_lock(fake_nvml, tmp_path):
    gpu = FakeGpu()
    fake_nvml([gpu])
    meter = meter_for(gpu)
    seen = []

    class Spy(TickingModel):
        def forward(self, x):
            seen.append(meter.device_lock().held)
            return super().forward(x)

    meter.measure_inference(workload(Spy(gpu.device)))
    assert seen and all(seen)
    assert not meter.device_lock().held
    assert (tmp_path / "locks" / "nvml-GPU-11111111-2222-3333-4444-555555555555.lock").exists()
