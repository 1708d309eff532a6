"""The RAPL meter on a fake powercap sysfs tree in a temp folder (energies asserted to the microjoule).

Every fake tree also holds the zones that must never be counted: core/dram sub-zones inside each
package, an `intel-rapl-mmio:0` twin of package 0 and a `psys` platform zone; the tests change those
too and check that the sum does not move.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from energy_fakes import POLL_S, TICK_S, FakeDevice, FakePowercap, TickingModel, short_profile

from nas.energy import Workload, create_meter
from nas.energy.rapl import RaplMeter, RaplSensor, cpu_model, find_packages, poll_interval_s
from nas.errors import MeterUnavailable
from nas.models import ModelStats


def sensor(tree: FakePowercap, **kw) -> RaplSensor:
    return RaplSensor(tree.root, "Test CPU", start_thread=kw.pop("start_thread", False), **kw)


def test_one_socket(powercap):
    tree = powercap(packages=1, start_uj=1_000_000)
    s = sensor(tree)
    start = s.read_uj()
    tree.set(0, 3_500_123)
    tree.set_others(99_999_999)
    assert s.read_uj() - start == 2_500_123
    assert s.zones[0].name == "package-0" and len(s.zones) == 1


def test_two_sockets_are_summed_and_sub_zones_never_added(powercap):
    tree = powercap(packages=2, start_uj=10)
    s = sensor(tree)
    start = s.read_j()
    tree.set(0, 10 + 1_234_567)
    tree.set(1, 10 + 7_654_321)
    tree.set_others(123_456_789)
    assert round((s.read_j() - start) * 1e6) == 1_234_567 + 7_654_321
    assert [z.name for z in s.zones] == ["package-0", "package-1"]
    assert "2 package(s)" in s.device_name


def test_one_wrap(powercap):
    tree = powercap(packages=1, max_range_uj=1_000_000, start_uj=900_000)
    s = sensor(tree)
    start = s.read_uj()
    tree.set(0, 200_000)  # passed the wrap point: 100_000 to it, 200_000 after
    assert s.read_uj() - start == 300_000
    assert s.wraps == 1


def test_two_wraps_in_a_long_window_seen_by_polling(powercap):
    tree = powercap(packages=1, max_range_uj=1_000_000, start_uj=900_000)
    s = sensor(tree)
    start = s.read_uj()
    for value in (100_000, 950_000, 50_000):  # wrap, climb, wrap again
        tree.set(0, value)
        s.poll()  # what the background thread does between the window's edges
    assert s.read_uj() - start == 200_000 + 850_000 + 100_000
    assert s.wraps == 2


def test_background_thread_counts_wraps_without_help(powercap):
    tree = powercap(packages=1, max_range_uj=1_000_000, start_uj=900_000)
    s = sensor(tree, start_thread=True, poll_s=0.002)
    start_total = 0  # the sensor's origin is its first reading

    def seen() -> tuple[int, int]:
        return s.wraps, s._counters[0].last

    for value in (100_000, 950_000, 50_000):
        before = seen()
        tree.set(0, value)
        deadline = time.monotonic() + 5
        while seen() == before and time.monotonic() < deadline:  # the thread polls on its own
            time.sleep(0.002)
    total = s.read_uj() - start_total
    s.close()
    assert total == 1_150_000 and s.wraps == 2


def test_no_permission_says_how_to_fix(powercap, monkeypatch):
    # chmod 000 does not stop root (these tests may run as root), so the refusal is simulated at
    # the one place the meter opens sysfs files: a PermissionError for energy_uj, as the kernel gives
    tree = powercap(packages=1)
    import nas.energy.rapl as rapl

    real = rapl._read_text

    def refuse(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(rapl, "_read_text", refuse)
    probe = RaplMeter.probe(short_profile("cpu-rapl"))
    assert not probe.usable
    assert "root only" in probe.reason and "CVE-2020-8694" in probe.reason
    assert f"sudo chmod a+r {tree.root}/intel-rapl:*/energy_uj" in probe.reason
    with pytest.raises(MeterUnavailable, match="measures with RAPL.*run as root"):
        create_meter(short_profile("cpu-rapl"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files; the simulated test covers it")
def test_no_permission_real_chmod(powercap):
    tree = powercap(packages=1)
    (tree.root / "intel-rapl:0" / "energy_uj").chmod(0)
    assert "root only" in RaplMeter.probe(short_profile("cpu-rapl")).reason


def test_missing_tree_in_containers(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_POWERCAP_ROOT", str(tmp_path / "absent"))
    RaplMeter.clear_probe_cache()
    reason = RaplMeter.probe(short_profile("cpu-rapl")).reason
    assert "no powercap sysfs" in reason and "containers and VMs" in reason
    empty = tmp_path / "empty"
    (empty / "intel-rapl:0").mkdir(parents=True)
    (empty / "intel-rapl:0" / "name").write_text("psys\n")
    with pytest.raises(MeterUnavailable, match="no package domains"):
        find_packages(empty)


def test_amd_tree_and_env_root(powercap):
    powercap(packages=1)  # AMD names its package zone package-0 inside intel-rapl:0 as well
    assert RaplMeter.probe(short_profile("cpu-rapl")).usable
    meter = create_meter(short_profile("cpu-rapl"))
    assert isinstance(meter, RaplMeter) and meter.torch_device == "cpu"


def test_cpu_model_must_match_a_named_cpu(powercap, tmp_path):
    tree = powercap(packages=1)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 9654 96-Core Processor"
    profile = replace(short_profile("cpu-rapl"), device_match="Xeon")
    with pytest.raises(MeterUnavailable) as e:
        RaplMeter(profile, root=tree.root, cpuinfo=cpuinfo).open_sensor()
    assert "AMD EPYC 9654" in str(e.value) and "Xeon" in str(e.value) and "cpu-rapl" in str(e.value)


def test_poll_interval_sees_every_wrap(powercap):
    tree = powercap(packages=1, max_range_uj=4_000_000_000)  # 4 kJ: wraps in 40 s at 100 W
    zones = find_packages(tree.root)
    assert poll_interval_s(zones, 100.0) == 1.0  # capped
    assert poll_interval_s(zones, 2000.0) == pytest.approx(0.5)  # 2 s wrap time / 4
    assert poll_interval_s([replace(zones[0], max_range_uj=1000)], 100.0) == 0.01  # floor


def test_full_protocol_on_a_two_socket_fake(powercap):
    """The RAPL meter through the shared protocol: energies from the fake files, to the microjoule."""
    tree = powercap(packages=2, start_uj=0)
    dev = FakeDevice(idle_w=64.0)

    def write() -> None:  # the package counters follow the device: 3/4 on socket 0, 1/4 on socket 1
        total_uj = round(dev.energy_j() * 1e6)
        tree.set(0, total_uj * 3 // 4)
        tree.set(1, total_uj - total_uj * 3 // 4)

    dev.listeners.append(write)
    meter = RaplMeter(
        short_profile("cpu-rapl", subtract_idle=True), clock=dev.clock, sleep=dev.sleep, start_thread=False
    )
    meter.idle_poll_s = POLL_S
    stats = ModelStats(params=10, macs=8, activation_elems=2, input_elems=4)
    record = meter.measure_inference(Workload(TickingModel(dev, lambda k: 0.125), torch.zeros(4, 4), stats, "fp32"))
    meter.close()
    # window: 8 batches x 1/64 s; work 8 x 0.125 J = 1 J, idle 64 W x 0.125 s = 8 J; 32 inferences
    assert record.method == "measured:rapl" and record.scope.startswith("package")
    assert [round(w * 1e6) for w in record.windows_j] == [9_000_000] * 3
    assert round(record.net_energy_per_inference_j * 1e6) == round(1.0 / 32 * 1e6)
    assert record.energy_per_inference_j == record.net_energy_per_inference_j
    assert round(record.gross_energy_per_inference_j * 1e6) == round(9.0 / 32 * 1e6)
    assert record.idle_power_w == 64.0 and record.latency_s == TICK_S
