"""Early stopping: search energy saved and effect on the final front's hypervolume.

Runs the same search with and without `--early-stop` on a fixed set of seeds and compares the
training energy spent (as the run's meter reports it), wall time, and the hypervolume of the
final front in the accuracy-energy plane, both measured from one reference point per seed (accuracy
0, 1.1 x the largest energy per inference seen by either run).

    .venv/bin/python benchmarks/early_stop.py [--seeds 0 1 2 3 4] [--trials 30] [--epochs 6]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from nas.hypervolume import ReferencePoint, hypervolume
from nas.objectives import parse_objectives
from nas.runs import trial_records
from nas.search import SearchSettings, run_search


def one(out: Path, seed: int, args: argparse.Namespace, early: bool) -> tuple[list, float, float]:
    t0 = time.perf_counter()
    run_search(
        SearchSettings(
            space=args.space,
            dataset=args.dataset,
            trials=args.trials,
            epochs=args.epochs,
            seed=seed,
            early_stop=early,
            early_stop_k=args.k,
            out=str(out),
        )
    )
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out}/study.db")
    records = trial_records(study, parse_objectives("accuracy,energy"))
    spent = sum(t.user_attrs["training"]["energy_j"] for t in study.trials if "training" in t.user_attrs)
    return records, spent, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--dataset", default="digits")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            base, spent_b, wall_b = one(Path(tmp) / f"base{seed}", seed, args, False)
            early, spent_e, wall_e = one(Path(tmp) / f"early{seed}", seed, args, True)
            top = max(r.energy_per_inference_j for r in base + early)
            ref = ReferencePoint(0.0, 1.1 * top, "per seed: accuracy 0, 1.1 x the largest energy of both runs")
            hv_b, hv_e = hypervolume(base, ref), hypervolume(early, ref)
            stopped = sum(1 for r in early if r.attrs.get("stopped_early_at_epoch"))
            rows.append(
                (seed, spent_b, spent_e, 1 - spent_e / spent_b, hv_b, hv_e, hv_e / hv_b - 1, wall_b, wall_e, stopped)
            )
    print(f"space={args.space} dataset={args.dataset} trials={args.trials} epochs={args.epochs} k={args.k}")
    print(
        "| seed | training J (off) | training J (on) | energy saved | HV (off) | HV (on) | HV change | wall s off/on | stopped |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]:.4g} | {r[2]:.4g} | {r[3]:.1%} | {r[4]:.4g} | {r[5]:.4g} | {r[6]:+.2%} | {r[7]:.1f}/{r[8]:.1f} | {r[9]}/{args.trials} |"
        )
    saved = [r[3] for r in rows]
    change = [r[6] for r in rows]
    print(
        f"median energy saved {statistics.median(saved):.1%} (min {min(saved):.1%}, max {max(saved):.1%}); "
        f"median hypervolume change {statistics.median(change):+.2%} (min {min(change):+.2%}, max {max(change):+.2%})"
    )


if __name__ == "__main__":
    main()
