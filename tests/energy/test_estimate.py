"""The analytical estimate: deterministic, labelled, and sensitive to the architecture."""

from __future__ import annotations

import dataclasses

import pytest

from nas.architecture import Architecture
from nas.config import load_profile
from nas.energy import create_meter
from nas.energy.estimate import EstimateMeter, inference_terms
from nas.models import build_model, model_stats


def mlp(*widths: int) -> Architecture:
    return Architecture("mlp", {"activation": "relu", "dropout": 0.0}, tuple({"width": w} for w in widths))


@pytest.fixture
def profile():
    return load_profile("cpu-host")


def stats_of(arch):
    return model_stats(build_model(arch, (1, 8, 8), 10), (1, 8, 8))


def test_same_architecture_same_energy_twice(profile):
    a = EstimateMeter(profile).estimate(stats_of(mlp(64, 32)), "fp32", 32)
    b = EstimateMeter(profile).estimate(stats_of(mlp(64, 32)), "fp32", 32)
    assert a == b
    assert a.method == "estimated:analytical" and not a.measured
    assert a.spread_j == 0.0
    # every coefficient used is in the record with its source
    coefs = a.coefficients["coefficients"]
    assert coefs["energy_per_mac_j[fp32]"]["source"]
    assert coefs["static_power_w"]["value"] == profile.static_power_w.value


def test_terms_add_up_and_follow_the_formula(profile):
    st = stats_of(mlp(64))
    t = inference_terms(st, profile, "fp32", 32)
    assert t["total_j"] == pytest.approx(t["compute_j"] + t["weights_j"] + t["activations_j"] + t["static_j"])
    assert t["compute_j"] == pytest.approx(st.macs * profile.energy_per_mac_j["fp32"].value)
    # small model: everything in cache, compute bound; weights amortised over the batch
    assert t["bound"] == "compute"
    assert t["weights_j"] == pytest.approx(st.params * 4 / 32 * profile.energy_per_byte_cache_j.value)


def test_bigger_model_costs_more_and_int8_less(profile):
    m = EstimateMeter(profile)
    small = m.estimate(stats_of(mlp(16)), "fp32", 32).energy_per_inference_j
    big = m.estimate(stats_of(mlp(256, 256)), "fp32", 32).energy_per_inference_j
    int8 = m.estimate(stats_of(mlp(256, 256)), "int8", 32).energy_per_inference_j
    assert small < big and int8 < big


def test_weights_spill_to_dram_when_they_do_not_fit(profile):
    tiny_cache = dataclasses.replace(profile, cache_bytes=dataclasses.replace(profile.cache_bytes, value=1000.0))
    st = stats_of(mlp(256))
    in_cache = inference_terms(st, profile, "fp32", 32)
    spilled = inference_terms(st, tiny_cache, "fp32", 32)
    assert spilled["weights_j"] / in_cache["weights_j"] == pytest.approx(
        profile.energy_per_byte_dram_j.value / profile.energy_per_byte_cache_j.value
    )


def test_larger_batch_amortises_weights(profile):
    st = stats_of(mlp(256, 256))
    assert inference_terms(st, profile, "fp32", 64)["weights_j"] < inference_terms(st, profile, "fp32", 1)["weights_j"]


def test_factory_gives_estimate_for_cpu_host(profile):
    meter = create_meter(profile)
    assert meter.name == "estimate"
