"""Many workers on one study: local worker processes, `nas worker` on other machines, recovery.

Every worker is a separate process that runs trials against the study's RDB storage (SQLite in the
run folder, or PostgreSQL for several machines) until the study holds the target number of complete
trials. A worker that dies loses only its trial in flight: Optuna's heartbeats let the others fail
that trial and enqueue it again (RetryHeartbeatStaleTrialCallback), and on SQLite a restarted search
does the same at once for trials whose process on this host is gone.

Layering: this module uses the search's loop (nas.search.loop, context, stopping) and is used by
`nas.search.run` for `--workers N`; it never imports nas.search.run. Storage: nas.storage.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from nas.energy import Meter, meter_class
from nas.errors import ConfigError, MeterUnavailable, RunError
from nas.runs import SETTINGS_ATTR, RunFolder
from nas.search.context import SearchContext, context_from_study
from nas.search.loop import SearchResult, finish, optimize
from nas.search.objective import quiet_optuna
from nas.search.settings import WorkerSettings
from nas.search.stopping import StopRequest
from nas.storage import find_study, open_storage

# Child processes get the storage URL through the environment, never on their command line,
# where any user of the machine could read the password (ps, /proc/PID/cmdline).
STORAGE_ENV = "NAS_STORAGE"
PARENT_ENV = "NAS_PARENT_PID"
# How long interrupted workers get to fail their trial in flight and exit before they are killed.
STOP_GRACE_S = 60.0


# ------------------------------------------------------------------------------ devices
def measured_devices(meter: Meter) -> int | None:
    """How many devices this meter can measure separately, or None when it measures nothing.

    An estimate computes energy from counts, so workers cannot disturb it. A sensor meter
    measures the one device its profile names, unless the backend says it has more
    (an optional `device_count()`).
    """
    if meter.name == "estimate":
        return None
    count = getattr(meter, "device_count", None)
    return int(count()) if callable(count) else 1


def check_worker_devices(ctx: SearchContext) -> None:
    """Refuse more local workers than measured devices, unless sharing is asked for."""
    s = ctx.settings
    devices = measured_devices(ctx.meter)
    if s.workers <= 1 or s.share_device or devices is None or s.workers <= devices:
        return
    raise ConfigError(
        f"--workers {s.workers}: profile {ctx.profile.name!r} measures with {ctx.meter.name} on "
        f"{devices} device(s), and workers sharing a device add their load to each other's readings "
        f"(the sensor counts the whole device, not one process); use at most {devices} worker(s), "
        f"or pass --share-device to accept that (measurement windows are then serialised by the device lock)"
    )


# ------------------------------------------------------------------------------ signals
@contextlib.contextmanager
def _signals_raise(signals: tuple[int, ...]) -> Iterator[None]:
    """`signals` raise KeyboardInterrupt (while a worker starts up, before it writes anything)."""
    try:
        previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in signals}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent() -> None:
    """When started by `nas search --workers`, get SIGTERM if that process dies (Linux)."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # the parent died before prctl took effect
        raise KeyboardInterrupt


# ------------------------------------------------------------------------------ one worker
@dataclass(frozen=True)
class WorkerResult:
    """What one worker did: its trials, the study's complete count when it stopped, seconds."""

    study_name: str
    host: str
    meter: str
    new_trials: int
    complete: int | None  # None: stopped before it could look
    failed: dict[str, int]
    interrupted: bool
    wall_s: float


def format_worker(r: WorkerResult) -> str:
    """What `nas worker` prints when done: trials run, the study's total, failures by reason."""
    failed = ", ".join(f"{k} {v}" for k, v in sorted(r.failed.items())) or "none"
    return (
        f"worker on {r.host} ({r.meter}): {r.new_trials} new trials in {r.wall_s:.1f} s; study "
        f"{r.study_name} has {r.complete} complete; failed: {failed}" + ("; interrupted" if r.interrupted else "")
    )


def worker_context(study: optuna.Study, ws: WorkerSettings) -> SearchContext:
    """The search context stored with `study`, checked against this machine's meter."""
    overrides: dict[str, Any] = {"workers": 1, "progress": False}
    if ws.threads is not None:
        overrides["threads"] = ws.threads
    if ws.trials is not None:
        overrides["trials"] = ws.trials
    if ws.timeout_s is not None:
        overrides["timeout_s"] = ws.timeout_s
    if ws.train_device is not None:
        overrides["train_device"] = ws.train_device
    ctx = context_from_study(study, **overrides)
    if ws.artifact_dir is not None:
        ctx.artifact_dir = Path(ws.artifact_dir)
    stored = study.user_attrs[SETTINGS_ATTR].get("meter")
    if stored == "estimate" and ctx.meter.name != "estimate":
        # the study's numbers are estimates; a sensor reading here would not be comparable
        ctx.meter.close()
        ctx.meter = meter_class("estimate")(ctx.profile)
    elif stored is not None and stored != ctx.meter.name:
        ctx.meter.close()
        raise MeterUnavailable(
            f"study {study.study_name!r} measures energy with {stored}, but this machine would use "
            f"{ctx.meter.name}; join from a machine with the profile's device ({ctx.profile.name!r})"
        )
    return ctx


