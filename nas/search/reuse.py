"""Do not re-train what was trained: a genotype the study has already evaluated is reused.

Samplers (TPE, NSGA-II, ...) propose the same genotype again, more and more often as a search
converges on a small space: a replayed NSGA-II run on a 516-architecture table proposed its 8 front
architectures 71 times. Each repeat would train, and measure, the same network again for the same
figures. Instead the trial takes the values, constraints and attributes of the first complete trial
with the same parameters and is marked `duplicate_of` (that trial's number); training energy is
not spent again (`training.energy_j` of the copy is 0, the original's figure is kept in
`training.reused_energy_j`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import optuna

from nas.trial_rows import set_user_attrs

DUPLICATE_ATTR = "duplicate_of"
TWIN_WAIT_S = 600.0  # longest wait for an earlier RUNNING trial of the same genotype (s)
TWIN_POLL_S = 0.2  # how often that trial's state is read again (s)
_COMPLETE, _RUNNING = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING
# attributes that describe the original process's run, not the network
_NOT_COPIED = ("phases_s", "host", "pid", "fail_reason", "fail_message")


def evaluated_twin(
    study: optuna.Study, params: dict[str, Any], number: int, wait_s: float = TWIN_WAIT_S
) -> optuna.trial.FrozenTrial | None:
    """The first complete trial of `study`, other than trial `number`, with exactly `params`.

    With several workers, two of them can sample the same genotype at the same moment. The trial
    with the higher number then waits (polling every `TWIN_POLL_S` seconds, at most `wait_s`
    seconds) for a RUNNING earlier twin to finish and reuses its result; an earlier trial never
    waits for a later one, so two twins never wait for each other. Returns None when there is no
    twin, when the running twin fails, or when it is still running after `wait_s` (then this trial
    trains the network itself).
    """
    deadline = time.monotonic() + wait_s
    while True:
        running = None
        for t in study.get_trials(deepcopy=False, states=(_COMPLETE, _RUNNING)):
            if t.number == number or t.params != params or DUPLICATE_ATTR in t.user_attrs:
                continue
            if t.state == _COMPLETE:
                return t
            if t.number < number and running is None:
                running = t
        if running is None or time.monotonic() >= deadline:
            return None
        time.sleep(TWIN_POLL_S)


def reuse(trial: optuna.Trial, objective_names: Sequence[str]) -> tuple[float, ...] | None:
    """If the study already evaluated `trial`'s parameters, copy that result into `trial` and return
    its objective values (in the order of `objective_names`, which must be the study's); else None.

    Call after the trial's parameters are sampled and before anything is trained.
    """
    twin = evaluated_twin(trial.study, trial.params, trial.number)
    if twin is None or twin.values is None or len(twin.values) != len(objective_names):
        return None
    attrs = {k: v for k, v in twin.user_attrs.items() if k not in _NOT_COPIED}
    training = attrs.get("training")
    if isinstance(training, dict):
        attrs["training"] = {
            **training,
            "energy_j": 0.0,
            "net_energy_j": None,
            "duration_s": 0.0,
            "reused_energy_j": training.get("energy_j"),
        }
    attrs[DUPLICATE_ATTR] = twin.number
    for name, value in twin.constraints.items():
        trial.set_constraint(name, value)
    set_user_attrs(trial, attrs)
    return tuple(twin.values)
