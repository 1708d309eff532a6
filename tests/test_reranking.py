"""Re-ranking a finished search on another hardware profile."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nas.artifacts import load_trial_model
from nas.cli import main
from nas.config import PROFILES_DIR, load_profile
from nas.energy.estimate import EstimateMeter
from nas.errors import MeterUnavailable
from nas.models import model_stats
from nas.pareto import pareto_front
from nas.report import build_report
from nas.reranking import rerank
from nas.search import SearchSettings, run_search


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rerank") / "run"
    run_search(SearchSettings(space="mlp", trials=6, epochs=1, seed=5, out=str(out)))
    return out


def test_front_members_are_remeasured_and_written_beside_the_old_front(run):
    rep = build_report(run)
    res = rerank(run, "raspberry-pi-5", allow_estimate=True)
    target = load_profile("raspberry-pi-5")
    assert sorted(m.old.number for m in res.measured) == sorted(r.number for r in rep.front)
    for m in res.measured:
        assert m.new.accuracy == m.old.accuracy  # the same trained model
        assert m.weights.startswith("trained")
        tm = load_trial_model(run, m.old.number)
        expected = EstimateMeter(target).estimate(model_stats(tm.model, tm.input_shape), "fp32", target.batch_size)
        assert m.new.energy_per_inference_j == pytest.approx(expected.energy_per_inference_j)
        assert m.new.energy_method == "estimated:analytical"
        assert m.new.energy_per_inference_j != m.old.energy_per_inference_j
    assert [r.number for r in res.new_front] == [
        r.number for r in pareto_front([m.new for m in res.measured], rep.objectives)
    ]
    doc = json.loads((run / "rerank-raspberry-pi-5.json").read_text())
    assert doc["profile"] == "raspberry-pi-5" and doc["scope"] == "front" and doc["estimated"] is True
    assert [r["trial"] for r in doc["old_front"]] == [r.number for r in rep.front]
    assert [r["trial"] for r in doc["new_front"]] == [r.number for r in res.new_front]
    assert {r["trial"] for r in doc["measured"]} == {r.number for r in rep.front}


def test_all_remeasures_every_complete_trial(run):
    res = rerank(run, "raspberry-pi-5", all_trials=True, allow_estimate=True)
    assert len(res.measured) == 6 and res.scope == "all"
    assert {r.number for r in res.new_front} == {
        r.number for r in pareto_front([m.new for m in res.measured], build_report(run).objectives)
    }


def test_trials_whose_precision_the_profile_lacks_are_skipped_with_the_reason(run, tmp_path):
    text = (PROFILES_DIR / "cpu-host.yaml").read_text()
    text = text.replace("name: cpu-host", "name: no-fp32").replace(
        "precisions: [fp32, bf16, int8]", "precisions: [bf16]"
    )
    text = text.replace("  precision: fp32", "  precision: bf16")
    path = tmp_path / "no-fp32.yaml"
    path.write_text(text)
    res = rerank(run, path)
    assert res.measured == [] and res.new_front == []
    assert all("precision fp32 does not run on profile no-fp32" in why for why in res.skipped.values())


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="an NVIDIA driver is present")
def test_absent_sensor_needs_allow_estimate(run):
    with pytest.raises(MeterUnavailable, match="--allow-estimate"):
        rerank(run, "nvidia-l4")
    res = rerank(run, "nvidia-l4", allow_estimate=True)
    assert res.meter == "estimate" and res.methods == ["estimated:analytical"]


def test_cli_rerank_json_and_text(run):
    res = CliRunner().invoke(
        main, ["rerank", str(run), "--profile", "jetson-orin-nano", "--all", "--json", "--allow-estimate"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["scope"] == "all" and len(doc["measured"]) == 6
    res = CliRunner().invoke(main, ["rerank", str(run), "--profile", "raspberry-pi-5", "--allow-estimate"])
    assert res.exit_code == 0 and "ESTIMATED" in res.output and "new front:" in res.output
    res = CliRunner().invoke(main, ["rerank", str(run), "--profile", "no-such-profile"])
    assert res.exit_code == 2 and "unknown hardware profile 'no-such-profile'" in res.output


def test_rerank_leaves_the_study_untouched(run):
    before = [(r.number, r.energy_per_inference_j) for r in build_report(run).records]
    rerank(run, "raspberry-pi-5", all_trials=True, allow_estimate=True)
    assert [(r.number, r.energy_per_inference_j) for r in build_report(run).records] == before
