"""The meter factory (`nas.energy`): one contract run over every backend it lists."""

from __future__ import annotations

import math

import pytest
import torch

from nas.architecture import Architecture
from nas.config import list_profiles, load_profile
from nas.energy import EnergyRecord, Meter, Probe, Workload, create_meter, meter_class, meter_names
from nas.errors import ConfigError, MeterUnavailable
from nas.models import build_model, model_stats

PROFILES = [load_profile(p) for p in list_profiles()]


@pytest.fixture(scope="module")
def workload_for():
    """A small MLP and one input batch at a profile's batch size and precision."""
    arch = Architecture.from_dict({"family": "mlp", "params": {"activation": "relu"}, "units": [{"width": 16}]})
    model = build_model(arch, (1, 8, 8), 10).eval()
    stats = model_stats(model, (1, 8, 8))

    def make(profile) -> Workload:
        return Workload(model, torch.rand(profile.batch_size, 1, 8, 8), stats, "fp32")

    return make


@pytest.mark.parametrize("name", meter_names())
def test_every_backend_keeps_the_meter_contract(name, workload_for, monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    cls = meter_class(name)
    assert issubclass(cls, Meter) and cls.name == name
    profiles = [p for p in PROFILES if p.meter == name]
    assert profiles, f"no shipped profile measures with {name!r}"
    for profile in profiles:
        cls(profile).close()  # constructing (and closing, unopened) never touches hardware
        probe = cls.probe(profile)
        assert isinstance(probe, Probe)
        if not probe.usable:  # why not, in one line
            assert probe.reason and "\n" not in probe.reason
            with pytest.raises(MeterUnavailable, match=profile.name):
                create_meter(profile)
    profile = profiles[0]
    if "fp32" not in profile.precisions:
        pytest.skip(f"{profile.name} runs no fp32")
    meter = create_meter(profile, allow_estimate=True)
    try:
        record = meter.measure_inference(workload_for(profile))
    finally:
        meter.close()
        meter.close()  # idempotent
    assert isinstance(record, EnergyRecord)
    assert 0 < record.energy_per_inference_j < math.inf
    # an estimate is never presented as a measurement
    assert record.measured == record.method.startswith("measured:") == (meter.name != "estimate")


def test_an_unknown_meter_lists_the_backends():
    with pytest.raises(ConfigError, match="unknown meter 'bogus'") as e:
        meter_class("bogus")
    assert all(name in str(e.value) for name in meter_names())
