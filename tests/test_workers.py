"""Local worker processes, `nas worker`, the device policy, and the helpers behind them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from run_helpers import CNN, MLP, nondominated, run_nas, sqlite_url, trials

from nas.cli import main
from nas.energy import Meter
from nas.errors import ConfigError, MeterUnavailable
from nas.search import SearchSettings, prepare, run_search
from nas.search.study import failure_reasons, sampler_seed
from nas.storage import HEARTBEAT_INTERVAL_S, open_storage
from nas.workers import (
    STORAGE_ENV,
    WorkerSettings,
    check_worker_devices,
    worker_command,
    worker_context,
)


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("workers") / "w2"
    # CNN candidates train for about a second each: neither worker can finish alone before the other starts
    proc = run_nas("search", *CNN, "--trials", "10", "--workers", "2", "--out", str(out))
    return out, proc


@pytest.mark.slow
def test_two_workers_share_one_study_without_lock_errors(two_worker_run):
    out, proc = two_worker_run
    assert proc.returncode == 0, proc.stderr
    assert "database is locked" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    complete = trials(sqlite_url(out), "w2", "COMPLETE")
    # the target is a study total; workers finishing their trial in flight may add one more each
    assert 10 <= len(complete) <= 11
    numbers = [t.number for t in trials(sqlite_url(out), "w2")]
    assert len(numbers) == len(set(numbers))
    # two processes, neither of them the parent, ran the trials, and each says where it ran
    pids = {t.user_attrs["pid"] for t in complete}
    assert len(pids) == 2
    assert all(t.user_attrs["host"] and t.user_attrs["device"] for t in complete)
    trained = [t for t in complete if "duplicate_of" not in t.user_attrs]  # the rest reused a twin
    assert len({tuple(sorted(t.params.items())) for t in trained}) == len(trained), "a candidate ran twice"
    by_number = {t.number: t for t in complete}
    assert all(by_number[t.user_attrs["duplicate_of"]].params == t.params for t in complete if t not in trained)


@pytest.mark.slow
def test_two_workers_write_the_true_front(two_worker_run):
    out, _ = two_worker_run
    complete = trials(sqlite_url(out), "w2", "COMPLETE")
    front = {row["trial"] for row in json.loads((out / "pareto.json").read_text())["front"]}
    assert front == nondominated(complete)
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "finished" and meta["settings"]["workers"] == 2


@pytest.mark.slow
def test_sqlite_runs_in_wal_mode(two_worker_run):
    out, _ = two_worker_run
    with sqlite3.connect(out / "study.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # workers write heartbeats, so a dead worker's trial is failed and retried by the others
        assert conn.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0] >= 10


@pytest.mark.slow
def test_worker_joins_an_existing_study_from_its_storage(two_worker_run):
    out, _ = two_worker_run
    url = sqlite_url(out)
    had = {t.number for t in trials(url, "w2", "COMPLETE")}
    # everything but the storage comes from the study; the URL comes from the environment
    proc = run_nas("worker", "--trials", str(len(had) + 2), extra_env={STORAGE_ENV: url})
    assert proc.returncode == 0, proc.stderr
    assert "study w2 has" in proc.stdout and "(estimate)" in proc.stdout, proc.stdout
    complete = trials(url, "w2", "COMPLETE")
    assert len(complete) == len(had) + 2
    new = [t for t in complete if t.number not in had]
    assert len({t.user_attrs["pid"] for t in new}) == 1
    assert all(t.user_attrs["energy_method"] == "estimated:analytical" and t.user_attrs["host"] for t in new)
    # the worker ran the study's settings: same space family and epochs as the search
    assert all(t.user_attrs["architecture"]["family"] == "cnn" for t in new)
    assert all(t.user_attrs["training"]["epochs"] == 1 for t in new)


def cli(*args: str, **env: str):
    return CliRunner(env=env).invoke(main, list(args))


def test_worker_needs_a_storage_and_names_missing_studies(tmp_path):
    result = cli("worker")
    assert result.exit_code == 2 and "--storage" in result.output and result.exception is not None
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(storage=url, study_name="someone-elses")
    result = cli("worker", "--storage", url, "--study", "nope")
    assert result.exit_code == 5, result.output
    assert "no study named 'nope'" in result.stderr and "someone-elses" in result.stderr
    result = cli("worker", NAS_STORAGE=url)  # the URL from the environment
    assert result.exit_code == 5 and "not created by energy-nas" in result.stderr


HAMMER = """
import sys, optuna
from nas.storage import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
study = optuna.load_study(study_name="hammer", storage=open_storage(sys.argv[1]),
                          sampler=optuna.samplers.RandomSampler(int(sys.argv[2])))
def objective(trial):
    trial.set_user_attr("worker", sys.argv[2])
    return trial.suggest_float("x", 0, 1), trial.suggest_int("y", 0, 9)
