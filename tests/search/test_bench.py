"""nas.search.bench: a table built from a small space, and searches replaying it."""

from __future__ import annotations

import json

import optuna
import pytest

TINY_SPACE = """
name: tiny
family: mlp
params:
  activation: {choices: [relu, tanh]}
  dropout: {choices: [0.0]}
layers:
  count: {low: 1, high: 1}
  params:
    width: {choices: [8, 16]}
"""


@pytest.mark.slow
def test_replayed_trials_store_the_table_rows(tmp_path):
    """A replayed trial holds its table row's attributes (written in one batch), marked replayed."""
    from nas.search import SearchSettings, run_search
    from nas.search.bench import build_table
    from nas.tabular import key_of

    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    table = build_table(
        SearchSettings(space=str(space), epochs=1, objectives=("accuracy", "energy")), tmp_path / "t.json"
    )
    assert len(table.rows) == 4
    out = tmp_path / "replay"
    run_search(SearchSettings(table=str(tmp_path / "t.json"), trials=6, sampler="random", out=str(out)))
    study = optuna.load_study(study_name="replay", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 6
    by_number = {t.number: t for t in trials}
    for t in trials:
        row = table.rows[key_of(t.params)]
        assert t.values == [row["values"]["accuracy"], row["values"]["energy"]]
        if "duplicate_of" in t.user_attrs:  # 6 trials of 4 architectures: a repeat reuses its first trial
            assert by_number[t.user_attrs["duplicate_of"]].params == t.params
            continue
        expected = {k: v for k, v in row["user_attrs"].items() if k not in ("phases_s", "host")}
        assert t.user_attrs == {**json.loads(json.dumps(expected)), "replayed": True}
