"""Helpers for tests that drive `nas` as a separate process and read its study back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

REPO = Path(__file__).resolve().parent.parent
NAS = [sys.executable, "-m", "nas"]
# small, fast candidates where training still dominates a trial (so a kill lands mid-training)
CNN = ["--space", "cnn", "--dataset", "digits", "--epochs", "1", "--seed", "0", "--quiet"]
MLP = ["--space", "mlp", "--dataset", "digits", "--epochs", "1", "--seed", "0", "--quiet"]


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "NAS_STORAGE"}
    return {**e, "OMP_NUM_THREADS": "1", **extra}


def run_nas(*args: str, timeout: float = 300, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m nas ARGS` to completion, text output captured."""
    return subprocess.run(
        [*NAS, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env(**(extra_env or {}))
    )


def start_nas(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*NAS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env(**(extra_env or {}))
    )


def sqlite_url(run: Path) -> str:
    return f"sqlite:///{run.resolve() / 'study.db'}"


def load(url: str, name: str) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=name, storage=url)


def trials(url: str, name: str, state: str | None = None) -> list[optuna.trial.FrozenTrial]:
    try:
        all_trials = load(url, name).get_trials(deepcopy=False)
    except Exception:  # the study does not exist yet
        return []
    return [t for t in all_trials if state is None or t.state.name == state]


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def nondominated(complete: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Brute force: trials no other trial beats (accuracy up, energy down; values[0], values[1]),
    each network once (a repeat reused from an earlier trial, `duplicate_of`, is that trial's)."""

    def beats(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> bool:
        (acc_a, e_a), (acc_b, e_b) = a.values[:2], b.values[:2]
        return acc_a >= acc_b and e_a <= e_b and (acc_a > acc_b or e_a < e_b)

    return {
        t.number
        for t in complete
        if "duplicate_of" not in t.user_attrs and not any(beats(o, t) for o in complete if o is not t)
    }


def assert_clean_failure(proc: subprocess.CompletedProcess, code: int | None = None) -> str:
    """A user error: non-zero exit, one line on stderr starting 'nas: error:', no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    if code is not None:
        assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]
