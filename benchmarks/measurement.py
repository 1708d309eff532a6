"""Measurement: our meter against CodeCarbon's offline tracker, on the same candidates, in one run.

For each candidate (a small and a large MLP on the digits input, at the profile's batch size):

* **ours**: the profile's meter (on a machine without sensors, the cpu-host profile's analytical
  estimate) measures the candidate `--repeats` times through the search's own path
  (`nas.deploy.measure_model`); reported: the time one measurement costs, the value, its method,
  and the spread of the repeats (max - min, which must be 0 for the deterministic estimate).
* **CodeCarbon** (`codecarbon.OfflineEmissionsTracker`, the tool users reach for today): one
  tracker per measurement (a tracker measures one start/stop cycle) around a window of the same
  inference batches lasting `--window` seconds; reported: the tracker's own time per measurement
  (construction + start + stop, outside the window's work), the energy it reports per inference,
  its CPU / RAM split and powers, the tracking method it chose (from its log), and the repeat
  spread. Run with its default sampling interval (15 s) and with one below the window.

NVML: the spread of a GPU sensor needs a GPU; without one the NVML probe's reason is printed.

    .venv/bin/python benchmarks/measurement.py [--profile cpu-host] [--repeats 5] [--window 2]

Needs `pip install codecarbon` (the `bench` extra: `pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nas.architecture import Architecture
from nas.config import load_profile
from nas.data import load_dataset
from nas.deploy import inference_batch, measure_model
from nas.energy import create_meter, meter_class
from nas.models import build_model, model_stats
from nas.train import set_threads

CANDIDATES = {
    "mlp[32] relu": {"family": "mlp", "params": {"activation": "relu", "dropout": 0.0}, "units": [{"width": 32}]},
    "mlp[256, 256, 128] relu": {
        "family": "mlp",
        "params": {"activation": "relu", "dropout": 0.0},
        "units": [{"width": 256}, {"width": 256}, {"width": 128}],
    },
}
J_PER_KWH = 3.6e6


class _Lines(logging.Handler):
    """Keeps CodeCarbon's log lines (it states its tracking method only there)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def ours(meter: Any, model: torch.nn.Module, stats: Any, data: Any, profile: Any, repeats: int) -> dict[str, Any]:
    costs, values = [], []
    record = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        record = measure_model(meter, model, stats, data, profile)
        costs.append(time.perf_counter() - t0)
        values.append(record.energy_per_inference_j)
    return {
        "method": record.method,
        "energy_per_inference_j": statistics.median(values),
        "spread_j": max(values) - min(values),
        "cost_s_median": statistics.median(costs),
        "cost_s_max": max(costs),
        "latency_s": record.latency_s,
        "latency_method": record.latency_method,
    }


def codecarbon_once(
    model: torch.nn.Module, batch: torch.Tensor, window_s: float, interval_s: float | None, lines: _Lines, out_dir: str
) -> dict[str, Any]:
    from codecarbon import OfflineEmissionsTracker

    kwargs = {"measure_power_secs": interval_s} if interval_s is not None else {}
    t0 = time.perf_counter()
    tracker = OfflineEmissionsTracker(
        country_iso_code="USA",
        save_to_file=False,
        output_dir=out_dir,
        log_level="info",
        allow_multiple_runs=True,
        **kwargs,
    )
    cc_logger = logging.getLogger("codecarbon")
    for h in cc_logger.handlers:
        if h is not lines:
            h.setLevel(logging.ERROR)  # keep its per-interval lines off the console
    if lines not in cc_logger.handlers:
        cc_logger.addHandler(lines)
    t1 = time.perf_counter()
    tracker.start()
    t2 = time.perf_counter()
    batches = 0
    with torch.no_grad():
        while time.perf_counter() - t2 < window_s:
            model(batch)
            batches += 1
    t3 = time.perf_counter()
    tracker.stop()
    t4 = time.perf_counter()
    d = tracker.final_emissions_data
    inferences = batches * batch.shape[0]
    return {
        "overhead_s": (t1 - t0) + (t2 - t1) + (t4 - t3),
        "start_s": t2 - t1,
        "stop_s": t4 - t3,
        "window_s": t3 - t2,
        "inferences": inferences,
        "energy_j": d.energy_consumed * J_PER_KWH,
        "energy_per_inference_j": d.energy_consumed * J_PER_KWH / inferences,
        "cpu_j": d.cpu_energy * J_PER_KWH,
        "ram_j": d.ram_energy * J_PER_KWH,
        "cpu_power_w": d.cpu_power,
        "ram_power_w": d.ram_power,
        "tracking_mode": d.tracking_mode,
        "cpu_model": d.cpu_model,
        "hardware": list(tracker._conf.get("hardware", [])),
    }


