"""Train on one machine, measure on another (nas.remote): a trainer process with --measure-remote
and `nas worker --measure-only` processes share a study on a real PostgreSQL server (started as
tests/test_postgres.py starts it). The measurers read a RAPL sensor (a live fake powercap tree whose
counter follows the CPU time of the measurer processes); the trainer has no sensor at all.

One measurer is killed (SIGKILL) while it holds a claim; a second one takes the stale claim over:
every trial completes with a measurer's record, nothing but the killed measurement is lost, and the
candidates over the energy budget are measured but never trained. (The queue's claims, timeouts
and option checks on SQLite, in process: tests/test_remote_queue.py.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import optuna
import pytest
import sqlalchemy as sa
from live_sensor import LivePowercap, rapl_profile
from run_helpers import NAS, REPO, env, trials, wait_for
from test_postgres import postgres_url  # noqa: F401  (the fixture: a server in a temp folder)

from nas.energy.estimate import TRAINING_METHOD  # training on a host without a sensor: wall time x active power

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Random sampling with seed 8 draws, in this order: [8, 8], [8], [2048, 2048], [8, 2048], [8],
# [2048, 2048] (checked by replaying the sampler). The two 2048-wide pairs cost about 25 times the
# MACs of the others (4.3 M against at most 0.17 M per inference), so a budget between the two
# groups splits them whatever the CPU's speed.
SPACE = """
name: mlp-remote
family: mlp
params:
  activation: {choices: [relu]}
  dropout: {choices: [0.0]}
layers:
  count: {low: 1, high: 2}
  params:
    width: {choices: [8, 2048]}
"""
BIG = [2048, 2048]
GRACE_S = "2"


def _requests(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM nas_measurement_requests"))]
    except sa.exc.ProgrammingError:  # the table does not exist yet
        return []
    finally:
        engine.dispose()


class _Procs:
    """Processes started by a test, their output in files (a full pipe would block them), all
    killed at the end whatever happens."""

    def __init__(self, folder) -> None:
        self.folder, self.procs = folder, []

    def start(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        out = open(self.folder / f"{name}.out", "w")  # noqa: SIM115 (closed in __exit__)
        err = open(self.folder / f"{name}.err", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [*NAS, *args], stdout=out, stderr=err, text=True, cwd=REPO, env=env(**(extra_env or {}))
        )
        self.procs.append((name, proc, out, err))
        return proc

    def output(self, name: str) -> tuple[str, str]:
        return ((self.folder / f"{name}.out").read_text(), (self.folder / f"{name}.err").read_text())

    def logs(self) -> str:
        return "\n".join(f"--- {n}: {self.output(n)[1][-1500:]}" for n, *_ in self.procs)

    def __enter__(self) -> _Procs:
        return self

    def __exit__(self, *exc) -> None:
        for _, proc, out, err in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            out.close()
            err.close()


def test_a_trainer_and_a_measurer_share_a_postgres_study(postgres_url, tmp_path):  # noqa: F811
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    # the measurers run in other processes, so their counter is advanced by LivePowercap's thread from
    # /proc CPU ticks (10 ms): windows of 0.25 s span many ticks and outlast a stalled thread
    profile = rapl_profile(tmp_path / "board.yaml", runtime="onnxruntime", precisions=("fp32",), window_s=0.25)
    measurers: list[int] = []
    sensor_env = {
        "NAS_STORAGE": postgres_url,
        "NAS_POWERCAP_ROOT": str(tmp_path / "powercap"),
        "NAS_LOCK_DIR": str(tmp_path / "locks"),
    }
    with LivePowercap(tmp_path / "powercap", pids=lambda: list(measurers)), _Procs(tmp_path) as procs:
        trainer = procs.start(
            "trainer",
            "search",
            "--space",
            str(space),
            "--profile",
            str(profile),
            "--trials",
            "6",
            "--epochs",
            "1",
            "--sampler",
            "random",
            "--seed",
            "8",
            "--storage",
            postgres_url,
            "--study",
            "remote",
            "--out",
            str(tmp_path / "run"),
            "--measure-remote",
            "--measure-timeout",
            "120",
            "--energy-budget",
            "2e-4",
            "--quiet",
        )
        # a measurer joins an existing study (the trainer creates it)
        wait_for(lambda: "remote" in optuna.get_all_study_names(storage=postgres_url), 120, "the trainer's study")
        first = procs.start(
            "first", "worker", "--measure-only", "--study", "remote", "--claim-grace", GRACE_S, extra_env=sensor_env
        )
        measurers.append(first.pid)
        # kill the first measurer while it holds a claim, after it delivered at least one record
        mine = f":{first.pid}:"

        def holding_a_claim():
            assert trainer.poll() is None and first.poll() is None, procs.logs()
            rows = _requests(postgres_url)
            done = [r for r in rows if r["state"] == "done" and mine in r["claimed_by"]]
            held = [r for r in rows if r["state"] == "claimed" and mine in (r["claimed_by"] or "")]
            return held if done and held else None

        held = wait_for(holding_a_claim, 120, "the first measurer to hold a claim after one record", poll_s=0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = procs.start(
            "second", "worker", "--measure-only", "--study", "remote", "--claim-grace", GRACE_S, extra_env=sensor_env
        )
        measurers.append(second.pid)
        assert trainer.wait(timeout=300) == 0, procs.logs()
        assert second.wait(timeout=120) == 0, procs.logs()
        m_out, m_err = procs.output("second")
        assert "Traceback" not in m_err, m_err

    every = trials(postgres_url, "remote")
    assert [t.state.name for t in every] == ["COMPLETE"] * 6, [
        (t.state.name, t.user_attrs.get("fail_reason")) for t in every
    ]
    rows = {r["trial_id"]: r for r in _requests(postgres_url)}
    killed = rows[held[0]["trial_id"]]
    assert killed["claims"] == 2 and f":{second.pid}:" in killed["claimed_by"], "the stale claim was taken over"
    for t in every:
        record, by = t.user_attrs["energy"], t.user_attrs["measured_by"]
        assert record["method"] == "measured:rapl" == by["sensor"] and record["energy_per_inference_j"] > 0
        assert record["runtime"]["name"] == "onnxruntime" == by["runtime"]["name"]
        assert record["host"] == socket.gethostname() == by["host"] and by["device"] == record["device_name"]
        assert by["measurer"].split(":")[1] in (str(first.pid), str(second.pid))
        assert t.user_attrs["measure_state"] == "done"
        big = t.user_attrs["architecture"]["units"] == [{"width": w} for w in BIG]
        assert t.user_attrs.get("over_budget", False) == big, (t.number, record["energy_per_inference_j"])
        if big:  # measured first, found over budget, never trained
            assert "training" not in t.user_attrs and t.values[0] == 0.0
        else:
            assert t.user_attrs["training"]["method"] == TRAINING_METHOD and t.values[0] > 0
    assert sum(t.user_attrs.get("over_budget", False) for t in every) == 2
    assert "study remote" in m_out and "measured" in m_out
