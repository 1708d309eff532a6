"""Overhead: `nas search` against a bare Optuna script doing the same trials, side by side.

Each repeat runs, one after the other:
1. `nas search` as a user runs it (a new process: `python -m nas search ... --quiet`), then reads
   each trial's phase breakdown (sample, build, measure, train, evaluate, store) from the study;
2. a bare script (a new process: this file with `--bare`): plain Optuna on SQLite with the same
   sampler (TPE, n_startup_trials=10, the same seed) and directions, the same model builder, seeds,
   training loop and evaluation (validation and test accuracy); its second objective is our
   trial's energy per inference, read from our study (measuring is the work, not overhead), so
   the sampler sees the same values and draws the same trials, which the script checks. Nothing
   else: no energy meter, no user attributes, no weights, no result files, no plot, no report.
   (`--bare-mode enqueue` runs the earlier variant: our parameters enqueued, no sampling at all.)

Both walls are measured from outside the process, so interpreter start-up and imports count for
both. Reported: the share of our wall outside measure, train and evaluate (target < 3%) and the
ratio of our wall to the bare script's (target < 1.05), per repeat and as medians. On a shared
machine the same training can take 20% longer in one process than in the next, so a "normalised
ratio" is given too: 1 + (our time outside the work - the bare script's time outside the work) /
the bare script's wall, i.e. the ratio had both spent the same time training and evaluating.

    .venv/bin/python benchmarks/overhead.py                                        # default search
    .venv/bin/python benchmarks/overhead.py --space cnn --dataset mnist5k --trials 12 --epochs 1
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK = ("measure", "train", "evaluate")


def bare(args: argparse.Namespace) -> None:
    """The bare script: plain Optuna + the same training loop, drawing the same trials as ours."""
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
    ours = json.loads(Path(args.bare).read_text())  # [{"params": ..., "energy": ...}] by trial number
    if args.bare_mode == "enqueue":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(0)
    else:
        sampler = optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=10)
    study = optuna.create_study(
        storage=f"sqlite:///{args.db}", study_name="bare", directions=["maximize", "minimize"], sampler=sampler
    )
    if args.bare_mode == "enqueue":
        for t in ours:
            study.enqueue_trial(t["params"])

    spent = {"train": 0.0, "evaluate": 0.0}  # kept in memory, written once at the end

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = sample(trial, space)
        seed = args.seed * 1_000_003 + trial.number
        torch.manual_seed(seed)
        model = build_model(arch, data.input_shape, data.num_classes)
        t0 = time.perf_counter()
        train(model, data, TrainConfig(args.epochs, 64, 3e-3, seed))
        t1 = time.perf_counter()
        accuracy(model, data.x_test, data.y_test)
        value = accuracy(model, data.x_val, data.y_val)
        spent["train"] += t1 - t0
        spent["evaluate"] += time.perf_counter() - t1
        return value, ours[trial.number]["energy"]

    importlib.import_module("torch._dynamo")  # PyTorch's one-time import, out of the timed training (as ours)
    study.optimize(objective, n_trials=len(ours))
    spent["params"] = [t.params for t in sorted(study.trials, key=lambda t: t.number)]
    spent["values"] = [t.values for t in sorted(study.trials, key=lambda t: t.number)]
    Path(f"{args.db}.phases.json").write_text(json.dumps(spent))


def loop_s(db: Path, study_name: str) -> float:
    """First trial start to last trial completion, from the study."""
    import optuna

    trials = optuna.load_study(study_name=study_name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def ours_run(tmp: Path, i: int, args: argparse.Namespace) -> tuple[float, list[dict], dict[str, float], Path]:
    """`nas search` in a new process: wall seconds, the complete trials' params, summed phases."""
    import optuna

    out = tmp / f"ours{i}"
    wall = timed(
        [
            sys.executable,
            "-m",
            "nas",
            "search",
            "--space",
            args.space,
            "--dataset",
            args.dataset,
            "--trials",
            str(args.trials),
            "--epochs",
            str(args.epochs),
            "--seed",
            str(args.seed),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out}/study.db")
    trials = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number)
    phases: dict[str, float] = {}
    for t in trials:
        for k, v in t.user_attrs["phases_s"].items():
            phases[k] = phases.get(k, 0.0) + v
    return wall, [{"params": t.params, "energy": t.values[1], "accuracy": t.values[0]} for t in trials], phases, out


def bare_run(tmp: Path, i: int, args: argparse.Namespace, params: list[dict]) -> tuple[float, dict[str, float], Path]:
    path = tmp / f"params{i}.json"
    path.write_text(json.dumps(params))
    db = tmp / f"bare{i}.db"
    wall = timed(
        [
            sys.executable,
            __file__,
            "--bare",
            str(path),
            "--db",
            str(db),
            "--bare-mode",
            args.bare_mode,
            "--space",
            args.space,
            "--dataset",
            args.dataset,
            "--epochs",
            str(args.epochs),
            "--seed",
            str(args.seed),
        ]
    )
    return wall, json.loads(Path(f"{db}.phases.json").read_text()), db


