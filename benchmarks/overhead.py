"""Overhead: `nas search` against a bare Optuna script doing the same trials, side by side.

Each repeat runs, one after the other:
1. `nas search` as a user runs it (a new process: `python -m nas search ... --quiet`), then reads
   each trial's phase breakdown (sample, build, measure, train, evaluate, store) from the study;
2. a bare script (a new process: this file with `--bare`): plain Optuna on SQLite, the parameters
   of our complete trials enqueued in the same order, the same model builder, the same seeds, the
   same training loop and the same evaluation (validation and test accuracy), and nothing else (no
   energy, no user attributes, no result files, no plot, no report).

Both walls are measured from outside the process, so interpreter start-up and imports count for
both; the trial loop (first trial's start to last trial's end, from each study's timestamps) is
given too. Reported: the share of our wall outside measure, train and evaluate (target < 3%) and
the ratio of our wall to the bare script's (target < 1.05), per repeat and as medians.

    .venv/bin/python benchmarks/overhead.py                                        # default search
    .venv/bin/python benchmarks/overhead.py --space cnn --dataset mnist5k --trials 12 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK = ("measure", "train", "evaluate")


def bare(args: argparse.Namespace) -> None:
    """The bare script: plain Optuna + the same training loop on the trials in args.bare."""
    import optuna
    import torch

    from nas.config import load_space
    from nas.data import load_dataset
    from nas.models import build_model
    from nas.space import sample
    from nas.train import TrainConfig, accuracy, set_threads, train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    set_threads(1)
    space = load_space(args.space)
    data = load_dataset(args.dataset)
    study = optuna.create_study(storage=f"sqlite:///{args.db}", study_name="bare", directions=["maximize"],
                                sampler=optuna.samplers.RandomSampler(0))
    params_list = json.loads(Path(args.bare).read_text())
    for p in params_list:
        study.enqueue_trial(p)

    def objective(trial: optuna.Trial) -> float:
        arch = sample(trial, space)
        seed = args.seed * 1_000_003 + trial.number
        torch.manual_seed(seed)
        model = build_model(arch, data.input_shape, data.num_classes)
        train(model, data, TrainConfig(args.epochs, 64, 3e-3, seed))
        accuracy(model, data.x_test, data.y_test)
        return accuracy(model, data.x_val, data.y_val)

    study.optimize(objective, n_trials=len(params_list))


def loop_s(db: Path, study_name: str) -> float:
    """First trial start to last trial completion, from the study."""
    import optuna

    trials = optuna.load_study(study_name=study_name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def one_repeat(tmp: Path, i: int, args: argparse.Namespace) -> dict:
    import optuna

    out = tmp / f"ours{i}"
    ours = timed([sys.executable, "-m", "nas", "search", "--space", args.space, "--dataset", args.dataset,
                  "--trials", str(args.trials), "--epochs", str(args.epochs), "--seed", str(args.seed),
                  "--out", str(out), "--quiet"])
    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out}/study.db")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    phases: dict[str, float] = {}
    for t in trials:
        for k, v in t.user_attrs["phases_s"].items():
            phases[k] = phases.get(k, 0.0) + v
    params = tmp / f"params{i}.json"
    params.write_text(json.dumps([t.params for t in sorted(trials, key=lambda t: t.number)]))
    db = tmp / f"bare{i}.db"
    base = timed([sys.executable, __file__, "--bare", str(params), "--db", str(db), "--space", args.space,
                  "--dataset", args.dataset, "--epochs", str(args.epochs), "--seed", str(args.seed)])
    return {"ours_s": ours, "bare_s": base, "phases": phases, "trials": len(trials),
            "ours_loop_s": loop_s(out / "study.db", out.name), "bare_loop_s": loop_s(db, "bare")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="ours/bare pairs, run alternately")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--bare", default=None, help=argparse.SUPPRESS)  # internal: run the bare script
    ap.add_argument("--db", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare:
        bare(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_repeat(Path(tmp), i, args) for i in range(args.repeats)]
    print(f"space={args.space} dataset={args.dataset} trials={args.trials} epochs={args.epochs} seed={args.seed} "
          f"repeats={args.repeats}")
    print("| repeat | our wall s | bare wall s | ratio | our trial loop s | bare trial loop s | loop ratio | outside measure/train/evaluate |")
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(runs):
        work = sum(r["phases"].get(k, 0.0) for k in WORK)
        r["outside_share"] = (r["ours_s"] - work) / r["ours_s"]
        print(f"| {i} | {r['ours_s']:.2f} | {r['bare_s']:.2f} | {r['ours_s'] / r['bare_s']:.3f} | {r['ours_loop_s']:.2f} | "
              f"{r['bare_loop_s']:.2f} | {r['ours_loop_s'] / r['bare_loop_s']:.3f} | {r['outside_share']:.1%} |")
    med = min(runs, key=lambda r: abs(r["ours_s"] / r["bare_s"] - statistics.median(x["ours_s"] / x["bare_s"] for x in runs)))
    print(f"median ratio {statistics.median(r['ours_s'] / r['bare_s'] for r in runs):.3f}, median loop ratio "
          f"{statistics.median(r['ours_loop_s'] / r['bare_loop_s'] for r in runs):.3f}, median share outside "
          f"measure/train/evaluate {statistics.median(r['outside_share'] for r in runs):.1%}")
    print(f"phases of the median repeat ({med['trials']} trials; our wall {med['ours_s']:.2f} s):")
    print("| phase | total s | share of our wall |")
    print("|---|---|---|")
    for k, v in med["phases"].items():
        print(f"| {k} | {v:.3f} | {v / med['ours_s']:.2%} |")
    rest = med["ours_s"] - sum(med["phases"].values())
    print(f"| not in any trial phase (start-up, imports, study set-up, ask/tell, results and plot) | {rest:.3f} | "
          f"{rest / med['ours_s']:.2%} |")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