study.optimize(objective, n_trials=40)
"""


@pytest.mark.slow
def test_four_processes_hammering_one_sqlite_study_never_hit_a_lock(tmp_path):
    """Trials far shorter than real ones, so the processes write almost continuously."""
    url = f"sqlite:///{tmp_path / 'hammer.db'}"
    optuna.create_study(storage=open_storage(url), study_name="hammer", directions=["minimize", "minimize"])
    procs = [
        subprocess.Popen([sys.executable, "-c", HAMMER, url, str(i)], stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert not any("locked" in e for e in errors), errors
    done = optuna.load_study(study_name="hammer", storage=url).get_trials()
    assert len(done) == 160 and all(t.state.name == "COMPLETE" for t in done)
    assert sorted(t.number for t in done) == list(range(160))


# ------------------------------------------------------------------------------ the device policy
class _FakeSensor(Meter):
    """A sensor meter at the library seam: only its name and device count matter here."""

    name = "rapl"

    def __init__(self, profile, devices: int | None = None) -> None:
        super().__init__(profile)
        self.devices = devices

    def measure_inference(self, workload):  # pragma: no cover - never measures
        raise AssertionError

    def begin_window(self) -> None:  # pragma: no cover
        raise AssertionError

    def end_window(self, work=None):  # pragma: no cover
        raise AssertionError


@pytest.fixture
def ctx():
    return prepare(SearchSettings(trials=1, epochs=1))


def test_more_workers_than_measured_devices_is_refused_with_the_reason(ctx):
    ctx.settings = replace(ctx.settings, workers=2)
    ctx.meter = _FakeSensor(ctx.profile)
    with pytest.raises(ConfigError) as e:
        check_worker_devices(ctx)
    assert "--workers 2" in str(e.value) and "--share-device" in str(e.value) and "1 device" in str(e.value)
    ctx.settings = replace(ctx.settings, share_device=True)
    check_worker_devices(ctx)  # told to share: allowed


def test_workers_up_to_the_device_count_and_estimates_are_allowed(ctx):
    sensor = _FakeSensor(ctx.profile)
    sensor.device_count = lambda: 2  # type: ignore[attr-defined]
    ctx.settings, ctx.meter = replace(ctx.settings, workers=2, share_device=False), sensor
    check_worker_devices(ctx)
    ctx.settings = replace(ctx.settings, workers=3)
    with pytest.raises(ConfigError):
        check_worker_devices(ctx)
    ctx.meter = prepare(SearchSettings(trials=1)).meter  # the estimate: workers cannot disturb it
    check_worker_devices(ctx)


def _fake_powercap(root: Path) -> Path:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    return root


def test_cli_refuses_two_workers_on_one_rapl_package_and_creates_nothing(tmp_path):
    import threading

    root = _fake_powercap(tmp_path / "powercap")
    out = tmp_path / "run"
    stop = threading.Event()

    def live_counter() -> None:  # the probe checks that the counter moves, as a live package's does
        uj = 1_000_000
        while not stop.wait(0.005):
            uj += 5000
            tmp = root / "intel-rapl:0" / ".energy_uj"
            tmp.write_text(f"{uj}\n")
            os.replace(tmp, root / "intel-rapl:0" / "energy_uj")

    writer = threading.Thread(target=live_counter, daemon=True)
    writer.start()
    try:
        result = cli(
            "search", *MLP, "--profile", "cpu-rapl", "--workers", "2", "--out", str(out), NAS_POWERCAP_ROOT=str(root)
        )
    finally:
        stop.set()
        writer.join(5)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--share-device" in lines[0] and "rapl" in lines[0], result.stderr
    assert not out.exists()


# ------------------------------------------------------------------------------ helpers
def test_each_worker_draws_from_its_own_sampler_seed():
    seeds = {sampler_seed(0, 5, i) for i in range(50)}
    assert len(seeds) == 50
    assert sampler_seed(7, 5, 0) == 12  # worker 0 keeps the single-process seed (seed + trials so far)
    assert sampler_seed(0, 5, 3) == sampler_seed(0, 5, 3)


def test_worker_command_carries_threads_but_never_the_storage_url(ctx):
    ctx.settings = replace(ctx.settings, threads=3, trials=9, storage="postgresql+psycopg://u:secret@h/db")
    cmd = worker_command("study-x", 1, ctx)
    assert cmd[cmd.index("--threads") + 1] == "3" and cmd[cmd.index("--trials") + 1] == "9"
    assert cmd[cmd.index("--worker-index") + 1] == "1"
    assert not any("secret" in part or "://" in part for part in cmd)


def test_failure_reasons_counts_stored_reasons_and_lost_workers():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for reason in ("nan_loss", "nan_loss", "out_of_memory", None):
        t = study.ask()
        if reason:
            t.set_user_attr("fail_reason", reason)
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    study.tell(study.ask(), [0.5, 1.0])
    assert failure_reasons(study.get_trials()) == {"nan_loss": 2, "out_of_memory": 1, "worker_lost": 1}


def test_a_worker_refuses_a_study_measured_with_another_meter(tmp_path):
    result = run_search(SearchSettings(trials=1, epochs=1, out=str(tmp_path / "m")))
    url = sqlite_url(result.run.path)
    with sqlite3.connect(result.run.path / "study.db") as conn:  # a lone SQLite search skips heartbeats
        assert conn.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0] == 0
    study = optuna.load_study(study_name=result.study_name, storage=open_storage(url))
    settings = dict(study.user_attrs["nas.settings"], meter="rapl")
    study.set_user_attr("nas.settings", settings)
    with pytest.raises(MeterUnavailable) as e:
        worker_context(study, WorkerSettings(storage=url))
    assert "rapl" in str(e.value) and "estimate" in str(e.value)


def test_worker_settings_are_validated():
    for bad in (dict(threads=0), dict(trials=0), dict(timeout_s=-1.0)):
        with pytest.raises(ConfigError):
            WorkerSettings(storage="sqlite://", **bad).validate()


def test_open_storage_turns_on_heartbeats(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'h.db'}")
    assert storage.get_heartbeat_interval() == HEARTBEAT_INTERVAL_S
    assert isinstance(storage.get_heartbeat_stale_trial_callback(), optuna.storages.RetryHeartbeatStaleTrialCallback)
    assert os.path.exists(tmp_path / "h.db")