def one_repeat(tmp: Path, i: int, args: argparse.Namespace, params: list[dict] | None) -> dict:
    """One ours/bare pair; odd repeats run the bare script first (with the trials of an earlier
    repeat: the search is deterministic for a seed), so neither always runs on a warmer machine."""
    if params is None or i % 2 == 0:
        ours, got, phases, out = ours_run(tmp, i, args)
        base, bare_phases, db = bare_run(tmp, i, args, got)
    else:
        base, bare_phases, db = bare_run(tmp, i, args, params)
        ours, got, phases, out = ours_run(tmp, i, args)
    ours_work = sum(phases.get(k, 0.0) for k in WORK)
    bare_work = bare_phases["train"] + bare_phases["evaluate"]
    extra = (ours - ours_work) - (base - bare_work)  # our time outside the work, beyond the bare script's
    same = [t["params"] for t in got] == bare_phases["params"] and (params is None or got == params)
    return {
        "ours_s": ours,
        "bare_s": base,
        "phases": phases,
        "trials": len(got),
        "params": got,
        "same_trials": same,
        "bare_phases": bare_phases,
        "extra_s": extra,
        "normalised_ratio": 1 + extra / base,
        "ours_loop_s": loop_s(out / "study.db", out.name),
        "bare_loop_s": loop_s(db, "bare"),
    }


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
    ap.add_argument(
        "--bare-mode",
        choices=("sample", "enqueue"),
        default="sample",
        help="sample: the bare script samples with the same TPE sampler and seed (default); "
        "enqueue: it replays our parameters and samples nothing",
    )
    args = ap.parse_args()
    if args.bare:
        bare(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[dict] = []
        for i in range(args.repeats):
            runs.append(one_repeat(Path(tmp), i, args, runs[0]["params"] if runs else None))
    print(
        f"space={args.space} dataset={args.dataset} trials={args.trials} epochs={args.epochs} seed={args.seed} "
        f"repeats={args.repeats}"
    )
    print(
        "| repeat (first) | our wall s | bare wall s | ratio | our train+evaluate s | bare train+evaluate s | "
        "our time outside the work beyond the bare script's | normalised ratio | our share outside measure/train/evaluate | trial loop ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(runs):
        work = sum(r["phases"].get(k, 0.0) for k in WORK)
        r["outside_share"] = (r["ours_s"] - work) / r["ours_s"]
        first = "ours" if i % 2 == 0 else "bare"
        print(
            f"| {i} ({first}) | {r['ours_s']:.2f} | {r['bare_s']:.2f} | {r['ours_s'] / r['bare_s']:.3f} | "
            f"{r['phases']['train'] + r['phases']['evaluate']:.2f} | {r['bare_phases']['train'] + r['bare_phases']['evaluate']:.2f} | "
            f"{r['extra_s']:+.2f} s | {r['normalised_ratio']:.3f} | {r['outside_share']:.1%} | "
            f"{r['ours_loop_s'] / r['bare_loop_s']:.3f} |"
        )
    med = min(
        runs, key=lambda r: abs(r["ours_s"] / r["bare_s"] - statistics.median(x["ours_s"] / x["bare_s"] for x in runs))
    )
    print(
        f"median ratio {statistics.median(r['ours_s'] / r['bare_s'] for r in runs):.3f}, median normalised ratio "
        f"{statistics.median(r['normalised_ratio'] for r in runs):.3f}, median share outside "
        f"measure/train/evaluate {statistics.median(r['outside_share'] for r in runs):.1%}, median trial loop ratio "
        f"{statistics.median(r['ours_loop_s'] / r['bare_loop_s'] for r in runs):.3f}; same trials in every "
        f"repeat: {all(r['same_trials'] for r in runs)}"
    )
    print(f"phases of the median repeat ({med['trials']} trials; our wall {med['ours_s']:.2f} s):")
    print("| phase | total s | share of our wall |")
    print("|---|---|---|")
    for k, v in med["phases"].items():
        print(f"| {k} | {v:.3f} | {v / med['ours_s']:.2%} |")
    rest = med["ours_s"] - sum(med["phases"].values())
    print(
        f"| not in any trial phase (start-up, imports, study set-up, ask/tell, results and plot) | {rest:.3f} | "
        f"{rest / med['ours_s']:.2%} |"
    )
    b = med["bare_phases"]
    print(
        f"the bare script in the same repeat: train {b['train']:.3f} s, evaluate {b['evaluate']:.3f} s, "
        f"everything else {med['bare_s'] - b['train'] - b['evaluate']:.3f} s of {med['bare_s']:.2f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