def worker_index_for(host: str) -> int:
    """A sampler seed offset for a worker started by hand: distinct per host and process."""
    return zlib.crc32(f"{host}:{os.getpid()}".encode())


def run_worker(ws: WorkerSettings) -> WorkerResult:
    """Join the study in `ws.storage` and run trials until it holds its target of complete trials."""
    ws.validate()
    quiet_optuna()
    # SIGINT too: a worker started in the background inherits it ignored, yet `nas search
    # --workers` stops its workers with it; SIGTERM arrives when that parent dies
    with _signals_raise((signal.SIGINT, signal.SIGTERM)):
        try:
            _die_with_parent()
            storage = open_storage(ws.storage)
            study = find_study(storage, ws.storage, ws.study_name)
            ctx = worker_context(study, ws)
        except KeyboardInterrupt:  # stopped while joining: nothing ran, nothing to clean up
            return WorkerResult(ws.study_name or "", socket.gethostname(), "", 0, None, {}, True, 0.0)
    index = ws.worker_index if ws.worker_index is not None else worker_index_for(ctx.host)
    result = optimize(ctx, study, None, worker_index=index)  # handles stop signals itself
    return WorkerResult(
        study_name=study.study_name,
        host=ctx.host,
        meter=ctx.meter.name,
        new_trials=result.new_trials,
        complete=result.complete,
        failed=result.failed,
        interrupted=result.interrupted,
        wall_s=result.wall_s,
    )


# ------------------------------------------------------------------------------ local workers
def worker_command(study_name: str, index: int, ctx: SearchContext) -> list[str]:
    """The command line of local worker `index` (no credentials: the URL goes in the environment)."""
    s = ctx.settings
    cmd = [
        sys.executable,
        "-m",
        "nas",
        "worker",
        "--study",
        study_name,
        "--threads",
        str(s.threads),
        "--worker-index",
        str(index),
        "--trials",
        str(s.trials),
        "--quiet",
    ]
    if s.timeout_s is not None:
        cmd += ["--timeout", str(s.timeout_s)]
    if ctx.artifact_dir is not None:
        cmd += ["--artifact-dir", str(Path(ctx.artifact_dir).resolve())]
    return cmd


def _complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def run_local_workers(ctx: SearchContext, study: optuna.Study, run: RunFolder, url: str) -> SearchResult:
    """Run `ctx.settings.workers` worker processes on this machine, then write the results.

    Workers start in their own session, so a Ctrl-C reaches only this process, which then
    interrupts each worker once and waits for it to fail its trial in flight and exit (a second
    Ctrl-C kills them).
    """
    s = ctx.settings
    ctx.meter.close()  # this process only watches; the workers measure
    before = len(study.get_trials(deepcopy=False))
    env = {**os.environ, STORAGE_ENV: url, PARENT_ENV: str(os.getpid())}
    # one process per worker already uses the cores; stop each from also spawning BLAS threads
    env.setdefault("OMP_NUM_THREADS", str(s.threads))
    bar = None
    if s.progress:
        bar = tqdm(total=s.trials, initial=min(_complete(study), s.trials), unit="trial", dynamic_ncols=True)
    t0 = time.perf_counter()
    procs: list[subprocess.Popen[bytes]] = []
    stop = StopRequest()
    with stop.installed():
        try:
            for i in range(s.workers if _complete(study) < s.trials else 0):  # none when already done
                if stop.requested:
                    break
                procs.append(
                    subprocess.Popen(
                        worker_command(study.study_name, i, ctx),
                        env=env,
                        stdout=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            while not stop.requested and any(p.poll() is None for p in procs):
                time.sleep(0.5)
                if bar is not None:
                    bar.n = min(_complete(study), s.trials)
                    bar.refresh()
        finally:
            _stop_workers(procs, stop)
            if bar is not None:
                bar.n = min(_complete(study), s.trials)
                bar.close()
    interrupted = bool(stop.requested)
    result = finish(ctx, study, run, before, time.perf_counter() - t0, interrupted)
    bad = [p.returncode for p in procs if p.returncode not in (0, 130)]
    if bad and not interrupted:
        raise RunError(
            f"{len(bad)} of {len(procs)} workers exited with errors (exit codes {', '.join(map(str, bad))}; "
            f"see above); the results of the {result.complete} complete trials are written to {run.path}"
        )
    return result


def _stop_workers(procs: list[subprocess.Popen[bytes]], stop: StopRequest) -> None:
    """Interrupt running workers once; kill them after STOP_GRACE_S or at a second stop signal."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    signals_seen = stop.requested
    while any(p.poll() is None for p in running):
        if time.monotonic() > deadline or stop.requested > max(1, signals_seen):
            for p in running:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            break
        time.sleep(0.1)
    for p in running:
        p.wait()


__all__ = [
    "WorkerResult",
    "WorkerSettings",
    "format_worker",
    "check_worker_devices",
    "run_local_workers",
    "run_worker",
    "worker_command",
    "worker_context",
]
