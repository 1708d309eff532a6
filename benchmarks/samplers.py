"""Sampler efficiency: hypervolume against trials for each sampler, replayed from a table.

For every sampler and seed it runs `nas search --table TABLE --sampler S --seed K --trials T` (in
process, through `nas.run_search`) and computes the hypervolume after each trial in the
accuracy-energy plane from ONE reference point shared by every run: accuracy 0 and 1.1 x the
largest energy per inference in the whole table. Each hypervolume is divided by the table's own
optimum (the hypervolume of every architecture in the table), so 1.0 means the search found the
space's whole front.

Two planes: the one `nas report` uses (energy in joules, linear), and energy on a log10 axis.
Energies in a space span orders of magnitude, so in the linear plane every model far below the
reference energy counts about the same and the hypervolume mostly measures the best accuracy
found; the log plane also rewards finding accurate models at each order of magnitude of energy.

Prints medians and spread (min, max over seeds) at fixed trial counts and checks the target: the
default sampler (tpe) reaches in N trials the median hypervolume that random search reaches in 3N.
Optionally draws the curves (median line, min-max band) to a PNG.

    .venv/bin/python benchmarks/samplers.py --table bench.json [--trials 150] [--seeds 0 1 2 3 4] \
        [--plot docs/sampler_efficiency.png]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from nas.hypervolume import ReferencePoint, hypervolume, hypervolume_2d, hypervolume_history
from nas.objectives import parse_objectives
from nas.pareto import TrialRecord
from nas.runs import trial_records
from nas.search import SearchSettings, quiet_optuna, run_search
from nas.tabular import load_table

SAMPLERS = ("tpe", "nsga2", "gp", "random")
MARGIN = 1.1
# Variants to compare with the shipped samplers (registered for this benchmark only, by name).
VARIANTS = {
    "tpe-multivariate": lambda seed: optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=10, multivariate=True, group=True),
}


def table_records(table_path: str) -> list[TrialRecord]:
    """Every architecture of the table as a record (accuracy = validation accuracy)."""
    table = load_table(table_path)
    out = []
    for i, row in enumerate(table.rows.values()):
        a = row["user_attrs"]
        out.append(TrialRecord(i, {"accuracy": a["val_accuracy"], "energy": a["energy_per_inference_j"]},
                               a["val_accuracy"], a.get("test_accuracy"), a["energy_per_inference_j"],
                               a["energy_method"], a.get("latency_s"), a["params"], a["macs"], a["architecture"]))
    return out


def log_points(records: list[TrialRecord]) -> list[tuple[float, float]]:
    """(-accuracy, log10 energy): both minimised."""
    return [(-r.accuracy, math.log10(r.energy_per_inference_j)) for r in records]


def log_history(points: list[tuple[float, float]], ref: tuple[float, float]) -> list[float]:
    """Hypervolume after each point, in order (the incremental front, as nas.hypervolume does)."""
    front: list[tuple[float, float]] = []
    hv, out = 0.0, []
    for p in points:
        if not any(q[0] <= p[0] and q[1] <= p[1] for q in front):
            front = [q for q in front if not (p[0] <= q[0] and p[1] <= q[1])] + [p]
            hv = hypervolume_2d(front, ref)
        out.append(hv)
    return out


def curve(out: Path, sampler: str, seed: int, args: argparse.Namespace, ref: ReferencePoint,
          log_ref: tuple[float, float]) -> tuple[list[float], list[float], float]:
    """Linear and log-plane hypervolume after trials 1..T of one run, and the run's wall seconds."""
    t0 = time.perf_counter()
    run_search(SearchSettings(table=args.table, sampler=sampler, seed=seed, trials=args.trials, out=str(out)))
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out}/study.db")
    records = sorted(trial_records(study, parse_objectives("accuracy,energy")), key=lambda r: r.number)
    assert len(records) == args.trials, "a replayed trial failed"
    return [h.hypervolume for h in hypervolume_history(records, ref)], log_history(log_points(records), log_ref), wall


