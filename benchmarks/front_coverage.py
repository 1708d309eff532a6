"""Which of a table's front models a replayed search tried: where a sampler's last hypervolume goes.

For each seed it replays `nas search --table TABLE --sampler S --trials T` (in process) and prints
the table's accuracy-energy front (every architecture of the table, validation accuracy up, energy
per inference down) with each front model marked as tried or missed.

    .venv/bin/python benchmarks/front_coverage.py --table bench-large.json --sampler tpe --trials 300 --seeds 0 1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna

from nas.search import SearchSettings, quiet_optuna, run_search
from nas.tabular import key_of, load_table


def table_front(table_path: str) -> list[tuple[float, float, str, str]]:
    """(accuracy, energy, architecture, params key) of the table's front, cheapest first."""
    table = load_table(table_path)
    rows = sorted(
        ((r["values"]["accuracy"], r["values"]["energy"], r["user_attrs"]["arch"], k) for k, r in table.rows.items()),
        key=lambda p: (p[1], -p[0]),
    )
    front, best = [], float("-inf")
    for row in rows:
        if row[0] > best:
            front.append(row)
            best = row[0]
    return front


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True)
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    quiet_optuna()
    front = table_front(args.table)
    tried: dict[int, set[str]] = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            run_search(
                SearchSettings(
                    table=args.table, sampler=args.sampler, seed=seed, trials=args.trials, out=str(out), progress=False
                )
            )
            study = optuna.load_study(study_name="run", storage=f"sqlite:///{out}/study.db")
            tried[seed] = {key_of(t.params) for t in study.get_trials(deepcopy=False)}
    print(f"{args.table}: {len(front)} front models; {args.sampler}, {args.trials} trials")
    print("| accuracy | energy/inference (J) | architecture | " + " | ".join(f"seed {s}" for s in args.seeds) + " |")
    print("|---|---|---|" + "---|" * len(args.seeds))
    for acc, energy, arch, key in front:
        marks = " | ".join("tried" if key in tried[s] else "**missed**" for s in args.seeds)
        print(f"| {acc:.4f} | {energy:.3g} | {arch} | {marks} |")
    for s in args.seeds:
        print(f"seed {s}: tried {sum(f[3] in tried[s] for f in front)} of {len(front)}")


if __name__ == "__main__":
    main()
