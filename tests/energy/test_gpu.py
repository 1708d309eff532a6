"""The NVML meter on a real NVIDIA GPU (skipped without one: tests/conftest.py looks for nvidia-smi)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from nas.architecture import Architecture
from nas.config import load_profile
from nas.energy import Workload
from nas.energy.nvml import NvmlMeter
from nas.models import build_model, model_stats

SHAPE = (3, 32, 32)


@pytest.mark.gpu
@pytest.mark.slow
def test_nvml_meter_measures_two_models_and_a_training_window():
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    profile = replace(load_profile("nvidia-h100"), device_match=None, precision="fp32", batch_size=64)
    probe = NvmlMeter.probe(profile)
    assert probe.usable, probe.reason
    meter = NvmlMeter(profile)
    records = []
    for widths in ([64], [2048, 2048, 2048]):
        arch = Architecture("mlp", {"activation": "relu", "dropout": 0.0}, tuple({"width": w} for w in widths))
        model = build_model(arch, SHAPE, 10)
        stats = model_stats(model, SHAPE)
        work = Workload(model.cuda().eval(), torch.rand(64, *SHAPE, device="cuda"), stats, "fp32")
        with meter.device_lock():
            records.append(meter.measure_inference(work))
    small, big = records
    for r in records:
        assert r.method.startswith("measured:nvml-") and r.device_name
        assert r.window_s >= profile.protocol.min_window_s and r.repeats == profile.protocol.repeats
        assert r.gross_energy_per_inference_j > 0 and r.idle_power_w > 0
        assert r.protocol["idle"]["update_period_s"] > 0
    assert big.gross_energy_per_inference_j > small.gross_energy_per_inference_j

    a = torch.randn(2048, 2048, device="cuda")
    meter.begin_window()
    for _ in range(200):
        a = (a @ a).clamp_(-1, 1)
    reading = meter.end_window()
    meter.close()
    assert reading.energy_j > 0 and reading.duration_s > 0 and reading.net_energy_j is not None
