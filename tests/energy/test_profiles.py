"""Contract over every shipped hardware profile: it loads, every number has a real source, its
numbers agree with the rule its sources state, its meter behaves honestly here, and the CLI shows it."""

from __future__ import annotations

import json
import math
import re

import pytest
from click.testing import CliRunner

from nas.cli import main
from nas.config import Sourced, list_profiles, load_profile
from nas.energy import create_meter, meter_class
from nas.energy.estimate import EstimateMeter
from nas.errors import MeterUnavailable
from nas.models import ModelStats

PROFILES = [p.stem for p in list_profiles()]
REQUIRED = {
    "cpu-host",
    "cpu-rapl",
    "nvidia-h100",
    "nvidia-h200",
    "nvidia-a100",
    "nvidia-l4",
    "jetson-orin-nano",
    "raspberry-pi-5",
}
# what NVML calls each GPU (device.match must accept it), and look-alikes it must refuse
NVML_NAMES = {
    "nvidia-h100": ("NVIDIA H100 80GB HBM3", ["NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200"]),
    "nvidia-h200": ("NVIDIA H200", ["NVIDIA H200 NVL", "NVIDIA H100 80GB HBM3"]),
    "nvidia-a100": ("NVIDIA A100-SXM4-80GB", ["NVIDIA A100-SXM4-40GB", "NVIDIA A100 80GB PCIe"]),
    "nvidia-l4": ("NVIDIA L4", ["NVIDIA L40S", "NVIDIA L40"]),
}
# every source says what kind it is: a document, a derivation from documented numbers, or an assumption
SOURCE_KINDS = (
    "datasheet",
    "whitepaper",
    "ISSCC",
    "MICRO",
    "ARK",
    "IEA",
    "product brief",
    "intrinsics guide",
    "lscpu",
    "assumption",
    "upper bound",
    "Armv8.2",
    "benchmarks/",  # measured by a benchmark of this repository, named with its command
)
STATS = ModelStats(params=25_194, macs=24_896, activation_elems=298, input_elems=64)


def sourced_numbers(p) -> list[tuple[str, Sourced]]:
    out = [
        (k, getattr(p, k))
        for k in (
            "idle_power_w",
            "peak_power_w",
            "memory_bandwidth_bytes_per_s",
            "cache_bytes",
            "energy_per_byte_dram_j",
            "energy_per_byte_cache_j",
            "static_power_w",
            "grid_intensity_g_per_kwh",
        )
    ]
    out += [(f"peak_macs_per_s[{k}]", v) for k, v in p.peak_macs_per_s.items()]
    out += [(f"energy_per_mac_j[{k}]", v) for k, v in p.energy_per_mac_j.items()]
    return out


def test_every_required_profile_ships():
    assert REQUIRED <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_every_number_has_a_real_source(name):
    p = load_profile(name)
    for field, s in sourced_numbers(p):
        assert math.isfinite(s.value), field
        assert len(s.source) >= 15 and not re.search(r"TODO|TBD|FIXME|\?\?", s.source), (field, s.source)
        assert any(m in s.source for m in SOURCE_KINDS), (field, s.source)
    assert p.peak_power_w.value > p.idle_power_w.value
    assert p.precision in p.precisions and p.precision in p.energy_per_mac_j


@pytest.mark.parametrize("name", PROFILES)
def test_upper_bound_energies_follow_their_stated_rule(name):
    """A per-MAC energy whose source says `upper bound: (P W ... - I W idle) / R` must equal it."""
    p = load_profile(name)
    for precision, s in p.energy_per_mac_j.items():
        if not s.source.startswith("upper bound"):
            continue
        expected = (p.peak_power_w.value - p.idle_power_w.value) / p.peak_macs_per_s[precision].value
        assert s.value == pytest.approx(expected, rel=0.02), (precision, s.value, expected)


@pytest.mark.parametrize("name", PROFILES)
def test_estimate_is_finite_positive_and_deterministic(name):
    p = load_profile(name)
    est = EstimateMeter(p)
    a = est.estimate(STATS, p.precision, p.batch_size)
    b = est.estimate(STATS, p.precision, p.batch_size)
    assert a == b and 0 < a.energy_per_inference_j < 1 and a.method == "estimated:analytical"


@pytest.mark.parametrize("name", [n for n in PROFILES if load_profile(n).meter != "estimate"])
def test_sensor_profiles_state_their_protocol(name):
    p = load_profile(name)
    assert p.protocol.min_window_s >= 1.0 and p.protocol.repeats >= 3 and p.protocol.idle_window_s >= 1.0
    assert meter_class(p.meter).torch_device == ("cuda" if p.device_kind == "gpu" else "cpu")


@pytest.mark.parametrize("name", sorted(NVML_NAMES))
def test_gpu_device_match_accepts_its_gpu_only(name):
    p = load_profile(name)
    own, others = NVML_NAMES[name]
    assert p.meter == "nvml" and re.search(p.device_match, own)
    for other in others:
        assert not re.search(p.device_match, other), other


@pytest.mark.parametrize("name", PROFILES)
def test_meter_is_honest_here(name):
    p = load_profile(name)
    probe = meter_class(p.meter).probe(p)
    if p.meter == "estimate":
        assert probe.usable
    elif not probe.usable:  # this machine lacks the sensor: a clear error, or the labelled estimate
        with pytest.raises(MeterUnavailable, match=rf"measures with {p.meter.upper()}.*--allow-estimate"):
            create_meter(p)
        assert create_meter(p, allow_estimate=True).name == "estimate"
    else:
        assert create_meter(p).name == p.meter


def test_profiles_list_json_is_complete():
    result = CliRunner().invoke(main, ["profiles", "list", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert sorted(r["name"] for r in rows) == sorted(PROFILES)
    for r in rows:
        p = load_profile(r["name"])
        assert r["meter"] == p.meter and r["batch_size"] == p.batch_size and r["precision"] == p.precision
        assert r["sensor"]["estimated"] == (p.meter == "estimate")
        assert r["objective_energy"] in ("gross", "net", "estimate")
        assert r["sensor"]["available_here"] or r["sensor"]["reason"]
    text = CliRunner().invoke(main, ["profiles", "list"]).output
    assert all(n in text for n in PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_show_json_has_every_number_and_source(name):
    result = CliRunner().invoke(main, ["profiles", "show", name, "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    doc = json.loads(result.output)
    p = load_profile(name)
    for field, s in sourced_numbers(p):
        key, _, prec = field.partition("[")
        got = doc[key][prec[:-1]] if prec else doc[key]
        assert got == {"value": s.value, "source": s.source}
    assert doc["protocol"]["repeats"] == p.protocol.repeats and "sensor" in doc and doc["file"].endswith(".yaml")


def test_profiles_show_unknown_lists_valid_names():
    result = CliRunner().invoke(main, ["profiles", "show", "nvidia-b200"])
    assert result.exit_code != 0 and "nvidia-h100" in result.output and "Traceback" not in result.output
