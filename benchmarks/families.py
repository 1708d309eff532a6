"""Families side by side: one search over cnn, transformer, moe and ssm on the same data.

Runs `nas search --space families` (the family is a searched choice) and summarises, per family,
how many trials it got, its best validation accuracy, its lowest energy per inference, and which
of its architectures are on the accuracy-energy front.

    .venv/bin/python benchmarks/families.py [--dataset mnist5k] [--trials 40] [--epochs 2]
        [--sampler random] [--out runs/bench-families]

equals `nas search --space families --dataset mnist5k --trials 40 --epochs 2 --sampler random
--out runs/bench-families` followed by this summary (pass --summarise-only to skip the search).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import optuna

from nas.objectives import parse_objectives
from nas.pareto import pareto_front
from nas.runs import trial_records
from nas.search import SearchSettings, run_search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--sampler", default="random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench-families")
    ap.add_argument("--summarise-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.summarise_only:
        t0 = time.perf_counter()
        run_search(
            SearchSettings(
                space="families",
                dataset=args.dataset,
                trials=args.trials,
                epochs=args.epochs,
                sampler=args.sampler,
                seed=args.seed,
                out=str(out),
            )
        )
        print(f"search: {time.perf_counter() - t0:.0f} s wall")
    study = optuna.load_study(study_name=out.resolve().name, storage=f"sqlite:///{out}/study.db")
    objectives = parse_objectives("accuracy,energy")
    records = trial_records(study, objectives)
    front = {r.number for r in pareto_front(records, objectives)}
    by_family: dict[str, list] = defaultdict(list)
    for r in records:
        by_family[r.architecture["family"]].append(r)
    print("| family | trials | best val acc | lowest energy/inf | on the front (val acc, energy/inf, architecture) |")
    print("|---|---|---|---|---|")
    for fam in sorted(by_family):
        rs = by_family[fam]
        best = max(rs, key=lambda r: r.accuracy)
        low = min(rs, key=lambda r: r.energy_per_inference_j)
        on = sorted((r for r in rs if r.number in front), key=lambda r: r.energy_per_inference_j)
        members = (
            "; ".join(
                f"#{r.number} {r.accuracy:.3f}, {r.energy_per_inference_j * 1e6:.2f} uJ, {r.attrs.get('arch', '')}, {r.macs:,} MACs, {r.params:,} params"
                for r in on
            )
            or "none"
        )
        print(f"| {fam} | {len(rs)} | {best.accuracy:.3f} | {low.energy_per_inference_j * 1e6:.2f} uJ | {members} |")


if __name__ == "__main__":
    main()
