"""Sampler efficiency: hypervolume against trials, replayed in memory from a table of architectures.

For every sampler and seed it runs an Optuna study on in-memory storage whose objective samples an
architecture with the space's own sampling code (`nas.space.sample`: conditional parameters as in a
search) and looks its accuracy and energy up in the table: no training, no SQLite, so a 300-trial
run costs about a second plus the sampler's own time. A genotype the study has already evaluated
is looked up again but counts no training energy (as `nas search` reuses it).

Hypervolume: in the accuracy-energy plane from ONE reference point shared by every run (accuracy 0,
1.1 x the largest energy per inference in the table), divided by the table's own optimum (the
hypervolume of every architecture), so 1.0 means the search found the space's whole front. Two
planes: energy in J (linear; the plane `nas report` uses) and log10 energy.

Prints medians and spread at fixed trial counts; the target: a sampler in N trials reaches at least
random search's median in 3N, for each N; and the training energy spent (sum over distinct trained
architectures of the table's training energy) until 95% of the optimum is reached.

    .venv/bin/python benchmarks/samplers.py --table nb201-pi5.json --samplers measure-first tpe random \
        --trials 100 --random-trials 300 --seeds 0 1 2 3 4 5 6 7 8 9 --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from nas.config import parse_space
from nas.hypervolume import hypervolume_2d
from nas.search.candidates import RandomTrial, space_distributions, table_sampler
from nas.search.measure_first import MeasureFirstSampler, genotype_key
from nas.space import sample
from nas.tabular import load_table

MARGIN = 1.1
# Training cost proxy for imported tables (no training energy of their own): NAS-Bench-201 trains
# 200 epochs on 50,000 CIFAR images; a training step costs about 3 forward passes (forward,
# backward for activations and for weights), so about 3e7 inference-equivalents per network.
TRAINING_INFERENCES = 200 * 50_000 * 3
AT = (10, 20, 50, 100)


class Problem:
    """A table as a black box: sample (conditional) parameters, look up (accuracy, energy)."""

    def __init__(self, path: str) -> None:
        self.name = Path(path).name
        self.rows: dict[str, tuple[float, float, float]] = {}
        table = load_table(path)
        self.space = space = parse_space(table.space_doc, f"{path} (table space)", table.settings["space"])
        self.suggest = lambda trial: sample(trial, space)
        self.distributions = space_distributions(space)
        self.propose = lambda rng: _propose(space, rng)
        self.table_rows = [json.loads(k) for k in sorted(table.rows)]
        for key, row in table.rows.items():
            attrs = row["user_attrs"]
            training = (attrs.get("training") or {}).get("energy_j")
            if training is None:  # an imported table has no training cost: proxy, see training_note
                training = attrs["energy_per_inference_j"] * TRAINING_INFERENCES
            self.rows[genotype_key(json.loads(key))] = (
                row["values"]["accuracy"],
                row["values"]["energy"],
                float(training),
            )
        self.training_note = (
            "the table's training energy"
            if "training" in attrs
            else f"proxy: {TRAINING_INFERENCES:.3g} x energy per inference"
        )
        self._finish()

    def _finish(self) -> None:
        pts = np.array([v[:2] for v in self.rows.values()])
        self.ref_energy = MARGIN * float(pts[:, 1].max())
        self.optimum = {
            "linear": hypervolume_2d([(-a, e) for a, e in pts], (0.0, self.ref_energy)),
            "log": hypervolume_2d([(-a, math.log10(e)) for a, e in pts], (0.0, math.log10(self.ref_energy))),
        }

    def lookup(self, params: dict[str, Any]) -> tuple[float, float, float]:
        return self.rows[genotype_key(params)]

    def objective(self, trial: optuna.Trial) -> tuple[float, float]:
        self.suggest(trial)
        acc, energy, _ = self.lookup(trial.params)
        return acc, energy

    def energy(self, params: dict[str, Any]) -> float:
        return self.lookup(params)[1]


def _propose(space: Any, rng: np.random.Generator) -> dict[str, Any]:
    t = RandomTrial(rng)
    sample(t, space)  # type: ignore[arg-type]
    return t.params


def make_samplers(problem: Problem) -> dict[str, Callable[[int], optuna.samplers.BaseSampler]]:
    """Every sampler (and option set) compared, by name."""
    s = optuna.samplers
    return {
        "random": lambda seed: s.RandomSampler(seed=seed),
        "tpe": lambda seed: s.TPESampler(seed=seed, n_startup_trials=10),
        "tpe-mv": lambda seed: s.TPESampler(seed=seed, n_startup_trials=10, multivariate=True, group=True),
        "tpe-mv-s5": lambda seed: s.TPESampler(seed=seed, n_startup_trials=5, multivariate=True, group=True),
        "tpe-mv-s20": lambda seed: s.TPESampler(seed=seed, n_startup_trials=20, multivariate=True, group=True),
        "tpe-mv-cl": lambda seed: s.TPESampler(
            seed=seed, n_startup_trials=10, multivariate=True, group=True, constant_liar=True
        ),
        "gp": lambda seed: s.GPSampler(seed=seed, n_startup_trials=10),
        "nsga2-p10": lambda seed: s.NSGAIISampler(seed=seed, population_size=10),
        "nsga2-p20": lambda seed: s.NSGAIISampler(seed=seed, population_size=20),
        "nsga2-p50": lambda seed: s.NSGAIISampler(seed=seed, population_size=50),
        "nsga3-p20": lambda seed: s.NSGAIIISampler(seed=seed, population_size=20),
        "measure-first": lambda seed: table_sampler(problem.space, problem.table_rows, problem.energy, seed),
        "measure-first-before": lambda seed: table_sampler(  # the defaults before the ridge and the screen
            problem.space,
            problem.table_rows,
            problem.energy,
            seed,
            screen=False,
            surrogate="forest",
            n_startup_trials=10,
        ),
        "measure-first-noscreen": lambda seed: table_sampler(
            problem.space, problem.table_rows, problem.energy, seed, screen=False
        ),
        "measure-first-s10": lambda seed: table_sampler(
            problem.space, problem.table_rows, problem.energy, seed, n_startup_trials=10
        ),
        "measure-first-forest-s10": lambda seed: table_sampler(
            problem.space, problem.table_rows, problem.energy, seed, surrogate="forest", n_startup_trials=10
        ),
        "measure-first-whole": lambda seed: table_sampler(
            problem.space, problem.table_rows, problem.energy, seed, whole_up_to=10**6
        ),
        "measure-first-linear": lambda seed: MeasureFirstSampler(
            problem.distributions, problem.propose, problem.energy, seed=seed, energy_axis="linear"
        ),
        "measure-first-gp": lambda seed: MeasureFirstSampler(
            problem.distributions, problem.propose, problem.energy, seed=seed, surrogate="gp"
        ),
        "measure-first-stratified": lambda seed: table_sampler(
            problem.space, problem.table_rows, problem.energy, seed, startup="stratified"
        ),
        "measure-first-q20": lambda seed: MeasureFirstSampler(
            problem.distributions, problem.propose, problem.energy, seed=seed, floor_quantile=0.2
        ),
        "measure-first-log": lambda seed: MeasureFirstSampler(
            problem.distributions, problem.propose, problem.energy, seed=seed, energy_axis="log"
        ),
    }


def history(points: list[tuple[float, float]], ref: tuple[float, float]) -> list[float]:
    """Hypervolume after each (minimised, minimised) point, in order."""
    front: list[tuple[float, float]] = []
    hv, out = 0.0, []
    for p in points:
        if not any(q[0] <= p[0] and q[1] <= p[1] for q in front):
            front = [q for q in front if not (p[0] <= q[0] and p[1] <= q[1])] + [p]
            hv = hypervolume_2d(front, ref)
        out.append(hv)
    return out


def run(
    problem: Problem, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int, trials: int
) -> dict[str, Any]:
    """One replayed study: HV curves (both planes, as shares of the optimum) and training energy."""
    t0 = time.perf_counter()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=factory(seed))
    study.optimize(problem.objective, n_trials=trials)
    wall = time.perf_counter() - t0
    seen: set[str] = set()
    spent, cost, dup = 0.0, [], 0
    pts = []
    for t in study.get_trials(deepcopy=False):
        k = genotype_key(t.params)
        if k in seen:
            dup += 1
        else:
            seen.add(k)
            spent += problem.lookup(t.params)[2]
        cost.append(spent)
        pts.append((t.values[0], t.values[1]))
    lin = history([(-a, e) for a, e in pts], (0.0, problem.ref_energy))
    log = history([(-a, math.log10(e)) for a, e in pts], (0.0, math.log10(problem.ref_energy)))
    return {
        "linear": [v / problem.optimum["linear"] for v in lin],
        "log": [v / problem.optimum["log"] for v in log],
        "training_j": cost,
        "duplicates": dup,
        "wall_s": wall,
    }


def median_at(runs: list[dict[str, Any]], plane: str, n: int) -> float:
    return statistics.median(r[plane][n - 1] for r in runs)


def energy_to(runs: list[dict[str, Any]], plane: str, share: float) -> tuple[float, int]:
    """Median training energy (J) spent until `share` of the optimum, and how many runs got there
    (runs that never did count as infinite)."""
    spent = []
    for r in runs:
        i = next((i for i, v in enumerate(r[plane]) if v >= share), None)
        spent.append(r["training_j"][i] if i is not None else math.inf)
    return statistics.median(spent), sum(math.isfinite(s) for s in spent)


def show(result: dict[str, Any]) -> None:
    """Print the tables of a result (as written with --json)."""
    runs = result["runs"]
    print(
        f"table {result['table']}: {result['size']} architectures; seeds {result['seeds']}; "
        f"reference energy {result['ref_energy']:.4g} J"
    )
    base = runs.get("random")
    for plane in ("linear", "log"):
        print(f"\n{plane} plane: hypervolume / optimum, median [min, max] over seeds")
        print("| sampler | " + " | ".join(f"N={n}" for n in AT) + " | duplicates (median) | s per run |")
        print("|---|" + "---|" * (len(AT) + 2))
        for name, rs in runs.items():
            cells = []
            for n in AT:
                vals = [r[plane][n - 1] for r in rs if len(r[plane]) >= n]
                cells.append(f"{statistics.median(vals):.3f} [{min(vals):.3f}, {max(vals):.3f}]" if vals else "-")
            print(
                f"| {name} | "
                + " | ".join(cells)
                + f" | {statistics.median(r['duplicates'] for r in rs):g} | {statistics.median(r['wall_s'] for r in rs):.1f} |"
            )
        if base:
            print(f"\n{plane}: sampler at N against random at 3N (medians; met = at N >= random at 3N)")
            print("| sampler | " + " | ".join(f"N={n} (random 3N)" for n in AT if 3 * n <= len(base[0][plane])) + " |")
            print("|---|" + "---|" * sum(1 for n in AT if 3 * n <= len(base[0][plane])))
            for name, rs in runs.items():
                if name == "random":
                    continue
                cells = []
                for n in AT:
                    if 3 * n > len(base[0][plane]) or len(rs[0][plane]) < n:
                        continue
                    a, b = median_at(rs, plane, n), median_at(base, plane, 3 * n)
                    cells.append(f"{a:.3f} vs {b:.3f} {'met' if a >= b else 'no'}")
                print(f"| {name} | " + " | ".join(cells) + " |")
        print(f"\n{plane}: training energy until 95% of the optimum (median over seeds; reached by k of n)")
        for name, rs in runs.items():
            med, k = energy_to(rs, plane, 0.95)
            print(f"  {name}: {med:.4g} J ({k}/{len(rs)})")


def draw(result: dict[str, Any], path: str, names: list[str]) -> None:
    """Median curves and min-max bands for `names`, both planes, to a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.6), dpi=80)
    for k, plane in enumerate(("linear", "log")):
        ax = fig.add_subplot(1, 2, k + 1)
        for name in names:
            rs = result["runs"][name]
            n = min(len(r[plane]) for r in rs)
            xs = range(1, n + 1)
            med = [statistics.median(r[plane][i] for r in rs) for i in range(n)]
            line = ax.plot(xs, med, lw=1.4, label=f"{name} (median of {len(rs)})")[0]
            ax.fill_between(
                xs,
                [min(r[plane][i] for r in rs) for i in range(n)],
                [max(r[plane][i] for r in rs) for i in range(n)],
                color=line.get_color(),
                alpha=0.15,
                lw=0,
            )
        ax.set_xscale("log")
        ax.set_xlabel("trials (log scale)")
        ax.set_ylabel("hypervolume / table optimum")
        ax.set_ylim(0.8 if plane == "linear" else 0.6, 1.005)
        ax.set_title(f"accuracy x {'energy (J)' if plane == 'linear' else 'log10 energy'}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle(f"sampler efficiency, replayed from {result['table']} ({result['size']} architectures)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", help="a table from `nas bench build` or `nas bench import`")
    ap.add_argument("--samplers", nargs="+", default=["measure-first", "tpe", "random"])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--random-trials", type=int, default=300, help="trials for random search (3N)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--json", default=None, help="write (or, with --from-json, read) every curve here")
    ap.add_argument("--from-json", nargs="+", default=None, help="print and plot earlier --json files, run nothing")
    ap.add_argument("--plot", default=None)
    ap.add_argument("--plot-samplers", nargs="+", default=None)
    args = ap.parse_args()
    if args.from_json:
        result: dict[str, Any] = {}
        for p in args.from_json:
            part = json.loads(Path(p).read_text())
            runs = {**result.get("runs", {}), **part["runs"]}
            result = {**part, "runs": runs}
    else:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        import warnings

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        for handler in logging.getLogger("optuna").handlers:
            handler.addFilter(lambda rec: "sampled independently" not in rec.getMessage())
        problem = Problem(args.table)
        factories = make_samplers(problem)
        unknown = [s for s in args.samplers if s not in factories]
        if unknown:
            raise SystemExit(f"unknown sampler(s) {unknown}; valid: {', '.join(factories)}")
        result = {
            "table": problem.name,
            "size": len(problem.rows),
            "seeds": args.seeds,
            "ref_energy": problem.ref_energy,
            "optimum": problem.optimum,
            "runs": {},
        }
        for name in args.samplers:
            n = args.random_trials if name == "random" else args.trials
            result["runs"][name] = [run(problem, factories[name], seed, n) for seed in args.seeds]
            print(
                f"{name}: done ({statistics.median(r['wall_s'] for r in result['runs'][name]):.1f} s per run)",
                flush=True,
            )
        if args.json:
            Path(args.json).write_text(json.dumps(result) + "\n")
    show(result)
    if args.plot:
        draw(result, args.plot, args.plot_samplers or list(result["runs"]))
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
