"""Measure-first budgets and multi-objective early stopping."""

from __future__ import annotations

import optuna
import pytest

from nas.budget import Budget, EarlyStopRule, savings_summary
from nas.config import load_space
from nas.search import SearchSettings, run_search


def test_budget_violations_are_relative_excess():
    b = Budget(energy_j=2.0, latency_s=None)
    assert b.violations(1.0, 5.0) == {"energy_budget": -0.5}
    assert b.violations(3.0, 5.0)["energy_budget"] == pytest.approx(0.5)
    assert not Budget().active and Budget().violations(1, 1) == {}


def test_early_stop_rule():
    rule = EarlyStopRule(min_dominators=2)
    finished = [(1.0, [0.5, 0.8]), (2.0, [0.6, 0.9]), (5.0, [0.9, 0.95]), (1.0, [0.7])]
    # energy 3: dominated at epoch 1 by the trials at energy 1 (0.5? no), 2 (0.6) and 1 (0.7)
    assert rule.should_stop(1, 0.55, 3.0, finished)
    assert not rule.should_stop(1, 0.65, 3.0, finished)  # only the 0.7 one is better
    # the energy-5 trial is more accurate but costs more: it does not count
    assert not rule.should_stop(2, 0.85, 3.0, finished)  # only the energy-2 trial reached epoch 2 and beats it
    assert not rule.should_stop(1, 0.1, 0.5, finished)  # nothing is as cheap


def test_search_with_energy_budget_trains_no_over_budget_candidate(tmp_path):
    budget = 2e-5  # between the default space's smallest and largest networks on cpu-host
    res = run_search(
        SearchSettings(space="mlp", trials=12, epochs=1, seed=2, energy_budget_j=budget, out=str(tmp_path / "b"))
    )
    study = optuna.load_study(study_name="b", storage=f"sqlite:///{tmp_path}/b/study.db")
    over = [t for t in study.trials if t.user_attrs["energy_per_inference_j"] > budget]
    under = [t for t in study.trials if t.user_attrs["energy_per_inference_j"] <= budget]
    assert over and under, "the seed must give candidates on both sides of the budget"
    for t in over:
        assert "training" not in t.user_attrs and t.user_attrs["over_budget"] is True
        assert t.constraints["energy_budget"] > 0
        assert t.user_attrs["training_saved_j"] > 0
    for t in under:
        assert t.user_attrs["training"]["epochs"] == 1 and t.constraints["energy_budget"] <= 0
    assert all(r.energy_per_inference_j <= budget for r in res.front)
    assert res.savings["over_budget_not_trained"] == len(over)
    assert res.savings["training_energy_saved_by_budget_j"] == pytest.approx(
        sum(t.user_attrs["training_saved_j"] for t in over)
    )


def test_early_stop_keeps_partial_results(tmp_path):
    res = run_search(
        SearchSettings(
            space="mlp", trials=14, epochs=4, seed=1, early_stop=True, early_stop_k=1, out=str(tmp_path / "e")
        )
    )
    study = optuna.load_study(study_name="e", storage=f"sqlite:///{tmp_path}/e/study.db")
    stopped = [t for t in study.trials if t.user_attrs.get("stopped_early_at_epoch")]
    assert stopped, "with k=1 some candidate must be dominated early"
    for t in stopped:
        e = t.user_attrs["stopped_early_at_epoch"]
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.user_attrs["training"]["epochs"] == e < 4
        assert len(t.user_attrs["val_accuracy_history"]) == e
    full = [t for t in study.trials if not t.user_attrs.get("stopped_early_at_epoch")]
    assert all(len(t.user_attrs["val_accuracy_history"]) == 4 for t in full)
    assert res.savings["stopped_early"] == len(stopped)


def test_compress_space_front_can_hold_int8_and_pruned(tmp_path):
    assert load_space("cnn-compress").has("precision")
    res = run_search(SearchSettings(space="mlp-compress", trials=16, epochs=2, seed=0, out=str(tmp_path / "c")))
    study = optuna.load_study(study_name="c", storage=f"sqlite:///{tmp_path}/c/study.db")
    precisions = {t.user_attrs["precision"] for t in study.trials}
    assert precisions >= {"int8"} and {t.user_attrs["prune_ratio"] for t in study.trials} > {0.0}
    for t in study.trials:
        if t.user_attrs["prune_ratio"]:
            assert t.user_attrs["macs"] < t.user_attrs["macs_before_pruning"]
    assert res.front


def test_precision_the_profile_cannot_run_is_refused_before_anything_runs(tmp_path, write_yaml):
    from nas.errors import ConfigError

    text = open(load_space("mlp-compress").source).read().replace("[fp32, bf16, int8]", "[fp32, fp16]")
    with pytest.raises(ConfigError, match="'params.precision': 'fp16' does not run on profile 'cpu-host'"):
        run_search(SearchSettings(space=str(write_yaml(text)), trials=1, out=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()


def test_savings_summary_sums_by_kind():
    s = savings_summary(
        [
            {"training": {"energy_j": 2.0, "method": "m"}},
            {"over_budget": True, "training_saved_j": 5.0, "training_saved_method": "m"},
            {"training": {"energy_j": 1.0, "method": "m"}, "stopped_early_at_epoch": 1, "training_saved_j": 3.0},
        ]
    )
    assert s["training_energy_j"] == 3.0 and s["training_energy_saved_by_budget_j"] == 5.0
    assert s["training_energy_saved_by_early_stop_j"] == 3.0 and s["stopped_early"] == 1
