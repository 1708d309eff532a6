"""The per-phase time breakdown: summed from each trial's `phases_s`, shown by `nas report`."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from nas.cli import main
from nas.report import PHASES, build_report, format_table, phase_breakdown, report_dict
from nas.search import SearchSettings, run_search


def test_breakdown_sums_orders_and_shares():
    attrs = [
        {"phases_s": {"store": 1.0, "sample": 0.5, "train": 6.0, "measure": 1.0, "build": 0.5}},
        {"phases_s": {"sample": 0.5, "train": 2.0, "evaluate": 1.0, "store": 1.0, "custom": 0.5}},
        {"val_accuracy": 0.9},  # a replayed or older trial without phases: not counted
    ]
    b = phase_breakdown(attrs)
    assert b.trials == 2
    assert list(b.totals_s) == ["sample", "build", "measure", "train", "evaluate", "store", "custom"]
    assert b.totals_s["sample"] == 1.0 and b.totals_s["train"] == 8.0 and b.totals_s["store"] == 2.0
    assert b.total_s == 14.0
    assert b.share("train") == pytest.approx(8 / 14)
    assert b.share("missing") == 0.0
    # measure 1 + train 8 + evaluate 1 = 10 of 14 s: 4/14 outside the work
    assert b.outside_work_share == pytest.approx(4 / 14)
    doc = b.to_dict()
    assert doc["phases"]["evaluate"] == {"total_s": 1.0, "share": pytest.approx(1 / 14)}


def test_no_phases_no_breakdown():
    assert phase_breakdown([{"replayed": True}, {}]) is None
    assert phase_breakdown([]) is None


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phases") / "run"
    run_search(SearchSettings(space="mlp", trials=3, epochs=1, seed=3, out=str(out)))
    return out


def test_report_shows_every_phase_of_a_real_search(run):
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{run / 'study.db'}")
    stored = [t.user_attrs["phases_s"] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    rep = build_report(run)
    assert rep.phases is not None and rep.phases.trials == 3
    assert list(rep.phases.totals_s) == list(PHASES)
    for phase in PHASES:
        assert rep.phases.totals_s[phase] == pytest.approx(sum(p[phase] for p in stored))
        assert rep.phases.totals_s[phase] >= 0
    assert rep.phases.totals_s["train"] > 0
    doc = report_dict(rep)
    assert doc["phases"]["trials"] == 3
    assert sum(v["share"] for v in doc["phases"]["phases"].values()) == pytest.approx(1.0)
    line = next(x for x in format_table(rep).splitlines() if x.startswith("time per phase"))
    assert "over 3 timed trials" in line and all(f"{p} " in line for p in PHASES)
    assert f"outside measure/train/evaluate {rep.phases.outside_work_share:.1%}" in line


def test_cli_report_json_has_phases(run):
    res = CliRunner().invoke(main, ["report", str(run), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["phases"]["trials"] == 3
