"""End to end: the CLI search on a tiny budget, its outputs, determinism, resume, errors."""

from __future__ import annotations

import csv
import json

import optuna
import pytest
from click.testing import CliRunner

from nas.cli import main
from nas.search import SearchSettings, run_search
from nas.search.settings import sampler_names

ARGS = [
    "--space",
    "mlp",
    "--profile",
    "cpu-host",
    "--dataset",
    "digits",
    "--trials",
    "6",
    "--epochs",
    "1",
    "--seed",
    "0",
    "--quiet",
]


def nas(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = nas("search", *ARGS, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "estimated:analytical" in result.output
    return out


def test_run_folder_has_every_output(run_dir):
    for name in ("study.db", "run.json", "pareto.json", "pareto.csv", "pareto.png"):
        assert (run_dir / name).is_file(), name
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["settings"]["seed"] == 0 and meta["meter"]["estimated"] is True
    assert meta["versions"]["optuna"] == optuna.__version__
    assert meta["space"]["family"] == "mlp"


def test_pareto_json_is_exactly_the_nondominated_complete_trials(run_dir):
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run_dir}/study.db")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 6
    front = json.loads((run_dir / "pareto.json").read_text())["front"]
    assert {r["trial"] for r in front} == {t.number for t in study.best_trials}
    energies = [r["energy_per_inference_j"] for r in front]
    assert energies == sorted(energies)
    by_number = {t.number: t for t in complete}
    for r in front:
        t = by_number[r["trial"]]
        assert r["accuracy"] == t.values[0] and r["energy_per_inference_j"] == t.values[1]
        assert r["energy_method"] == "estimated:analytical"
        assert r["test_accuracy"] == t.user_attrs["test_accuracy"]
    rows = list(csv.DictReader((run_dir / "pareto.csv").open()))
    assert [int(r["trial"]) for r in rows] == [r["trial"] for r in front]
    assert study.metric_names == ["val_accuracy", "energy_per_inference_j"]


def test_trials_store_what_reproduces_them(run_dir):
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run_dir}/study.db")
    t = study.trials[0]
    for key in ("architecture", "params", "macs", "latency_s", "test_accuracy", "energy", "training", "phases_s"):
        assert key in t.user_attrs, key
    assert t.user_attrs["energy"]["method"] == "estimated:analytical"
    assert {"nas.settings", "nas.space", "nas.profile", "nas.dataset"} <= set(study.user_attrs)


def test_report_and_plot_commands(run_dir, tmp_path):
    r = nas("report", str(run_dir))
    assert r.exit_code == 0 and "ESTIMATED" in r.output and "#" in r.output
    doc = json.loads(nas("report", str(run_dir), "--json").output)
    assert doc["complete"] == 6 and doc["estimated"] is True
    svg = tmp_path / "front.svg"
    r = nas("plot", str(run_dir), "-o", str(svg))
    assert r.exit_code == 0 and svg.read_text().lstrip().startswith("<?xml")


def test_same_seed_same_trials_and_resume_reaches_total(tmp_path):
    def trials(out, n):
        run_search(SearchSettings(trials=n, epochs=1, seed=7, out=str(out)))
        study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out}/study.db")
        return [(t.params, t.values) for t in study.trials]

    a = trials(tmp_path / "a", 4)
    b = trials(tmp_path / "b", 4)
    assert a == b
    resumed = trials(tmp_path / "a", 6)
    assert len(resumed) == 6 and resumed[:4] == a, "a rerun continues and keeps earlier trials"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--space", "nope"], "unknown search space 'nope'"),
        (["--sampler", "annealing"], "unknown sampler 'annealing'"),
        (["--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["--objectives", "accuracy,carbon"], "unknown objective 'carbon'"),
        (["--trials", "0"], "--trials"),
    ],
)
def test_bad_input_is_one_line_nonzero_no_traceback(tmp_path, args, needle):
    result = CliRunner().invoke(main, ["search", "--quiet", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code != 0
    assert needle in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_resume_with_other_settings_is_refused_and_keeps_the_study(run_dir):
    before = (run_dir / "study.db").read_bytes()
    result = CliRunner().invoke(main, ["search", *ARGS, "--epochs", "2", "--out", str(run_dir)])
    assert result.exit_code != 0 and "epochs" in result.output
    assert (run_dir / "study.db").read_bytes() == before


def test_report_on_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code != 0 and "not a run folder" in result.output


@pytest.mark.parametrize("sampler", sampler_names())
def test_every_sampler_runs(tmp_path, sampler):
    res = run_search(SearchSettings(trials=3, epochs=1, sampler=sampler, out=str(tmp_path / sampler)))
    assert res.complete == 3 and res.front


def test_extra_objectives(tmp_path):
    res = run_search(SearchSettings(trials=3, epochs=1, objectives=("latency", "params"), out=str(tmp_path / "o")))
    study = optuna.load_study(study_name="o", storage=f"sqlite:///{tmp_path}/o/study.db")
    assert study.metric_names == ["val_accuracy", "energy_per_inference_j", "latency_s", "params"]
    assert res.complete == 3
