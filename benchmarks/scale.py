"""Scale: a long replayed study, per-trial sampler + storage time, and `nas report` / `nas plot` on it.

Runs `nas search --table TABLE --sampler nsga2 --trials N` (in process, through `nas.run_search`,
SQLite storage in the run folder, as a user gets it: a lone search on SQLite runs without
heartbeats). A replayed trial does no
training: its time is the sampler plus the storage round trips (ask, suggests, user attributes,
tell) plus our callbacks. The per-trial time at trial n is the mean gap between consecutive
`datetime_complete` stamps over the `--window` trials ending at n, read back from the study; the
CPU time per trial over the same window comes from this process's CPU clock, sampled every 0.2 s
by a thread (wall time on a shared 2-vCPU machine moves with other users' load, CPU time far less).
Then it times `nas report RUN` and `nas plot RUN` as the CLI runs them (new processes, imports
included) and `nas.build_report` in process. Targets: under 30 ms per trial at 10,000 trials,
report under 3 s.

With `--bare` it runs plain Optuna instead, to separate Optuna's cost from ours: the same sampler
and seed, the same suggests (`nas.space.sample`), the same table lookups and the same SQLite
settings (WAL, synchronous=NORMAL), but no user attributes, no callbacks and no result files.

    .venv/bin/python benchmarks/scale.py --table bench.json [--trials 10000] [--at 1000 5000 10000] [--bare]

`--continue-from RUN --more K` instead continues a copy of an existing run (e.g. the 10,000-trial
one kept with `--out`) for K trials, with our search or (`--bare`) plain Optuna on the same study,
so both pay for the same stored trials.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from pathlib import Path

import optuna

from nas.search import SearchSettings, quiet_optuna, run_search

NAS = [sys.executable, "-m", "nas"]


class CpuClock:
    """Samples (wall clock, process CPU seconds) in a thread, to read CPU time between two stamps."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)

    def _run(self, period_s: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), time.process_time()))
            self._stop.wait(period_s)

    def __enter__(self) -> CpuClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), time.process_time()))

    def at(self, wall: float) -> float:
        """CPU seconds used by `wall` (linear between the samples around it)."""
        walls = [w for w, _ in self.samples]
        i = min(max(1, bisect_left(walls, wall)), len(walls) - 1)
        (w0, c0), (w1, c1) = self.samples[i - 1], self.samples[i]
        return c0 + (c1 - c0) * (wall - w0) / (w1 - w0) if w1 > w0 else c1


def completions(study: optuna.Study) -> list[float]:
    """Completion times (epoch seconds) of the study's finished trials, in order."""
    return sorted(t.datetime_complete.timestamp() for t in study.get_trials(deepcopy=False) if t.datetime_complete)


def timed(cmd: list[str], repeats: int) -> tuple[float, float]:
    """Median and minimum wall seconds of `cmd` over `repeats` runs (it must succeed)."""
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), min(walls)


def run_bare(
    args: argparse.Namespace, out: Path, study_name: str = "bare", n_trials: int | None = None
) -> optuna.Study:
    """Plain Optuna on the table: what the search does per trial minus everything of ours.
    Creates the study `study_name` in out/study.db, or continues it if it is there."""
    from nas.search import SAMPLERS, SearchSettings, prepare
    from nas.space import sample
    from nas.storage import _sqlite_wal, _WalConnection

    ctx = prepare(SearchSettings(table=args.table))
    out.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{out}/study.db"
    _sqlite_wal(url)
    storage = optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"timeout": 60, "factory": _WalConnection}}
    )
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=[o.direction for o in ctx.objectives],
        sampler=SAMPLERS[args.sampler](args.seed),
        load_if_exists=True,
    )
    names = [o.name for o in ctx.objectives]

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        sample(trial, ctx.space)
        values = ctx.table.lookup(trial.params)["values"]
        return tuple(values[n] for n in names)

    study.optimize(objective, n_trials=n_trials or args.trials)
    return study