def first_reaching(values: list[float], target: float) -> int | None:
    """The first trial count (1-based) whose value reaches `target`."""
    return next((i + 1 for i, v in enumerate(values) if v >= target * (1 - 1e-12)), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True)
    ap.add_argument("--trials", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), help=f"also: {', '.join(VARIANTS)}")
    ap.add_argument("--at", type=int, nargs="+", default=[10, 20, 30, 50, 75, 100, 150])
    ap.add_argument("--plot", default=None, help="PNG of median and min-max band per sampler")
    ap.add_argument("--json", default=None, help="also write every curve here")
    ap.add_argument("--from-json", default=None, help="print and plot the curves of an earlier --json, run nothing")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        args.trials = max(len(runs[0]) for runs in saved["curves"]["linear"].values())
        args.seeds = saved.get("seeds", args.seeds)
        show(args, saved["table_size"], ReferencePoint(**saved["reference"]), saved["optimum"], saved["curves"],
             saved["walls_s"])
        return
    from nas.search import SAMPLERS as REGISTRY

    for name in args.samplers:
        if name in VARIANTS:
            REGISTRY.setdefault(name, VARIANTS[name])
    quiet_optuna()
    for handler in logging.getLogger("optuna").handlers:  # GPSampler warns at every conditional parameter
        handler.addFilter(lambda rec: "sampled independently" not in rec.getMessage())
    everything = table_records(args.table)
    top = max(r.energy_per_inference_j for r in everything)
    ref = ReferencePoint(0.0, MARGIN * top, f"fixed for all runs: accuracy 0, {MARGIN:g} x the table's largest energy")
    log_ref = (0.0, math.log10(MARGIN * top))
    optimum = {"linear": hypervolume(everything, ref), "log": hypervolume_2d(log_points(everything), log_ref)}
    curves: dict[str, dict[str, list[list[float]]]] = {"linear": {}, "log": {}}
    walls: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in args.samplers:
            for seed in args.seeds:
                lin, log, wall = curve(Path(tmp) / f"{sampler}-{seed}", sampler, seed, args, ref, log_ref)
                curves["linear"].setdefault(sampler, []).append([v / optimum["linear"] for v in lin])
                curves["log"].setdefault(sampler, []).append([v / optimum["log"] for v in log])
                walls.setdefault(sampler, []).append(wall)
    if args.json:
        Path(args.json).write_text(json.dumps({"reference": ref.to_dict(), "optimum": optimum, "curves": curves,
                                               "walls_s": walls, "seeds": args.seeds,
                                               "table_size": len(everything)}) + "\n")
    show(args, len(everything), ref, optimum, curves, walls)


def show(args: argparse.Namespace, table_size: int, ref: ReferencePoint, optimum: dict[str, float],
         curves: dict[str, dict[str, list[list[float]]]], walls: dict[str, list[float]]) -> None:
    """Print the tables (and draw the plot) of a set of curves."""
    print(f"table {args.table}: {table_size} architectures; trials per run {args.trials}; seeds {args.seeds}")
    print(f"reference point (all runs): accuracy 0, energy {ref.energy_per_inference_j:.4g} J/inference "
          f"({MARGIN:g} x the table's largest); table optimum: {optimum['linear']:.4g} accuracy x J (linear), "
          f"{optimum['log']:.4g} accuracy x decades (log10 energy)")
    at = [n for n in args.at if n <= args.trials]
    for plane, by_sampler in curves.items():
        print(f"\n{plane} plane: hypervolume / table optimum, median [min, max] over {len(args.seeds)} seeds")
        print("| sampler | " + " | ".join(f"{n} trials" for n in at) + " | wall s per run (median) |")
        print("|---|" + "---|" * (len(at) + 1))
        for s, runs in by_sampler.items():
            cells = []
            for n in at:
                vals = [r[n - 1] for r in runs if len(r) >= n]
                cells.append(f"{statistics.median(vals):.3f} [{min(vals):.3f}, {max(vals):.3f}]" if vals else "-")
            print(f"| {s} | " + " | ".join(cells) + f" | {statistics.median(walls[s]):.1f} |")
        if "tpe" in by_sampler and "random" in by_sampler:
            med = {s: [statistics.median(r[i] for r in by_sampler[s]) for i in range(args.trials)] for s in ("tpe", "random")}
            print(f"\n{plane} plane, target: tpe in N trials >= random in 3N trials (medians)")
            print("| N | tpe at N | random at 3N | met | trials random needs to reach tpe's N-trial value |")
            print("|---|---|---|---|---|")
            for n in range(10, args.trials // 3 + 1, 10):
                need = first_reaching(med["random"], med["tpe"][n - 1])
                print(f"| {n} | {med['tpe'][n - 1]:.3f} | {med['random'][3 * n - 1]:.3f} | "
                      f"{'yes' if med['tpe'][n - 1] >= med['random'][3 * n - 1] else 'no'} | "
                      f"{need if need is not None else f'> {args.trials}'} |")
    if args.plot:
        draw(curves, args, ref, args.plot)
        print(f"plot: {args.plot}")


def draw(curves: dict[str, dict[str, list[list[float]]]], args: argparse.Namespace, ref: ReferencePoint,
         path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.6), dpi=80)
    for k, (plane, by_sampler) in enumerate(curves.items()):
        ax = fig.add_subplot(1, 2, k + 1)
        for s, runs in by_sampler.items():
            n = min(len(r) for r in runs)  # a sampler may have been run for fewer trials (gp: slow)
            xs = list(range(1, n + 1))
            med = [statistics.median(r[i] for r in runs) for i in range(n)]
            lo = [min(r[i] for r in runs) for i in range(n)]
            hi = [max(r[i] for r in runs) for i in range(n)]
            line = ax.plot(xs, med, lw=1.4, label=f"{s} (median of {len(runs)})")[0]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_xscale("log")  # the samplers part in the first tens of trials
        ax.set_ylim(0.8 if plane == "linear" else 0.4, 1.005)
        ax.set_xlabel("trials (log scale)")
        ax.set_ylabel("hypervolume / table optimum")
        energy = "energy (J)" if plane == "linear" else "log10 energy"
        ax.set_title(f"accuracy x {energy}; band: min-max over seeds", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle(f"sampler efficiency, replayed from {Path(args.table).name}; reference: accuracy 0, "
                 f"energy {ref.energy_per_inference_j:.3g} J/inference", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
