"""nas.storage: opening SQLite in WAL mode, and creating a new study database from several processes at once."""

from __future__ import annotations

import json

import optuna
import pytest

from nas.storage import open_storage


def test_sqlite_synchronous_normal_only_in_wal(tmp_path):
    """open_storage turns SQLite's per-commit sync off only where WAL keeps it safe."""
    wal = open_storage(f"sqlite:///{tmp_path / 'w.db'}")
    memory = open_storage("sqlite://")
    with wal.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    with memory.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, SQLite's default


# ------------------------------------------------------------------------------ creating a study at once
@pytest.mark.slow
def test_three_searches_started_at_once_on_a_new_run_folder_all_join_its_study(tmp_path):
    """Without the creation lock, 1-2 of 3 processes died on "table alembic_version already exists"
    or a UNIQUE constraint error while creating the new SQLite database."""
    from run_helpers import MLP, sqlite_url, start_nas

    run = tmp_path / "new-run"
    procs = [start_nas("search", "--out", str(run), "--trials", "3", *MLP) for _ in range(3)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    storage = optuna.storages.RDBStorage(sqlite_url(run))
    assert [s.study_name for s in storage.get_all_studies()] == ["new-run"]
    study = optuna.load_study(study_name="new-run", storage=storage)
    complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(complete) >= 3
    assert json.loads((run / "run.json").read_text())["study_name"] == "new-run"


def test_creation_lock_is_reentrant_and_exclusive_between_processes(tmp_path):
    import multiprocessing

    from nas.storage import creation_lock

    url = f"sqlite:///{tmp_path / 'x.db'}"
    with creation_lock(url), creation_lock(url):  # the same process may take it again
        ctx = multiprocessing.get_context("fork")
        started = ctx.Event()
        child = ctx.Process(target=_take_lock_and_exit, args=(url, started))
        child.start()
        assert started.wait(60)
        child.join(1.0)
        assert child.is_alive()  # blocked: this process holds the lock
    child.join(30)
    assert child.exitcode == 0
    assert (tmp_path / "x.db.lock").exists()


def _take_lock_and_exit(url: str, started) -> None:
    from nas.storage import creation_lock

    started.set()
    with creation_lock(url):
        pass
