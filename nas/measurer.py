"""`nas worker --measure-only`: measuring for trainers on other machines.

`run_measurer`, started on the target device, takes the candidates that trainers of a shared study
queue (nas.remote), measures each with its own sensor in the profile's runtime
(nas.deploy.measure_candidate: the model rebuilt from genotype and seed, pruned, deployed, measured
under the device lock), and writes the record back (host, device, runtime, sensor), until the
study holds its target of complete trials.
"""

from __future__ import annotations

import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.deploy import measure_candidate
from nas.errors import ConfigError, NasError
from nas.remote import GRACE_S, POLL_S, Heartbeat, measurer_id, queue_for
from nas.runs import SETTINGS_ATTR
from nas.search.context import context_from_study
from nas.search.objective import quiet_optuna
from nas.search.settings import WorkerSettings
from nas.storage import find_study, open_storage
from nas.train import set_threads
from nas.trial_rows import count_trials


# ------------------------------------------------------------------------------ the measurer
@dataclass(frozen=True)
class MeasurerResult:
    """What a measurer did: measured candidates, those it could not measure, claims it lost."""

    study_name: str
    host: str
    meter: str
    runtime: str
    measured: int
    failed: int
    lost: int
    interrupted: bool
    wall_s: float


def _trial_running(storage: optuna.storages.BaseStorage, trial_id: int) -> bool:
    try:
        return storage.get_trial(trial_id).state == TrialState.RUNNING
    except KeyError:
        return False


def run_measurer(ms: WorkerSettings) -> MeasurerResult:
    """Measure the study's queued candidates until it holds its target of complete trials (or
    `ms.timeout_s` passes, or SIGINT/SIGTERM: the claim in flight is then handed back).

    `ms` is `nas worker --measure-only`'s settings: storage, study, threads, allow_estimate,
    claim_grace_s (default nas.remote.GRACE_S), timeout_s. Raises ConfigError for a study that
    measures its candidates itself, MeterUnavailable when this machine lacks the profile's sensor
    (unless allow_estimate), StorageError for a storage without a database."""
    ms.validate()
    quiet_optuna()
    storage = open_storage(ms.storage, heartbeat=False)  # a measurer runs no trials
    study = find_study(storage, ms.storage, ms.study_name)
    if not study.user_attrs.get(SETTINGS_ATTR, {}).get("measure_remote"):
        raise ConfigError(
            f"study {study.study_name!r} measures its candidates itself; start its search with "
            f"--measure-remote to measure them here"
        )
    overrides: dict[str, Any] = {"measure_remote": False, "allow_estimate": ms.allow_estimate, "workers": 1}
    if ms.threads is not None:
        overrides["threads"] = ms.threads
    ctx = context_from_study(study, **overrides)
    target = int(study.user_attrs[SETTINGS_ATTR].get("trials", 1))
    queue = queue_for(storage)
    grace = ms.claim_grace_s or GRACE_S
    me = measurer_id()
    set_threads(ctx.settings.threads)
    measured = failed = lost = 0
    interrupted = False
    t0 = time.monotonic()
    claim = None
    previous = {s: signal.signal(s, signal.default_int_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while ms.timeout_s is None or time.monotonic() - t0 < ms.timeout_s:
            claim = queue.claim(study.study_name, me, grace)
            if claim is None:
                if count_trials(study, TrialState.COMPLETE) >= target and queue.open_requests(study.study_name) == 0:
                    break
                time.sleep(POLL_S)
                continue
            if not _trial_running(storage, claim.trial_id):  # its trainer died: nobody waits for it
                queue.fail(claim.trial_id, me, "the trial is no longer running")
                claim = None
                continue
            with Heartbeat(queue, claim.trial_id, me, grace / 4) as beat:
                try:
                    record, _ = measure_candidate(ctx.meter, ctx.profile, ctx.data, claim.payload, ctx.settings.threads)
                except (NasError, RuntimeError, ValueError) as e:  # this candidate cannot be measured here
                    queue.fail(claim.trial_id, me, f"{e.__class__.__name__}: {e}")
                    failed += 1
                    claim = None
                    continue
            doc = {
                "energy": record.to_dict(),
                "host": ctx.host,
                "measurer": me,
                "device": record.device_name,
                "runtime": dict(record.runtime),
                "sensor": record.method,
            }
            if beat.lost.is_set() or not queue.complete(claim.trial_id, me, doc):
                lost += 1  # taken over as stale, or withdrawn by its trainer: the other result stands
            else:
                measured += 1
            claim = None
    except KeyboardInterrupt:
        interrupted = True
        if claim is not None:
            queue.release(claim.trial_id, me)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        ctx.meter.close()
    return MeasurerResult(
        study_name=study.study_name,
        host=socket.gethostname(),
        meter=ctx.meter.name,
        runtime=ctx.profile.runtime.describe(),
        measured=measured,
        failed=failed,
        lost=lost,
        interrupted=interrupted,
        wall_s=time.monotonic() - t0,
    )


def format_measurer(r: MeasurerResult) -> str:
    """The line `nas worker --measure-only` prints when done."""
    return (
        f"measurer on {r.host} ({r.meter}, runtime {r.runtime}): {r.measured} candidates measured, "
        f"{r.failed} not measurable, {r.lost} claims lost in {r.wall_s:.1f} s; study {r.study_name}"
        + ("; interrupted" if r.interrupted else "")
    )


__all__ = ["MeasurerResult", "format_measurer", "run_measurer"]
