"""A real (not replayed) search: the default space trained for real, samplers compared by hypervolume.

For each seed it runs `nas search` (in process, through `nas.run_search`: the default mlp space on
digits, 3 epochs, the cpu-host profile) with each sampler for N trials (random search also for 3N)
and computes the hypervolume of the first n trials in the accuracy-energy plane, linear and log10
energy, from one reference point per seed (accuracy 0, 1.1 x the largest energy per inference seen in
any run of that seed), as a share of the best front of all that seed's runs together (the true
optimum is unknown without training the whole space). Training energy: the sum of the trials'
`training.energy_j` (the cpu-host profile's estimate: no sensor here; repeats reused are 0 J).

    .venv/bin/python benchmarks/real_search.py --seeds 0 1 2 3 4 --trials 20 --samplers measure-first tpe random
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from nas.hypervolume import hypervolume_2d


def run(sampler: str, seed: int, trials: int, out: Path) -> dict:
    """One search; per trial (accuracy, energy J, training J) in trial order, and the wall time."""
    from nas.search import SearchSettings, run_search

    t0 = time.perf_counter()
    run_search(SearchSettings(sampler=sampler, seed=seed, trials=trials, out=str(out)))
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}")
    rows = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        training = (t.user_attrs.get("training") or {}).get("energy_j") or 0.0
        rows.append((t.values[0], t.values[1], float(training)))
    return {"trials": rows, "wall_s": wall}


def hv(points: list[tuple[float, float]], ref_e: float, log: bool) -> float:
    f = (lambda e: math.log10(e)) if log else (lambda e: e)
    return hypervolume_2d([(-a, f(e)) for a, e in points], (0.0, f(ref_e)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--samplers", nargs="+", default=["measure-first", "tpe", "random"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for s in args.samplers:
                n = 3 * args.trials if s == "random" else args.trials
                results.setdefault(s, []).append(run(s, seed, n, Path(tmp) / f"{s}-{seed}"))
                print(f"seed {seed} {s}: {results[s][-1]['wall_s']:.1f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}) + "\n")
    n = args.trials
    for log in (False, True):
        shares: dict[str, list[float]] = {}
        for k, _seed in enumerate(args.seeds):
            runs = {s: results[s][k]["trials"] for s in args.samplers}
            ref_e = 1.1 * max(e for rows in runs.values() for _, e, _ in rows)
            best = hv([(a, e) for rows in runs.values() for a, e, _ in rows], ref_e, log)
            for s, rows in runs.items():
                shares.setdefault(f"{s} at {n}", []).append(hv([(a, e) for a, e, _ in rows[:n]], ref_e, log) / best)
                if s == "random":
                    shares.setdefault(f"random at {3 * n}", []).append(
                        hv([(a, e) for a, e, _ in rows], ref_e, log) / best
                    )
        print(
            f"\n{'log10' if log else 'linear'} energy: hypervolume / best front of the seed's runs, median [min, max]"
        )
        for name, vals in shares.items():
            print(f"  {name}: {statistics.median(vals):.3f} [{min(vals):.3f}, {max(vals):.3f}]")
    print("\ntraining energy (estimate, J), median over seeds; wall s per run")
    for s in args.samplers:
        spent = [sum(t for *_, t in r["trials"][:n]) for r in results[s]]
        print(
            f"  {s} ({n} trials): {statistics.median(spent):.3g} J; {statistics.median(r['wall_s'] for r in results[s]):.1f} s"
        )
        if s == "random":
            spent3 = [sum(t for *_, t in r["trials"]) for r in results[s]]
            print(f"  random ({3 * n} trials): {statistics.median(spent3):.3g} J")


if __name__ == "__main__":
    main()
