"""A real PostgreSQL server (Debian's `postgresql` package) as the multi-machine storage: a search
creates the study there, two `nas worker` processes join it, and nothing is lost or duplicated.

The cluster lives in a temporary folder and is started and stopped here. initdb refuses to run as
root, so as root the server runs as the `postgres` user (runuser). Without the binaries the tests
skip, except in CI (CI=true), where they fail: scripts/ensure-postgres.sh installs the package.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from run_helpers import CNN, nondominated, run_nas, start_nas, trials

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SECRET = "pg-s3cret"  # trust authentication accepts any password: it must still never be shown


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql; scripts/ensure-postgres.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        pytest.fail("running as root needs runuser to start PostgreSQL as the postgres user")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="nas-pg-"))
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
        base.chmod(0o755)
    port = _free_port()

    def pg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, cwd=base)

    init = pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    assert init.returncode == 0, init.stderr
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "server.log"), "-w", "start")
    assert start.returncode == 0, start.stderr + (base / "server.log").read_text()
    try:
        made = pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "nas")
        assert made.returncode == 0, made.stderr
        yield f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:{port}/nas"
    finally:
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_a_search_and_two_workers_share_a_postgres_study(postgres_url, tmp_path):
    out = tmp_path / "pg-run"
    created = run_nas("search", *CNN, "--trials", "2", "--storage", postgres_url, "--study", "pg", "--out", str(out))
    assert created.returncode == 0, created.stderr
    assert len(trials(postgres_url, "pg", "COMPLETE")) == 2

    # two workers join from "other machines": only the URL (in the environment) and the study name
    workers = [
        start_nas("worker", "--study", "pg", "--trials", "12", extra_env={"NAS_STORAGE": postgres_url})
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for w, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, stderr
        assert "Traceback" not in stderr and "study pg has" in stdout

    every = trials(postgres_url, "pg")
    complete = [t for t in every if t.state.name == "COMPLETE"]
    assert all(t.state.name == "COMPLETE" for t in every), [t.state.name for t in every]
    assert 12 <= len(complete) <= 13  # each worker may finish the trial it had in flight
    numbers = sorted(t.number for t in every)
    assert numbers == list(range(len(every))), "trial numbers repeat or skip"
    trained = [t for t in complete if "duplicate_of" not in t.user_attrs]  # the rest reused a twin
    assert len({tuple(sorted(t.params.items())) for t in trained}) == len(trained), "a candidate ran twice"
    by_number = {t.number: t for t in complete}
    assert all(by_number[t.user_attrs["duplicate_of"]].params == t.params for t in complete if t not in trained)
    worker_pids = {t.user_attrs["pid"] for t in complete if t.number >= 2}
    assert len(worker_pids) == 2, "both workers should have run trials"
    assert all(t.user_attrs["host"] == socket.gethostname() and t.user_attrs["device"] for t in complete)

    report = run_nas("report", str(out), "--storage", postgres_url, "--json")
    assert report.returncode == 0, report.stderr
    front = {row["trial"] for row in json.loads(report.stdout)["front"]}
    assert front == nondominated(complete)

    # the password was never printed, nor written to the run folder
    printed = created.stdout + created.stderr + report.stdout + report.stderr + "".join(o + e for o, e in outputs)
    assert SECRET not in printed
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    meta = json.loads((out / "run.json").read_text())
    assert meta["storage_url"].startswith("postgresql+psycopg://postgres:***@127.0.0.1")
