"""Overhead: energy-nas against a bare Optuna script doing the same trials.

1. Runs `nas search` (in process, through `nas.run_search`) and reads each trial's phase breakdown
   (sample, build, measure, train, evaluate, store) from the study.
2. Runs a bare script: plain Optuna on SQLite, the same parameters enqueued in the same order, the
   same model builder and the same training loop and evaluation, and nothing else (no energy, no
   user attributes, no result files, no plot).
Reports the share of our wall time outside measure/train/evaluate and the ratio of wall times.
Targets: under 3% overhead and a ratio under 1.05.

    .venv/bin/python benchmarks/overhead.py [--space cnn --dataset mnist5k --trials 12 --epochs 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
import torch

from nas.config import load_space
from nas.data import load_dataset
from nas.models import build_model
from nas.search import SearchSettings, quiet_optuna, run_search
from nas.space import sample
from nas.train import TrainConfig, accuracy, set_threads, train

WORK = ("measure", "train", "evaluate")


def bare(params_list: list[dict], args: argparse.Namespace, storage: str) -> float:
    """Plain Optuna + the same training loop, same trials; returns wall seconds."""
    t0 = time.perf_counter()
    set_threads(1)
    space = load_space(args.space)
    data = load_dataset(args.dataset)
    study = optuna.create_study(storage=storage, directions=["maximize"], sampler=optuna.samplers.RandomSampler(0))
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
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="cnn")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    quiet_optuna()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ours"
        t0 = time.perf_counter()
        run_search(SearchSettings(space=args.space, dataset=args.dataset, trials=args.trials, epochs=args.epochs,
                                  seed=args.seed, out=str(out)))
        ours = time.perf_counter() - t0
        study = optuna.load_study(study_name="ours", storage=f"sqlite:///{out}/study.db")
        trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        phases: dict[str, float] = {}
        for t in trials:
            for k, v in t.user_attrs["phases_s"].items():
                phases[k] = phases.get(k, 0.0) + v
        base = bare([t.params for t in trials], args, f"sqlite:///{tmp}/bare.db")
    work = sum(phases.get(k, 0.0) for k in WORK)
    print(f"space={args.space} dataset={args.dataset} trials={len(trials)} epochs={args.epochs}")
    print("| phase | total s | share of our wall |")
    print("|---|---|---|")
    for k, v in phases.items():
        print(f"| {k} | {v:.3f} | {v / ours:.2%} |")
    print(f"| outside measure/train/evaluate | {ours - work:.3f} | {(ours - work) / ours:.2%} |")
    print(f"our wall {ours:.2f} s, bare script {base:.2f} s, ratio {ours / base:.3f}")


if __name__ == "__main__":
    main()