def summarize_cc(runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_inf = [r["energy_per_inference_j"] for r in runs]
    med = statistics.median(per_inf)
    return {
        "energy_per_inference_j": med,
        "spread_j": max(per_inf) - min(per_inf),
        "spread_rel": (max(per_inf) - min(per_inf)) / med if med else float("nan"),
        "overhead_s_median": statistics.median(r["overhead_s"] for r in runs),
        "overhead_s_first": runs[0]["overhead_s"],
        "start_s_median": statistics.median(r["start_s"] for r in runs),
        "stop_s_median": statistics.median(r["stop_s"] for r in runs),
        "window_s_median": statistics.median(r["window_s"] for r in runs),
        "ram_share": statistics.median(r["ram_j"] / r["energy_j"] if r["energy_j"] else float("nan") for r in runs),
        "cpu_power_w": runs[0]["cpu_power_w"],
        "ram_power_w": runs[0]["ram_power_w"],
        "tracking_mode": runs[0]["tracking_mode"],
        "cpu_model": runs[0]["cpu_model"],
        "hardware": runs[0]["hardware"],
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-host")
    ap.add_argument("--repeats", type=int, default=5, help="CodeCarbon measurements per candidate and interval")
    ap.add_argument("--ours-repeats", type=int, default=200, help="our measurements per candidate")
    ap.add_argument("--window", type=float, default=2.0, help="seconds of inference per CodeCarbon measurement")
    ap.add_argument("--interval", type=float, default=0.5, help="CodeCarbon sampling interval below the window")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    set_threads(1)
    profile = load_profile(args.profile)
    meter = create_meter(profile, allow_estimate=True)
    data = load_dataset("digits")
    lines = _Lines()
    results: dict[str, Any] = {"profile": profile.name, "meter": meter.name, "candidates": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, doc in CANDIDATES.items():
            torch.manual_seed(0)
            model = build_model(Architecture.from_dict(doc, name), data.input_shape, data.num_classes).eval()
            stats = model_stats(model, data.input_shape)
            batch = inference_batch(data, profile.batch_size, torch.device("cpu"))
            entry = {
                "params": stats.params,
                "macs": stats.macs,
                "ours": ours(meter, model, stats, data, profile, args.ours_repeats),
            }
            for label, interval in (("codecarbon_interval", args.interval), ("codecarbon_default", None)):
                entry[label] = summarize_cc(
                    [codecarbon_once(model, batch, args.window, interval, lines, tmp) for _ in range(args.repeats)]
                )
            results["candidates"][name] = entry
    keys = ("Tracking Method", "Falling back", "per thread", "don't know it", "constant consumption")
    methods = sorted({ln.strip() for ln in lines.lines if any(k in ln for k in keys)})
    results["codecarbon_log"] = methods
    nvml = meter_class("nvml").probe(load_profile("nvidia-h100"))
    results["nvml"] = {"usable": nvml.usable, "reason": nvml.reason}
    report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    import codecarbon

    print(
        f"profile {results['profile']} (meter: {results['meter']}); CodeCarbon {codecarbon.__version__} "
        f"OfflineEmissionsTracker, {args.repeats} measurements of {args.window:g} s windows per candidate; "
        f"ours: {args.ours_repeats} measurements per candidate"
    )
    print("| candidate | meter | energy per inference | method reported | cost per measurement | repeat spread |")
    print("|---|---|---|---|---|---|")
    for name, e in results["candidates"].items():
        o = e["ours"]
        print(
            f"| {name} ({e['params']:,} params, {e['macs']:,} MACs) | energy-nas | {o['energy_per_inference_j']:.4g} J | "
            f"`{o['method']}` | {1e6 * o['cost_s_median']:.0f} us median ({1e6 * o['cost_s_max']:.0f} us max) | "
            f"{o['spread_j']:.3g} J |"
        )
        for label, what in (
            ("codecarbon_interval", f"CodeCarbon, measure_power_secs={args.interval:g}"),
            ("codecarbon_default", "CodeCarbon, default measure_power_secs (15)"),
        ):
            c = e[label]
            print(
                f"| | {what} | {c['energy_per_inference_j']:.4g} J (CPU {c['cpu_power_w']:g} W + RAM "
                f"{c['ram_power_w']:g} W; RAM {c['ram_share']:.0%} of it) | {', '.join(c['hardware'])}, "
                f"tracking_mode={c['tracking_mode']} | {c['overhead_s_median']:.3f} s median, first {c['overhead_s_first']:.3f} s (start "
                f"{c['start_s_median']:.3f} s, stop {c['stop_s_median']:.3f} s) | {c['spread_j']:.3g} J "
                f"({c['spread_rel']:.1%} of the median) |"
            )
    print("CodeCarbon's log lines naming its method:")
    for ln in results["codecarbon_log"]:
        print(f"  {' '.join(ln.split())}")
    n = results["nvml"]
    print(f"NVML: {'usable' if n['usable'] else 'not usable here: ' + n['reason']}")


if __name__ == "__main__":
    main()
