"""The operator-level estimate: deterministic, labelled, every operator counts, no-ops are free, no
cache cliff, per-runtime coefficients, and training costed as wall time x active power."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import nas
from nas.architecture import Architecture
from nas.config import Sourced, load_profile
from nas.energy import create_meter
from nas.energy.estimate import (
    FITTED,
    TRAINING_METHOD,
    EstimateMeter,
    coefficients,
    estimate_module,
    features,
    inference_terms,
)
from nas.energy.opgraph import operator_graph
from nas.models import build_model, model_stats


def mlp(*widths: int, dropout: float = 0.0) -> Architecture:
    return Architecture("mlp", {"activation": "relu", "dropout": dropout}, tuple({"width": w} for w in widths))


def cnn(dropout: float = 0.0) -> Architecture:
    return Architecture(
        "cnn",
        {"activation": "relu", "width_multiplier": 1.0, "dropout": dropout},
        ({"block": "inverted_residual", "channels": 16, "kernel": 3, "repeats": 2, "stride": 1, "expansion": 4},),
    )


@pytest.fixture
def profile():
    return load_profile("cpu-host")


def energy(module: nn.Module, shape, profile, **kw) -> float:
    return estimate_module(module, shape, profile, **kw).energy_per_inference_j


def test_same_architecture_same_energy_twice(profile):
    stats = model_stats(build_model(mlp(64, 32), (1, 8, 8), 10), (1, 8, 8))
    a = EstimateMeter(profile).estimate(stats, "fp32", 32)
    b = EstimateMeter(profile).estimate(model_stats(build_model(mlp(64, 32), (1, 8, 8), 10), (1, 8, 8)), "fp32", 32)
    assert a == b
    assert a.method == "estimated:analytical" and not a.measured and a.spread_j == 0.0
    coefs = a.coefficients["coefficients"]
    for name in FITTED:  # every coefficient used is in the record, with its source
        assert coefs[name]["source"], name
    # cpu-host's torch coefficients are calibrated on this host: the runtime's value wins, with its source
    torch_static = profile.estimate_runtimes["torch"].values["static_power_w"]
    assert coefs["static_power_w"] == {"value": torch_static.value, "source": torch_static.source}
    assert "calibrated" in coefs["static_power_w"]["source"] and torch_static.value != profile.static_power_w.value
    assert a.coefficients["runtime"] == "torch"


def test_terms_add_up_and_scale_with_their_coefficients(profile):
    graph = operator_graph(build_model(mlp(64), (1, 8, 8), 10), (1, 8, 8))
    coefs = coefficients(profile)
    t = inference_terms(graph, coefs, 32)
    parts = ("compute_j", "elementwise_j", "cache_j", "dram_j", "calls_j", "inference_j", "static_j")
    assert t["total_j"] == pytest.approx(sum(t[p] for p in parts))
    f = features(graph, coefs, 32)
    assert t["compute_j"] == pytest.approx(graph.macs * coefs.value("energy_per_mac_j"))
    doubled = coefs.with_values({"energy_per_call_j": 2 * coefs.value("energy_per_call_j")}, "test")
    assert inference_terms(graph, doubled, 32)["calls_j"] == pytest.approx(2 * t["calls_j"])
    # view, addmm, relu, addmm: three kernels at batch 32, each costing its call
    assert f["energy_per_call_j"] == pytest.approx(3 / 32)


def test_dropout_costs_nothing(profile):
    for arch, shape in ((mlp(64, 32, dropout=0.0), (1, 8, 8)), (cnn(0.0), (3, 8, 8))):
        with_dropout = Architecture(arch.family, {**arch.params, "dropout": 0.3}, arch.units)
        assert energy(build_model(arch, shape, 10), shape, profile) == energy(
            build_model(with_dropout, shape, 10), shape, profile
        )


def test_views_identity_and_flatten_cost_nothing(profile):
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    padded = nn.Sequential(
        nn.Flatten(),
        nn.Identity(),
        nn.Linear(64, 32),
        nn.Dropout(0.5),
        nn.ReLU(),
        nn.Unflatten(1, (4, 8)),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    assert energy(plain, (64,), profile) == energy(padded, (64,), profile)


class Residual(nn.Module):
    """conv-BN-ReLU with a functional residual add, average pooling and a concatenation."""

    def __init__(self, pool: bool = True, add: bool = True) -> None:
        super().__init__()
        self.conv, self.bn, self.pool, self.add = (
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            pool,
            add,
        )

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        if self.add:
            y = y + x
        if self.pool:
            y = nn.functional.avg_pool2d(y, 3, 1, 1)
        return torch.cat([y, x], dim=1).mean((2, 3))


def test_every_operator_that_runs_costs_something(profile):
    full = energy(Residual(), (8, 16, 16), profile)
    assert energy(Residual(pool=False), (8, 16, 16), profile) < full
    assert energy(Residual(add=False), (8, 16, 16), profile) < full
    kinds = {op.kind for op in operator_graph(Residual(), (8, 16, 16)).calls()}
    assert {"conv", "batch_norm", "activation", "elementwise", "pool", "copy"} <= kinds


def test_onnxruntime_folds_batch_norm_and_fuses_the_activation(profile):
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False))
    conv_bn_relu = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    for module in (conv, conv_bn_relu):
        module.eval()
    ort = dict(runtime="onnxruntime")
    assert energy(conv_bn_relu, (3, 16, 16), profile, **ort) == energy(conv, (3, 16, 16), profile, **ort)
    assert energy(conv_bn_relu, (3, 16, 16), profile, runtime="torch") > energy(
        conv, (3, 16, 16), profile, runtime="torch"
    )
    # a batch-norm after an addition cannot be folded into any convolution
    graph = operator_graph(build_model(cnn(), (3, 8, 8), 10), (3, 8, 8))
    kept = graph.deployed(folds_batch_norm=True, fuses_activation=True)
    assert not any(op.kind == "batch_norm" for op in kept.operators)
    assert any(op.kind == "batch_norm" for op in graph.deployed(False, False).operators)


def test_runtime_coefficients_come_from_the_profile(profile):
    model = build_model(mlp(64), (1, 8, 8), 10)
    base = {rt: energy(model, (1, 8, 8), profile, runtime=rt) for rt in ("torch", "torchscript", "onnxruntime")}
    assert len(set(base.values())) == 3  # each runtime has its own dispatch costs
    c = coefficients(profile, runtime="onnxruntime")
    assert (
        "onnxruntime" in c.values["energy_per_call_j"].source or "ONNX Runtime" in c.values["seconds_per_call"].source
    )


def test_tiny_models_pay_their_dispatch_overhead(profile):
    """mlp[64] at batch 32: most of its energy is operator calls and the forward call, not MACs."""
    t = estimate_module(build_model(mlp(64), (1, 8, 8), 10), (1, 8, 8), profile).terms
    assert t["calls_j"] + t["inference_j"] + t["static_j"] > 5 * t["compute_j"]


def test_public_api_estimates_any_module(profile):
    est = nas.estimate_module(Residual(), (8, 16, 16), "cpu-host")
    assert est.energy_per_inference_j > 0 and est.macs == 8 * 8 * 9 * 16 * 16
    assert est.params == sum(p.numel() for p in Residual().parameters())
    assert est.to_dict()["method"] == "estimated:analytical"


def _layers(widths: list[int], channels: bool) -> nn.Module:
    layers: list[nn.Module] = []
    if channels:
        c = 3
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)]
    else:
        n = 48
        for w in widths:
            layers += [nn.Linear(n, w), nn.ReLU()]
            n = w
        layers += [nn.Linear(n, 10)]
    return nn.Sequential(*layers)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    widths=st.lists(st.integers(1, 96), min_size=1, max_size=4),
    growth=st.lists(st.integers(0, 160), min_size=4, max_size=4),
    conv=st.booleans(),
    cache_kib=st.sampled_from([4, 64, 1024]),
    batch=st.sampled_from([1, 32]),
)
def test_more_macs_and_bytes_at_every_layer_never_estimates_lower(widths, growth, conv, cache_kib, batch):
    """No cache cliff: widening every layer (more MACs and more bytes in every operator) never lowers
    the estimate, whatever the cache size (small caches make layers spill to DRAM)."""
    profile = load_profile("cpu-host")
    profile = dataclasses.replace(profile, cache_bytes=Sourced(cache_kib * 1024.0, "test"))
    wider = [w + g for w, g in zip(widths, growth, strict=False)]
    shape = (3, 8, 8) if conv else (48,)
    small = energy(_layers(widths, conv), shape, profile, batch_size=batch)
    big = energy(_layers(wider, conv), shape, profile, batch_size=batch)
    assert big >= small * (1 - 1e-12)


def test_bigger_model_costs_more_and_int8_less(profile):
    m = EstimateMeter(profile)
    small = m.estimate(model_stats(build_model(mlp(16), (1, 8, 8), 10), (1, 8, 8)), "fp32", 32).energy_per_inference_j
    big_stats = model_stats(build_model(mlp(256, 256), (1, 8, 8), 10), (1, 8, 8))
    assert small < m.estimate(big_stats, "fp32", 32).energy_per_inference_j
    assert (
        m.estimate(big_stats, "int8", 32).energy_per_inference_j
        < m.estimate(big_stats, "fp32", 32).energy_per_inference_j
    )


def test_weights_spill_to_dram_when_the_network_does_not_fit(profile):
    tiny_cache = dataclasses.replace(profile, cache_bytes=Sourced(1000.0, "test"))
    graph = operator_graph(build_model(mlp(256), (1, 8, 8), 10), (1, 8, 8))
    assert inference_terms(graph, coefficients(profile), 32)["dram_j"] == 0.0
    assert inference_terms(graph, coefficients(tiny_cache), 32)["dram_j"] > 0.0


def test_larger_batch_amortises_weights_and_calls(profile):
    graph = operator_graph(build_model(mlp(256, 256), (1, 8, 8), 10), (1, 8, 8))
    one, many = inference_terms(graph, coefficients(profile), 1), inference_terms(graph, coefficients(profile), 64)
    assert many["calls_j"] < one["calls_j"] and many["cache_j"] < one["cache_j"]


def test_training_is_wall_time_at_the_profiles_active_power(profile, monkeypatch):
    meter = EstimateMeter(profile)
    clock = iter([100.0, 104.0])
    monkeypatch.setattr("nas.energy.estimate.time.perf_counter", lambda: next(clock))
    meter.begin_window()
    reading = meter.end_window()
    active = profile.peak_power_w.value - profile.idle_power_w.value
    assert reading.duration_s == 4.0 and reading.energy_j == pytest.approx(4.0 * active)
    assert reading.method == TRAINING_METHOD and "estimated" in reading.method


def test_factory_gives_estimate_for_cpu_host(profile):
    assert create_meter(profile).name == "estimate"
