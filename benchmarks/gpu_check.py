"""The NVML meter on a real GPU: the figures docs/measurements.md asks for. Run on a GPU machine:

    python benchmarks/gpu_check.py --out gpu_check.json

It prints a Markdown section and writes the same figures as JSON:
  1. GPU, driver, architecture, which NVML energy API the meter uses;
  2. the idle baseline (power, window, counter update period);
  3. counter energy vs trapezoid-integrated `nvmlDeviceGetPowerUsage` for the same busy window;
  4. energy per inference of two architectures of different size (gross, net, repeat spread,
     latency, window length, the cost of one measurement);
  5. a training window (begin_window / end_window) around a few optimiser steps.
Takes about a minute. Nothing here runs without an NVIDIA GPU, a driver and a CUDA build of torch.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nas.architecture import Architecture  # noqa: E402
from nas.config import list_profiles, load_profile  # noqa: E402
from nas.energy import Workload  # noqa: E402
from nas.energy.nvml import NvmlMeter, PowerIntegrator  # noqa: E402
from nas.models import build_model, model_stats  # noqa: E402

INPUT_SHAPE = (3, 32, 32)
MODELS = {
    "small MLP [256, 64]": {
        "family": "mlp",
        "params": {"activation": "relu", "dropout": 0.0},
        "units": [{"width": 256}, {"width": 64}],
    },
    "CNN conv 64/128/256": {
        "family": "cnn",
        "params": {"activation": "relu", "width_multiplier": 1.0},
        "units": [
            {"block": "conv", "channels": 64, "kernel": 3, "repeats": 2, "stride": 1},
            {"block": "conv", "channels": 128, "kernel": 3, "repeats": 2, "stride": 2},
            {"block": "conv", "channels": 256, "kernel": 3, "repeats": 2, "stride": 2},
        ],
    },
}


def pick_profile():
    """The shipped NVML profile whose device.match accepts this GPU, else nvidia-h100 unmatched."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        sys.exit(f"gpu_check: NVML unavailable here ({e}); run this on a machine with an NVIDIA GPU")
    name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
    name = name.decode() if isinstance(name, bytes) else name
    pynvml.nvmlShutdown()
    for path in list_profiles():
        p = load_profile(path)
        if p.meter == "nvml" and p.device_match and re.search(p.device_match, name):
            return p, f"shipped profile {p.name}"
    p = load_profile("nvidia-h100")
    return replace(p, device_match=None), f"no shipped profile matches {name!r}: nvidia-h100 numbers, match disabled"


def busy_window(meter: NvmlMeter, seconds: float) -> dict:
    """Counter energy vs integrated power over the same window of matmuls."""
    nv = meter.sensor._nv
    handle = meter.sensor._handle
    dev = torch.device(meter.torch_device)
    a = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    integ = PowerIntegrator(lambda: nv.nvmlDeviceGetPowerUsage(handle) / 1000.0, time.perf_counter, 0.01)
    torch.cuda.synchronize(dev)
    t0, p0 = time.perf_counter(), integ.energy_j()
    c0 = nv.nvmlDeviceGetTotalEnergyConsumption(handle) if meter.sensor.method.endswith("counter") else None
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize(dev)
    c1 = nv.nvmlDeviceGetTotalEnergyConsumption(handle) if c0 is not None else None
    p1, t1 = integ.energy_j(), time.perf_counter()
    integ.close()
    out = {"window_s": t1 - t0, "integrated_power_j": p1 - p0, "power_samples": integ.samples}
    if c0 is not None:
        out["counter_j"] = (c1 - c0) / 1000.0
        out["power_over_counter"] = out["integrated_power_j"] / out["counter_j"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--busy-s", type=float, default=5.0)
    args = ap.parse_args()

    profile, how = pick_profile()
    probe = NvmlMeter.probe(profile)
    if not probe.usable:
        sys.exit(f"NVML meter unusable: {probe.reason}")
    meter = NvmlMeter(profile)
    info = meter.sensor.info
    result: dict = {
        "gpu": info.name,
        "driver": info.driver_version,
        "uuid": info.uuid,
        "nvml_mode": info.mode,
        "method": meter.sensor.method,
        "profile": profile.name,
        "profile_choice": how,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "protocol": profile.protocol.__dict__,
        "batch_size": profile.batch_size,
        "precision": profile.precision,
    }
    with meter.device_lock():
        result["idle"] = meter.idle_baseline().to_dict()
        result["busy_window"] = busy_window(meter, args.busy_s)

    from nas.compress import to_precision

    result["models"] = {}
    dev = torch.device(meter.torch_device)
    for label, doc in MODELS.items():
        torch.manual_seed(0)
        model = build_model(Architecture.from_dict(doc), INPUT_SHAPE, 10)
        stats = model_stats(model, INPUT_SHAPE)
        batch = torch.rand(profile.batch_size, *INPUT_SHAPE)
        deployed = to_precision(model, profile.precision, batch).to(dev)
        with meter.device_lock():
            rec = meter.measure_inference(Workload(deployed, batch.to(dev), stats, profile.precision))
        result["models"][label] = {"params": stats.params, "macs": stats.macs, **rec.to_dict()}

    model = build_model(Architecture.from_dict(MODELS["CNN conv 64/128/256"]), INPUT_SHAPE, 10).to(dev)
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.rand(256, *INPUT_SHAPE, device=dev), torch.randint(0, 10, (256,), device=dev)
    meter.begin_window()
    for _ in range(50):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    result["training_window"] = meter.end_window().to_dict()
    meter.close()

    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(markdown(result))


def markdown(r: dict) -> str:
    idle, busy = r["idle"], r["busy_window"]
    lines = [
        f"### {r['gpu']} (driver {r['driver']}, torch {r['torch']}, CUDA {r['cuda']})",
        f"- meter: `{r['method']}`; profile: {r['profile_choice']}; batch {r['batch_size']}, {r['precision']}",
        f"- idle baseline: {idle['power_w']:.1f} W over {idle['window_s']:.2f} s; counter update period "
        f"{idle['update_period_s'] * 1000:.1f} ms ({idle['update_period_method']}, {idle['updates']} updates seen)",
        f"- busy window {busy['window_s']:.2f} s of bf16 matmuls: "
        + (
            f"counter {busy['counter_j']:.2f} J, integrated power {busy['integrated_power_j']:.2f} J "
            f"({busy['power_samples']} samples), ratio {busy['power_over_counter']:.3f}"
            if "counter_j" in busy
            else f"integrated power {busy['integrated_power_j']:.2f} J"
        ),
        "",
        "| model | params | MACs | gross J/inf | net J/inf | spread J | latency/batch | window s | measurement s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m in r["models"].items():
        lines.append(
            f"| {label} | {m['params']:,} | {m['macs']:,} | {m['gross_energy_per_inference_j']:.3e} | "
            f"{m['net_energy_per_inference_j']:.3e} | {m['spread_j']:.1e} | {m['latency_s'] * 1000:.3f} ms | "
            f"{m['window_s']:.2f} | {m['measurement_s']:.2f} |"
        )
    t = r["training_window"]
    lines.append(
        f"\n- training window (50 Adam steps, batch 256): {t['energy_j']:.2f} J gross, "
        f"{t['net_energy_j']:.2f} J net over {t['duration_s']:.2f} s"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
