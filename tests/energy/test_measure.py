"""`nas measure` and the honest-fallback contract of `nas search` on this (sensorless) machine."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from energy_fakes import CpuTimeCounter, FakePowercap

from nas.cli import main
from nas.config import PROFILES_DIR, load_profile
from nas.energy.nvml import NvmlMeter
from nas.measure import measure_trial
from nas.plot import pareto_figure
from nas.report import build_report

NO_GPU = not NvmlMeter.probe(load_profile("nvidia-h100")).usable


def nas(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("measure") / "run"
    r = nas("search", "--profile", "cpu-host", "--trials", "2", "--epochs", "1", "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    return out


def energy_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("energy per inference:"))


def test_measure_twice_on_the_estimate_path_prints_the_same_energy(run_dir):
    first, second = nas("measure", run_dir, "--trial", 1), nas("measure", run_dir, "--trial", 1)
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert energy_line(first.output) == energy_line(second.output)
    assert "estimated:analytical (ESTIMATED, not measured)" in first.output
    a = json.loads(nas("measure", run_dir, "--trial", 1, "--json").output)
    b = json.loads(nas("measure", run_dir, "--trial", 1, "--json").output)
    assert a["record"]["energy_per_inference_j"] == b["record"]["energy_per_inference_j"]
    # and it is what the search recorded for that trial
    assert a["record"]["energy_per_inference_j"] == a["stored_energy_per_inference_j"]
    assert a["record"]["method"] == "estimated:analytical" and a["profile"] == "cpu-host"


def test_measure_on_another_profile_without_its_sensor(run_dir):
    r = nas("measure", run_dir, "--trial", 0, "--profile", "nvidia-h100")
    if not NO_GPU:
        pytest.skip("this machine has an NVIDIA GPU")
    assert r.exit_code == 3 and "NVML" in r.output and "--allow-estimate" in r.output
    assert "Traceback" not in r.output
    r = nas("measure", run_dir, "--trial", 0, "--profile", "nvidia-h100", "--allow-estimate", "--json")
    doc = json.loads(r.output)
    assert doc["record"]["method"] == "estimated:analytical" and doc["profile"] == "nvidia-h100"
    assert doc["record"]["batch_size"] == load_profile("nvidia-h100").batch_size


def test_measure_errors_are_one_line(run_dir):
    for args, code in (
        (("--trial", 99), 5),
        (("--trial", 0, "--repeats", 0), 2),
        (("--trial", 0, "--profile", "no-such"), 2),
    ):
        r = nas("measure", run_dir, *args)
        assert r.exit_code == code, r.output
        assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("nas: error:")


def rapl_profile(tmp_path):
    text = (PROFILES_DIR / "cpu-rapl.yaml").read_text()
    text = re.sub(r"min_window_s: .*", "min_window_s: 0.05", text)
    text = re.sub(r"idle_window_s: .*", "idle_window_s: 0.05", text)
    profile = tmp_path / "rapl-short.yaml"
    profile.write_text(text)
    return profile


def test_measure_with_rapl_on_a_fake_tree(run_dir, tmp_path, monkeypatch):
    """The sensor path end to end: a profile file, --repeats, the fake sysfs driven in real time
    like a CPU package (idle power plus power per CPU-second, exact at each read), so the net
    energy is positive."""
    tree = FakePowercap(tmp_path / "powercap", packages=2, start_uj=42)
    monkeypatch.setenv("NAS_POWERCAP_ROOT", str(tree.root))
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    from nas.energy.rapl import RaplMeter

    RaplMeter.clear_probe_cache()
    with CpuTimeCounter(tree, monkeypatch, idle_w=2.0, busy_w=20.0):
        m = measure_trial(run_dir, 0, profile=str(rapl_profile(tmp_path)), repeats=2)
    RaplMeter.clear_probe_cache()
    r = m.record
    assert r.method == "measured:rapl" and r.repeats == 2 and len(r.windows_j) == 2
    assert all(w > 0 for w in r.windows_j) and r.energy_per_inference_j > 0 and r.objective_uses == "net"
    assert r.energy_per_inference_j == r.net_energy_per_inference_j < r.gross_energy_per_inference_j
    assert r.inferences_per_window >= 64 and r.idle_power_w > 0  # (window length: timing, not asserted)
    assert r.idle_measured_at == r.protocol["idle"]["measured_at"]
    assert "2 package(s)" in r.device_name and m.meter == "rapl"


def test_measure_with_a_stuck_rapl_counter_refuses(run_dir, tmp_path, monkeypatch):
    """Counters that stand still (as in some VMs) are a stuck sensor: one line, never 0 J."""
    tree = FakePowercap(tmp_path / "powercap", packages=2, start_uj=42)
    monkeypatch.setenv("NAS_POWERCAP_ROOT", str(tree.root))
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    from nas.energy.rapl import RaplMeter

    monkeypatch.setattr(RaplMeter, "probe_watch_s", 0.05)
    RaplMeter.clear_probe_cache()
    r = nas("measure", run_dir, "--trial", 0, "--profile", rapl_profile(tmp_path))
    RaplMeter.clear_probe_cache()
    assert r.exit_code == 3, r.output
    line = r.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith("nas: error:")
    assert "did not change during the probe" in line and "intel-rapl:0/energy_uj" in line and "watched" in line
    assert "--allow-estimate" in line


def test_search_on_a_gpu_profile_without_a_gpu(tmp_path):
    if not NO_GPU:
        pytest.skip("this machine has an NVIDIA GPU")
    args = ["search", "--profile", "nvidia-h100", "--trials", 2, "--epochs", 1, "--quiet"]
    r = CliRunner().invoke(main, [str(a) for a in args + ["--out", tmp_path / "refused"]])
    assert r.exit_code != 0
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "NVML" in lines[0] and "--allow-estimate" in lines[0] and "Traceback" not in r.output
    assert not (tmp_path / "refused").exists()

    out = tmp_path / "estimated"
    r = CliRunner().invoke(main, [str(a) for a in args + ["--out", out, "--allow-estimate"]])
    assert r.exit_code == 0, r.output
    assert "estimated:analytical" in r.output and "ESTIMATED, not measured" in r.output
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert front and all(row["energy_method"] == "estimated:analytical" for row in front)
    meta = json.loads((out / "run.json").read_text())
    assert meta["meter"]["estimated"] is True and meta["meter"]["profile_meter"] == "nvml"
    rep = build_report(out)
    assert all(rec.attrs["energy"]["method"] == "estimated:analytical" for rec in rep.records)
    fig = pareto_figure(rep.records, rep.front, title=rep.study_name)
    ax = fig.axes[0]
    assert "estimated" in ax.get_title() and "ESTIMATED" in ax.get_xlabel()
    assert (out / "pareto.png").stat().st_size > 0
