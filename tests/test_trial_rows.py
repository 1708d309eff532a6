"""nas.trial_rows: `set_user_attrs` (one write, the same stored attributes as Optuna's per-key call),
`read_trials` and `count_trials` (the same answers as Optuna's own API)."""

from __future__ import annotations

import optuna
import pytest

from nas.storage import open_storage
from nas.trial_rows import set_user_attrs

ATTRS = {
    "arch": "mlp[64, 32] relu",
    "params": 4810,
    "energy_per_inference_j": 1.25e-7,
    "test_accuracy": None,
    "architecture": {"family": "mlp", "units": [{"width": 64}, {"width": 32}]},
    "history": [0.5, 0.75],
    "flag": True,
}


@pytest.fixture(params=["sqlite-file", "in-memory"])
def study(request, tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}") if request.param == "sqlite-file" else None
    return optuna.create_study(storage=storage, directions=["maximize", "minimize"])


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_same_attributes_as_per_key_writes(study):
    a, b = study.ask(), study.ask()
    set_user_attrs(a, ATTRS)
    for k, v in ATTRS.items():
        b.set_user_attr(k, v)
    assert a.user_attrs == ATTRS  # the live trial sees them at once
    study.tell(a, (1.0, 1.0))
    study.tell(b, (1.0, 1.0))
    fresh = optuna.load_study(study_name=study.study_name, storage=study._storage)
    stored = {t.number: t.user_attrs for t in fresh.get_trials()}
    assert stored[a.number] == stored[b.number] == ATTRS


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_overwrites_and_keeps_other_keys(study):
    t = study.ask()
    t.set_user_attr("host", "h1")
    t.set_user_attr("pid", 1)
    set_user_attrs(t, {"pid": 2, "arch": "x"})
    study.tell(t, (0.5, 0.5))
    assert study.get_trials()[-1].user_attrs == {"host": "h1", "pid": 2, "arch": "x"}


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_finished_trial_refuses_like_optuna(study):
    t = study.ask()
    study.tell(t, (0.5, 0.5))
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_user_attrs(t, {"late": 1})
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        t.set_user_attr("late", 1)
    assert study.get_trials()[-1].user_attrs == {}


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_one_statement_batch_on_sqlite(tmp_path):
    """On SQLite the whole batch is one commit (counted at the connection), not one per key."""
    from sqlalchemy import event

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=storage, directions=["maximize"])
    t = study.ask()
    commits = []
    event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    set_user_attrs(t, ATTRS)
    batched = len(commits)
    for k, v in ATTRS.items():
        t.set_user_attr(k, v)
    assert batched == 1
    assert len(commits) - batched == len(ATTRS)


@pytest.fixture(params=["sqlite-file", "in-memory"])
def mixed_study(request, tmp_path):
    """Complete (finite and infinite values, with and without constraints), failed and running trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}") if request.param == "sqlite-file" else None
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    for i in range(6):
        t = study.ask()
        t.suggest_int("width", 8, 64)
        set_user_attrs(t, {**ATTRS, "i": i})
        if i % 2:
            t.set_constraint("energy", 0.5 - i)
        study.tell(t, (0.1 * i, float("inf") if i == 3 else 1e-7 * i))
    failed = study.ask()
    failed.set_user_attr("fail_reason", "nan_loss")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    study.ask().set_user_attr("host", "h")  # left running
    return study


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_read_trials_matches_get_trials(mixed_study):
    from nas.trial_rows import read_trials

    def fields(trials):
        return [(t.number, t.state, t.values, t.user_attrs, t.constraints) for t in trials]

    assert fields(read_trials(mixed_study)) == fields(mixed_study.get_trials())
    complete = (optuna.trial.TrialState.COMPLETE,)
    assert fields(read_trials(mixed_study, complete)) == fields(mixed_study.get_trials(states=complete))
    assert {t.state for t in read_trials(mixed_study)} == {
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.FAIL,
        optuna.trial.TrialState.RUNNING,
    }
    assert read_trials(mixed_study)[3].values == [0.30000000000000004, float("inf")]
    assert read_trials(mixed_study)[1].constraints == {"energy": -0.5}


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_read_trials_reads_only_its_study(tmp_path):
    from nas.trial_rows import read_trials

    url = f"sqlite:///{tmp_path / 's.db'}"
    a = optuna.create_study(storage=open_storage(url), study_name="a")
    b = optuna.create_study(storage=open_storage(url), study_name="b")
    a.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    b.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert [t.number for t in read_trials(a)] == [0, 1, 2]
    assert [t.values for t in read_trials(b)] == [t.values for t in b.get_trials()]


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_count_trials_counts_each_state_as_optuna_lists_them(study):
    from optuna.trial import TrialState

    from nas.trial_rows import count_trials

    for i in range(7):
        t = study.ask()
        if i % 3 == 0:
            study.tell(t, state=TrialState.FAIL)
        elif i % 3 == 1:
            study.tell(t, (0.5, 1.0))
    # a second handle on the same storage sees the trials the first one wrote
    other = optuna.load_study(study_name=study.study_name, storage=study._storage)
    for state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.PRUNED):
        expected = len(study.get_trials(deepcopy=False, states=(state,)))
        assert count_trials(other, state) == expected
    assert [count_trials(study, s) for s in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)] == [2, 3, 2]
