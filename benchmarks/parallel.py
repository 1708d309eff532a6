"""Parallel workers: trials per minute with 1 and 2 local workers (SQLite) and with 1, 2 and 4
workers on a PostgreSQL server, each running the same search.

Every configuration runs `nas search ... --workers W` as a user would (a new process; with W > 1 it
starts W worker processes that share the study) until the study holds `--trials` complete trials.
Two rates are reported: over the command's whole wall time (start-up, worker start-up, imports and
writing results included) and over the trial loop (first trial's start to last trial's end, from
the study's timestamps). The PostgreSQL server is Debian's `postgresql` package, started here in a
temporary folder with its default durability settings (fsync on), as tests/test_postgres.py starts
one; as root it runs as the `postgres` user.

    .venv/bin/python benchmarks/parallel.py [--trials 60] [--epochs 3] [--space mlp] [--dataset digits]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server in a temporary folder; yields its URL (database `nas`)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        sys.exit("parallel.py: PostgreSQL server binaries not found (apt-get install postgresql)")
    bin_dir = Path(found[-1]).parent
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="nas-pg-bench-"))
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    if as_root:  # initdb refuses to run as root
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
        base.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def pg(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, cwd=base)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()}")

    pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=50"
    pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "server.log"), "-w", "start")
    try:
        pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "nas")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/nas"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
            cwd=base,
        )
        shutil.rmtree(base, ignore_errors=True)


def run(out: Path, workers: int, args: argparse.Namespace, storage: str | None, study: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "nas",
        "search",
        "--space",
        args.space,
        "--dataset",
        args.dataset,
        "--trials",
        str(args.trials),
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--workers",
        str(workers),
        "--out",
        str(out),
        "--study",
        study,
        "--quiet",
    ]
    env = {k: v for k, v in os.environ.items() if k != "NAS_STORAGE"}
    if storage:
        cmd += ["--storage", storage]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    s = optuna.load_study(study_name=study, storage=storage or f"sqlite:///{out}/study.db")
    trials = s.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    loop = (max(t.datetime_complete for t in complete) - min(t.datetime_start for t in trials)).total_seconds()
    hosts_pids = {t.user_attrs.get("pid") for t in complete}
    return {
        "workers": workers,
        "storage": "postgresql" if storage else "sqlite",
        "complete": len(complete),
        "failed": len(trials) - len(complete),
        "wall_s": wall,
        "loop_s": loop,
        "per_min_wall": 60 * len(complete) / wall,
        "per_min_loop": 60 * len(complete) / loop,
        "processes": len(hosts_pids),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--local", type=int, nargs="+", default=[1, 2], help="local worker counts (SQLite)")
    ap.add_argument("--pg", type=int, nargs="*", default=[1, 2, 4], help="worker counts on PostgreSQL (none: skip)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    # a SIGTERM must unwind too: subprocess.run then kills the running search, and postgres()
    # stops its server (the default handler would leave both running)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.local:
            rows.append(run(Path(tmp) / f"sqlite-{w}", w, args, None, f"sqlite-{w}"))
        if args.pg:
            with postgres() as url:
                for w in args.pg:
                    rows.append(run(Path(tmp) / f"pg-{w}", w, args, url, f"pg-{w}"))
    print(
        f"space={args.space} dataset={args.dataset} epochs={args.epochs} trials={args.trials} seed={args.seed}; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        "| storage | workers | complete (failed) | wall s | trials/min (wall) | trial loop s | trials/min (loop) | processes that ran trials |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['storage']} | {r['workers']} | {r['complete']} ({r['failed']}) | {r['wall_s']:.1f} | "
            f"{r['per_min_wall']:.0f} | {r['loop_s']:.1f} | {r['per_min_loop']:.0f} | {r['processes']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
