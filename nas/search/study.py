"""The search's study: created or resumed with its settings, its target, seeds per worker, and
recovery of trials whose worker died."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.errors import RunError
from nas.runs import SETTINGS_ATTR
from nas.search.context import SearchContext
from nas.search.settings import FINGERPRINT, SearchSettings, make_sampler
from nas.storage import create_or_load_study as storage_create_or_load
from nas.storage import retry_callback, storage_url

LOST = "worker_lost"  # fail_reason of a trial whose worker died (it never returned from its objective)


def create_or_load_study(ctx: SearchContext, storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """The search's study `name`: created with the context's settings stored, or resumed.

    A resumed study must have been run with the same FINGERPRINT settings and the same space file
    (RunError otherwise, saying which). Safe when several processes start at once (nas.storage).
    """
    resolved = ctx.resolved()

    def init(study: optuna.Study) -> None:
        wanted = [str(o.direction).lower() for o in ctx.objectives]
        if [d.name.lower() for d in study.directions] != wanted:
            raise RunError(
                f"study {name!r} has {len(study.directions)} objective(s) "
                f"({', '.join(d.name.lower() for d in study.directions)}), not {len(wanted)}; "
                "use another --out / --study"
            )
        if study.user_attrs.get(SETTINGS_ATTR) is None and study.get_trials(deepcopy=False):
            raise RunError(
                f"study {name!r} holds trials but was not made by energy-nas (no {SETTINGS_ATTR!r} "
                "attribute); use another --out / --study"
            )
        if study.user_attrs.get(SETTINGS_ATTR) is None:  # new: store what the numbers mean
            study.set_metric_names([o.metric for o in ctx.objectives])
            study.set_user_attr("nas.space", ctx.space_doc)
            study.set_user_attr("nas.profile", ctx.profile_doc)
            study.set_user_attr("nas.dataset", ctx.data.describe())
            study.set_user_attr(SETTINGS_ATTR, resolved)  # last: its presence marks a complete study

    study = storage_create_or_load(
        storage,
        name,
        [o.direction for o in ctx.objectives],
        make_sampler(ctx.settings.sampler, ctx.settings.seed, ctx),
        init,
    )
    stored = study.user_attrs.get(SETTINGS_ATTR)
    for key in FINGERPRINT:
        if stored.get(key) != resolved.get(key):
            raise RunError(
                f"study {name!r} was run with {key}={stored.get(key)!r}, not {resolved.get(key)!r}; "
                f"resume with the same settings, or use another --out / --study"
            )
    if stored.get("space") == resolved["space"] and study.user_attrs.get("nas.space") != ctx.space_doc:
        raise RunError(
            f"study {name!r}: the search space file changed since the study began; use another --out / --study"
        )
    return study


def set_target(study: optuna.Study, settings: SearchSettings) -> None:
    """Store the latest target (trials, timeout) with the study, for workers that join it later."""
    stored = dict(study.user_attrs.get(SETTINGS_ATTR, {}))
    if stored and (stored.get("trials"), stored.get("timeout_s")) != (settings.trials, settings.timeout_s):
        study.set_user_attr(SETTINGS_ATTR, {**stored, "trials": settings.trials, "timeout_s": settings.timeout_s})


def sampler_seed(seed: int, trials_before: int, worker_index: int) -> int:
    """The sampler seed of one worker: a resumed search and each worker draw differently."""
    if worker_index == 0:
        return seed + trials_before
    return int(np.random.SeedSequence([seed % 2**63, trials_before, worker_index]).generate_state(1)[0])


def failure_reasons(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """Failed trials counted by reason.

    The objective stores a reason for every failure it sees; a failed trial without one never
    returned from its objective: its worker died and the heartbeat check failed it (worker_lost).
    """
    return dict(Counter(str(t.user_attrs.get("fail_reason", LOST)) for t in trials if t.state == TrialState.FAIL))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


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
        retry_callback()(study, t)
        lost.append(t.number)
    return lost


__all__ = [
    "LOST",
    "create_or_load_study",
    "failure_reasons",
    "recover_lost_trials",
    "sampler_seed",
    "set_target",
]
