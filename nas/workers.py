"""Many workers on one study: local worker processes, `nas worker` on other machines, recovery.

Every worker is a separate process that runs trials against the study's RDB storage (SQLite in the
run folder, or PostgreSQL for several machines) until the study holds the target number of complete
trials. A worker that dies loses only its trial in flight: Optuna's heartbeats let the others fail
that trial and enqueue it again (RetryHeartbeatStaleTrialCallback), and on SQLite a restarted search
does the same at once for trials whose process on this host is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.errors import ConfigError, MeterUnavailable, RunError, StorageError, TrialFault
from nas.runs import SETTINGS_ATTR, redact_url

if TYPE_CHECKING:
    from nas.energy import Meter
    from nas.runs import RunFolder
    from nas.search import SearchContext, SearchResult

# Heartbeats are written by a thread during every trial. A worker is declared dead after
# GRACE_PERIOD_S without one: long enough that a busy machine or a slow database never fails a
# live trial, short enough that a dead machine's trial is retried within a minute.
HEARTBEAT_INTERVAL_S = 5
GRACE_PERIOD_S = 60
# A trial whose worker died is run again at most this often (a candidate that kills its worker
# every time, e.g. by exhausting host memory, must not stall the search).
MAX_RETRY = 2
# Child processes get the storage URL through the environment, never on their command line,
# where any user of the machine could read the password (ps, /proc/PID/cmdline).
STORAGE_ENV = "NAS_STORAGE"
PARENT_ENV = "NAS_PARENT_PID"
# How long interrupted workers get to fail their trial in flight and exit before they are killed.
STOP_GRACE_S = 60.0

LOST = "worker_lost"
INTERRUPTED = "interrupted"


# ------------------------------------------------------------------------------ storage helpers
def _retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def heartbeat_kwargs() -> dict[str, Any]:
    """RDBStorage arguments that turn on heartbeats and the retry of trials whose worker died."""
    return {
        "heartbeat_interval": HEARTBEAT_INTERVAL_S,
        "grace_period": GRACE_PERIOD_S,
        "heartbeat_stale_trial_callback": _retry_callback(),
    }


def find_study(storage: optuna.storages.BaseStorage, url: str, study_name: str | None) -> optuna.Study:
    """The study named `study_name` in `storage` (the only one when no name is given)."""
    try:
        names = [s.study_name for s in storage.get_all_studies()]
    except Exception as e:  # a reachable server can still refuse queries (permissions)
        raise StorageError(f"storage {redact_url(url)}: cannot list studies ({e.__class__.__name__})") from None
    if study_name is None:
        if len(names) != 1:
            raise RunError(
                f"storage {redact_url(url)} holds {len(names)} studies; pick one with --study "
                f"({', '.join(names) or 'none'})"
            )
        study_name = names[0]
    if study_name not in names:
        raise RunError(f"storage {redact_url(url)}: no study named {study_name!r} (has: {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=study_name, storage=storage)


# ------------------------------------------------------------------------------ failures
def failure_reasons(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """Failed trials counted by reason.

    The objective stores a reason for every failure it sees; a failed trial without one never
    returned from its objective: its worker died and the heartbeat check failed it (worker_lost).
    """
    return dict(
        Counter(str(t.user_attrs.get("fail_reason", LOST)) for t in trials if t.state == TrialState.FAIL)
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def storage_url(study: optuna.Study) -> str:
    """The database URL behind `study` ('' for storages that have none)."""
    storage = study._storage
    return str(getattr(getattr(storage, "_backend", storage), "url", ""))


def recover_lost_trials(study: optuna.Study, host: str) -> list[int]:
    """Fail and re-enqueue running trials whose worker process on this host is gone.

    Only on SQLite storage, whose workers share one machine (hostnames can repeat across
    containers, so on a server database only heartbeats decide), and only for trials that name
    this host and a process id (set when the trial starts); the pid is checked with kill(pid, 0).
    A restarted search thus retries a SIGKILLed trial at once instead of after the grace period.
    Returns the numbers of the trials failed.
    """
    if not storage_url(study).startswith("sqlite"):
        return []
    lost = []
    for t in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or not isinstance(pid, int) or pid == os.getpid() or _pid_alive(pid):
            continue
        live = optuna.trial.Trial(study, t._trial_id)
        try:
            live.set_user_attr("fail_reason", LOST)
            live.set_user_attr("fail_message", f"worker process {pid} on {host} exited during the trial")
            study.tell(t.number, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker recovered it first
        # the retry starts clean: no fail_reason, and not the dead process's host and pid
        t.user_attrs = {k: v for k, v in t.user_attrs.items() if k not in ("host", "pid")}
        _retry_callback()(study, t)
        lost.append(t.number)
    return lost


# ------------------------------------------------------------------------------ the trial loop
def sampler_seed(seed: int, trials_before: int, worker_index: int) -> int:
    """The sampler seed of one worker: a resumed search and each worker draw differently."""
    if worker_index == 0:
        return seed + trials_before
    return int(np.random.SeedSequence([seed % 2**63, trials_before, worker_index]).generate_state(1)[0])


def run_trials(study: optuna.Study, objective: Any, timeout_s: float | None, callbacks: list[Any]) -> None:
    """study.optimize, stopped cleanly by SIGINT/SIGTERM and robust to a trial failed by another worker.

    A stop signal fails the trial in flight (reason 'interrupted') and ends the loop with
    KeyboardInterrupt, but never interrupts a database write (see _Stop). If this worker's heartbeats
    stopped for longer than the grace period (a frozen VM, a lost connection), another worker fails
    and retries its trial and Optuna refuses our result for it; the retry owns the candidate now, so
    we go on with the next trial.
    """
    stop = _Stop()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with stop.installed():
        while not stop.requested:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                study.optimize(stop.wrap(objective), timeout=left, catch=(TrialFault,), callbacks=[*callbacks, stop.callback])
                break
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as e:
                if isinstance(e, ValueError) and not str(e).startswith("Cannot tell a FAIL trial"):
                    raise
                print(f"nas: warning: another worker failed this worker's trial ({e}); going on", file=sys.stderr)
    if stop.requested:
        raise KeyboardInterrupt


def set_target(study: optuna.Study, settings: Any) -> None:
    """Store the latest target (trials, timeout) with the study, for workers that join it later."""
    stored = dict(study.user_attrs.get(SETTINGS_ATTR, {}))
    if stored and (stored.get("trials"), stored.get("timeout_s")) != (settings.trials, settings.timeout_s):
        study.set_user_attr(SETTINGS_ATTR, {**stored, "trials": settings.trials, "timeout_s": settings.timeout_s})


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
_STORAGE_CODE = tuple(f"{os.sep}{name}{os.sep}" for name in ("optuna", "sqlalchemy", "psycopg", "sqlite3"))


class _Stop:
    """SIGINT and SIGTERM as a request to stop, honoured where it is safe.

    Inside the objective (training, measuring) the handler raises KeyboardInterrupt at once, so the
    trial in flight fails with reason 'interrupted'; but never while the main thread is inside
    storage code (a commit cut in half leaves the session unusable): then it retries every 50 ms
    until the objective leaves the database. Between trials (ask, tell, callbacks) it only asks the
    loop to stop after the current tell.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = 0  # how many stop signals arrived
        self.in_objective = False
        self._code: Any = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Stop]:
        try:
            previous = {sig: signal.signal(sig, self._on_signal) for sig in (*self.SIGNALS, signal.SIGALRM)}
        except ValueError:  # not the main thread: signals cannot be handled here
            yield self
            return
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def wrap(self, objective: Any) -> Any:
        def run_objective(trial: optuna.Trial) -> Any:
            if self.requested:  # asked to stop after this trial was created
                trial.set_user_attr("fail_reason", INTERRUPTED)
                raise KeyboardInterrupt
            self.in_objective = True
            try:
                return objective(trial)
            finally:
                self.in_objective = False

        self._code = run_objective.__code__
        return run_objective

    def callback(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.requested:
            study.stop()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGALRM:
            self.requested += 1
        if not self.requested or not self.in_objective:
            return
        if self._in_storage(frame):
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            return
        raise KeyboardInterrupt

    def _in_storage(self, frame: Any) -> bool:
        while frame is not None and frame.f_code is not self._code:
            if any(part in frame.f_code.co_filename for part in _STORAGE_CODE):
                return True
            frame = frame.f_back
        return False


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
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # the parent died before prctl took effect
        raise KeyboardInterrupt


# ------------------------------------------------------------------------------ one worker
@dataclass(frozen=True)
class WorkerSettings:
    """What `nas worker` needs; everything else comes from the study."""

    storage: str
    study_name: str | None = None
    threads: int | None = None
    worker_index: int | None = None  # set by `nas search --workers`; else derived from host and pid
    trials: int | None = None  # override the study's stored target (the latest `nas search` sets it)
    timeout_s: float | None = None
    artifact_dir: str | None = None  # keep trained weights here (the run folder's, for local workers)

    def validate(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads: expected an integer >= 1, got {self.threads}")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials: expected an integer >= 1, got {self.trials}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError(f"--timeout: expected seconds > 0, got {self.timeout_s}")


@dataclass(frozen=True)
class WorkerResult:
    study_name: str
    host: str
    meter: str
    new_trials: int
    complete: int | None  # None: stopped before it could look
    failed: dict[str, int]
    interrupted: bool
    wall_s: float


def worker_context(study: optuna.Study, ws: WorkerSettings) -> SearchContext:
    """The search context stored with `study`, checked against this machine's meter."""
    from nas.energy import meter_class
    from nas.search import context_from_study

    overrides: dict[str, Any] = {"workers": 1, "progress": False}
    if ws.threads is not None:
        overrides["threads"] = ws.threads
    if ws.trials is not None:
        overrides["trials"] = ws.trials
    if ws.timeout_s is not None:
        overrides["timeout_s"] = ws.timeout_s
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
    from nas.search import open_storage, optimize, quiet_optuna

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
        study_name=study.study_name, host=ctx.host, meter=ctx.meter.name, new_trials=result.new_trials,
        complete=result.complete, failed=result.failed, interrupted=result.interrupted, wall_s=result.wall_s,
    )


# ------------------------------------------------------------------------------ local workers
def worker_command(study_name: str, index: int, ctx: SearchContext) -> list[str]:
    """The command line of local worker `index` (no credentials: the URL goes in the environment)."""
    s = ctx.settings
    cmd = [sys.executable, "-m", "nas", "worker", "--study", study_name, "--threads", str(s.threads),
           "--worker-index", str(index), "--trials", str(s.trials), "--quiet"]
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
    from nas.search import finish

    s = ctx.settings
    ctx.meter.close()  # this process only watches; the workers measure
    before = len(study.get_trials(deepcopy=False))
    env = {**os.environ, STORAGE_ENV: url, PARENT_ENV: str(os.getpid())}
    # one process per worker already uses the cores; stop each from also spawning BLAS threads
    env.setdefault("OMP_NUM_THREADS", str(s.threads))
    bar = None
    if s.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=s.trials, initial=min(_complete(study), s.trials), unit="trial", dynamic_ncols=True)
    t0 = time.perf_counter()
    procs: list[subprocess.Popen[bytes]] = []
    stop = _Stop()
    with stop.installed():
        try:
            for i in range(s.workers if _complete(study) < s.trials else 0):  # none when already done
                if stop.requested:
                    break
                procs.append(subprocess.Popen(
                    worker_command(study.study_name, i, ctx), env=env, stdout=subprocess.DEVNULL,
                    start_new_session=True,
                ))
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


def _stop_workers(procs: list[subprocess.Popen[bytes]], stop: _Stop) -> None:
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
    "check_worker_devices",
    "failure_reasons",
    "recover_lost_trials",
    "run_local_workers",
    "run_worker",
]
