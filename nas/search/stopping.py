"""Stopping a search: on a signal (SIGINT/SIGTERM, never inside a database write), at the target
number of complete trials, and when candidates keep failing; `run_trials` is Optuna's loop with them."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nas.errors import TrialFault
from nas.trial_rows import count_trials

INTERRUPTED = "interrupted"  # fail_reason of a trial stopped by a signal


_STORAGE_CODE = tuple(f"{os.sep}{name}{os.sep}" for name in ("optuna", "sqlalchemy", "psycopg", "sqlite3"))


class StopRequest:
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
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT/SIGTERM (and the retry timer) while inside the block; the main thread only."""
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

    def wrap(self, objective: Callable[[optuna.Trial], Any]) -> Callable[[optuna.Trial], Any]:
        """`objective` marked as such: a stop signal inside it interrupts it (see the class)."""

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
        """An Optuna callback: stop the study after the current trial once a stop was requested."""
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


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    timeout_s: float | None,
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]],
) -> None:
    """study.optimize, stopped cleanly by SIGINT/SIGTERM and robust to a trial failed by another worker.

    A stop signal fails the trial in flight (reason 'interrupted') and ends the loop with
    KeyboardInterrupt, but never interrupts a database write (see StopRequest). If this worker's heartbeats
    stopped for longer than the grace period (a frozen VM, a lost connection), another worker fails
    and retries its trial and Optuna refuses our result for it; the retry owns the candidate now, so
    we go on with the next trial.
    """
    stop = StopRequest()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with stop.installed():
        while not stop.requested:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                study.optimize(
                    stop.wrap(objective), timeout=left, catch=(TrialFault,), callbacks=[*callbacks, stop.callback]
                )
                break
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as e:
                if isinstance(e, ValueError) and not str(e).startswith("Cannot tell a FAIL trial"):
                    raise
                print(f"nas: warning: another worker failed this worker's trial ({e}); going on", file=sys.stderr)
    if stop.requested:
        raise KeyboardInterrupt


class StopAtTarget:
    """Stop when the study holds `target` complete trials, counted in the storage after every
    trial (those of other workers too), as Optuna's MaxTrialsCallback does, but with one COUNT
    query instead of a listing of every trial (nas.trial_rows.count_trials)."""

    def __init__(self, target: int) -> None:
        self.target = target

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if count_trials(study, optuna.trial.TrialState.COMPLETE) >= self.target:
            study.stop()


class StopOnFailures:
    """Stop a search whose candidates keep failing instead of looping forever."""

    def __init__(self, limit: int) -> None:
        self.limit, self.failed, self.complete = limit, 0, 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.FAIL:
            self.failed += 1
        elif trial.state == optuna.trial.TrialState.COMPLETE:
            self.complete += 1
        if self.failed >= self.limit and self.failed > self.complete:
            study.stop()


__all__ = ["INTERRUPTED", "StopAtTarget", "StopOnFailures", "StopRequest", "run_trials"]
