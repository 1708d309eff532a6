"""Acceptance of the operator-level estimate on measured Raspberry Pi 5 energies (docs/measurements.md).

Data: `shared/data/nb201-pi5/cifar100-onnx.csv`, all NAS-Bench-201 cells measured on a Raspberry Pi 5
in ONNX Runtime (HW-NAS-Bench-360). Isomorphic cells share one measurement there, so only the 6,466
measured representatives (`arch_idx == rep_arch_idx`) are used: the other rows repeat a measurement
of a different network graph.

1. Choose 20 networks reproducibly, spread over energy: sort the representatives by measured energy
   (ties by index), cut them into 20 equal bins and take the median network of each (ranks
   floor((i + 0.5) x n / 20), i = 0..19). The midpoints keep the single cheapest and dearest
   measurements, the likeliest outliers, out of a 20-network fit.
2. `nas profiles calibrate raspberry-pi-5 --from train20.csv --runtime onnxruntime --num-classes 100`.
3. `nas estimate --profile CALIBRATED --from others.csv --num-classes 100` on the other 6,446.
4. Baselines on the same split: the uncalibrated profile, and a one-coefficient fit `k x MACs`
   (least squares on relative errors over the same 20).

    python benchmarks/estimate_pi5.py [--data PATH] [--out runs/pi5-estimate] [--limit N]

Writes train20.csv, others.csv, the calibrated profile and summary.json under --out; prints the
figures. `--limit N` estimates only the first N others (a quick look).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nas.calibrate import calibrate_from_csv
from nas.config import load_profile
from nas.fitting import Quality
from nas.measurements import GraphCache, estimate_networks

# `../shared/data/nb201-pi5/` beside the checkout (a worktree one level deeper finds it too)
DATA = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[k] / "shared" / "data" / "nb201-pi5" / "cifar100-onnx.csv" for k in (2, 3)
        )
        if p.exists()
    ),
    Path("../shared/data/nb201-pi5/cifar100-onnx.csv"),
)


def split(data: Path, out: Path, limit: int | None) -> tuple[Path, Path, int]:
    """Write train20.csv and others.csv (architecture, energy_j, num_classes); returns their paths and n."""
    with data.open() as f:
        rows = [r for r in csv.DictReader(f) if r["arch_idx"] == r["rep_arch_idx"]]
    rows.sort(key=lambda r: (float(r["energy_j"]), int(r["arch_idx"])))
    n = len(rows)
    chosen = {int((i + 0.5) * n / 20) for i in range(20)}
    train = [rows[i] for i in sorted(chosen)]
    others = [r for i, r in enumerate(rows) if i not in chosen]
    others.sort(key=lambda r: int(r["arch_idx"]))  # input order: the benchmark's index
    if limit:
        others = others[:limit]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, subset in (("train20.csv", train), ("others.csv", others)):
        path = out / name
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["architecture", "energy_j", "num_classes", "arch_idx"])
            for r in subset:
                w.writerow([r["arch_str"], r["energy_j"], 100, r["arch_idx"]])
        paths.append(path)
    return paths[0], paths[1], n


def main() -> int:
    """Run the acceptance check and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/pi5-estimate"))
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    train, others, n = split(a.data, a.out, a.limit)
    t0 = time.perf_counter()
    calibrated_path = a.out / "raspberry-pi-5-onnxruntime.yaml"
    cache = GraphCache()
    cal = calibrate_from_csv(
        "raspberry-pi-5", train, calibrated_path, runtime="onnxruntime", num_classes=100, cache=cache
    )
    t_cal = time.perf_counter() - t0
    t0 = time.perf_counter()
    calibrated = load_profile(calibrated_path)
    rows = estimate_networks(calibrated, csv_path=others, num_classes=100, cache=cache)
    t_est = time.perf_counter() - t0
    measured = [r.measured_j for r in rows]
    estimate = Quality.of([r.estimate.energy_per_inference_j for r in rows], measured)
    prior_rows = estimate_networks(
        load_profile("raspberry-pi-5"), csv_path=others, num_classes=100, runtime="onnxruntime", cache=cache
    )
    prior = Quality.of([r.estimate.energy_per_inference_j for r in prior_rows], measured)
    ratio = float(np.median([r.estimate.energy_per_inference_j / r.measured_j for r in prior_rows]))
    # one coefficient: energy = k x MACs, least squares on relative errors over the same 20
    train_rows = estimate_networks(load_profile("raspberry-pi-5"), csv_path=train, num_classes=100, cache=cache)
    macs_t = np.array([r.estimate.macs for r in train_rows], float)
    y_t = np.array([r.measured_j for r in train_rows])
    k = float(np.sum(macs_t / y_t) / np.sum((macs_t / y_t) ** 2))
    kmacs = Quality.of([k * r.estimate.macs for r in rows], measured)
    summary = {
        "data": str(a.data),
        "representatives": n,
        "train": 20,
        "others": len(rows),
        "calibration": cal.to_dict()["cross_validation"],
        "coefficients": {c.name: c.after for c in cal.coefficients},
        "estimate_on_others": estimate.to_dict(),
        "uncalibrated_on_others": {**prior.to_dict(), "median_ratio": ratio},
        "k_macs_on_others": {**kmacs.to_dict(), "k_j_per_mac": k},
        "seconds": {"calibrate": round(t_cal, 1), "estimate": round(t_est, 1)},
    }
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"representatives {n}; calibrated on 20 ({train}), estimated {len(rows)} others ({others})")
    print(f"calibration, 5-fold held out on the 20: {cal.held_out.describe()}")
    print(f"calibrated estimate on the others:      {estimate.describe()}")
    print(f"uncalibrated profile on the others:     {prior.describe()}; median estimate/measured {ratio:.2f}")
    print(f"k x MACs fitted on the same 20:         {kmacs.describe()} (k = {k:.3e} J/MAC)")
    print("coefficients: " + ", ".join(f"{c.name} {c.after:.3g}" for c in cal.coefficients))
    print(f"time: calibrate {t_cal:.0f} s, estimate {t_est:.0f} s")
    ok = estimate.within_10pct >= 0.90 and estimate.spearman >= 0.97
    print("acceptance (>= 90% within +-10%, Spearman >= 0.97):", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