def continue_run(args: argparse.Namespace, tmp: Path) -> None:
    """Continue a copy of an existing run for `--more` trials (ours, or plain Optuna with --bare) and
    print the mean time per trial over all but the first 40 of them (start-up excluded)."""
    import json as json_
    import shutil
    import sqlite3

    src = Path(args.continue_from)
    out = tmp / "continued"
    out.mkdir()
    shutil.copy(src / "run.json", out / "run.json")
    with sqlite3.connect(f"file:{src / 'study.db'}?mode=ro", uri=True) as a, sqlite3.connect(out / "study.db") as b:
        a.backup(b)
    name = json_.loads((src / "run.json").read_text())["study_name"]
    before = len(optuna.load_study(study_name=name, storage=f"sqlite:///{out}/study.db").get_trials(deepcopy=False))
    if args.bare:
        study = run_bare(args, out, name, args.more)
    else:
        run_search(
            SearchSettings(
                table=args.table,
                sampler=args.sampler,
                seed=args.seed + 1,
                out=str(out),
                study_name=name,
                trials=before + args.more,
            )
        )
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{out}/study.db")
    done = completions(study)[before + 40 :]
    what = "plain Optuna (--bare)" if args.bare else "nas search"
    print(
        f"{what} continuing {src} ({before:,} trials) for {args.more} trials: "
        f"{1e3 * (done[-1] - done[0]) / (len(done) - 1):.1f} ms per trial (mean over the last {len(done) - 1})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="a `nas bench build` table")
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--at", type=int, nargs="+", default=[1000, 5000, 10_000], help="report per-trial time here")
    ap.add_argument("--window", type=int, default=100, help="trials averaged at each point")
    ap.add_argument("--sampler", default="nsga2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="run folder to keep (default: a temporary one)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of `nas report` and `nas plot` each")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--bare", action="store_true", help="plain Optuna, for comparison (no report or plot)")
    ap.add_argument("--continue-from", default=None, metavar="RUN", help="continue a copy of this run instead")
    ap.add_argument("--more", type=int, default=300, help="trials to add with --continue-from")
    args = ap.parse_args()
    quiet_optuna()
    if args.continue_from:
        with tempfile.TemporaryDirectory() as tmp:
            continue_run(args, Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "scale")
        t0 = time.perf_counter()
        with CpuClock() as cpu:
            if args.bare:
                study = run_bare(args, out)
            else:
                result = run_search(
                    SearchSettings(
                        table=args.table, sampler=args.sampler, trials=args.trials, seed=args.seed, out=str(out)
                    )
                )
                study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{out}/study.db")
        search_s = time.perf_counter() - t0
        done = completions(study)
        gaps = [b - a for a, b in zip(done, done[1:], strict=False)]
        points = {}
        for n in args.at:
            if n > len(done) or n <= args.window:
                continue
            a, b = done[n - 1 - args.window], done[n - 1]
            window = gaps[n - 1 - args.window : n - 1]
            points[n] = {
                "mean_ms": 1e3 * (b - a) / args.window,
                "median_ms": 1e3 * statistics.median(window),
                "cpu_ms": 1e3 * (cpu.at(b) - cpu.at(a)) / args.window,
            }
        if args.bare:
            print_points(args, "plain Optuna (--bare)", len(done), search_s, points)
            return
        from nas.report import build_report

        t1 = time.perf_counter()
        build_report(out)
        in_process_s = time.perf_counter() - t1
        report_s = timed([*NAS, "report", str(out)], args.repeats)
        plot_s = timed([*NAS, "plot", str(out), "-o", str(Path(tmp) / "p.png")], args.repeats)
    print_points(args, "nas search", result.complete, search_s, points)
    print(
        f"`nas report`: {report_s[0]:.2f} s median, {report_s[1]:.2f} s best of {args.repeats} "
        f"(build_report in process {in_process_s:.2f} s)"
    )
    print(f"`nas plot`: {plot_s[0]:.2f} s median, {plot_s[1]:.2f} s best of {args.repeats}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "sampler": args.sampler,
                    "trials": result.complete,
                    "search_s": search_s,
                    "per_trial": points,
                    "report_s": report_s,
                    "plot_s": plot_s,
                    "build_report_s": in_process_s,
                    "gaps_s": gaps,
                }
            )
            + "\n"
        )


def print_points(args: argparse.Namespace, what: str, complete: int, search_s: float, points: dict) -> None:
    print(f"{what}: sampler={args.sampler} trials={complete} table={args.table} seed={args.seed} storage=sqlite")
    print(
        f"search wall {search_s:.1f} s ({1e3 * search_s / max(1, complete):.1f} ms per trial overall, "
        "including start-up and writing results)"
    )
    print(f"| trials so far | wall ms per trial (mean of last {args.window}) | median | CPU ms per trial |")
    print("|---|---|---|---|")
    for n, p in points.items():
        print(f"| {n:,} | {p['mean_ms']:.1f} | {p['median_ms']:.1f} | {p['cpu_ms']:.1f} |")


if __name__ == "__main__":
    main()
