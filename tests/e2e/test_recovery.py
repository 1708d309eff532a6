"""Nothing lost: SIGKILL mid-training costs only the trial in flight, SIGINT stops cleanly, and a
failing candidate (exception, NaN loss, out of memory) fails only its own trial."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import optuna
import pytest
import torch
from run_helpers import CNN, nondominated, run_nas, sqlite_url, start_nas, trials, wait_for
from torch import nn

from nas.models.registry import ACTIVATIONS
from nas.search import SearchSettings, run_search
from nas.storage import open_storage

# trials long enough (about 1-5 s here) that the kill usually lands in training; with 1 epoch an idle
# machine finishes a digits CNN in 0.1-0.2 s, and the search would spend much of its time between trials
SLOW_CNN = [a if prev != "--epochs" else "10" for prev, a in zip(["", *CNN[:-1]], CNN, strict=True)]
WAIT_S = 600  # bounds on waiting, never a measure of speed: a loaded machine may be many times slower


def _killed_mid_training(out: Path, name: str) -> tuple[dict, int]:
    """Start a search and SIGKILL it with a trial in flight (after 3 complete): the complete trials and
    the victim, the trial the study still holds as running after the kill. Which trial that is, and
    how far it got, is read from the study after the kill, not guessed from timing before it; a kill
    that lands between two trials (nothing running) resumes the search and kills it again."""
    url = sqlite_url(out)
    for _ in range(5):
        proc = start_nas("search", *SLOW_CNN, "--trials", "8", "--out", str(out))
        try:
            wait_for(
                lambda: len(trials(url, name, "COMPLETE")) >= 3 and trials(url, name, "RUNNING"),
                timeout_s=WAIT_S,
                what="3 complete trials and one running",
                poll_s=0.05,
            )
        finally:
            proc.kill()
            proc.wait()
        running = trials(url, name, "RUNNING")
        if running:
            break
    else:
        raise AssertionError("five kills in a row landed between trials")
    assert len(running) == 1, [t.number for t in running]  # one search process, one trial in flight
    complete = {t.number: (t.values, t.params) for t in trials(url, name, "COMPLETE")}
    return complete, running[0].number


@pytest.mark.slow
def test_sigkill_loses_only_the_trial_in_flight_and_a_rerun_reaches_the_total(tmp_path):
    out = tmp_path / "killed"
    url = sqlite_url(out)
    before, victim = _killed_mid_training(out, "killed")
    assert [t.state.name for t in trials(url, "killed") if t.number == victim] == ["RUNNING"]

    rerun = run_nas("search", *SLOW_CNN, "--trials", "8", "--out", str(out), timeout=WAIT_S)
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr

    after = {t.number: (t.values, t.params) for t in trials(url, "killed", "COMPLETE")}
    assert {n: after.get(n) for n in before} == before, "a trial finished before the kill changed"
    assert len(after) >= 8
    lost = next(t for t in trials(url, "killed") if t.number == victim)
    assert lost.state.name == "FAIL" and lost.user_attrs["fail_reason"] == "worker_lost"
    # the lost candidate was run again, with the same parameters
    retry = [t for t in trials(url, "killed") if t.system_attrs.get("failed_trial") == victim]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == lost.params
    assert not trials(url, "killed", "RUNNING")
    assert "worker_lost 1" in rerun.stdout
    front = {row["trial"] for row in json.loads((out / "pareto.json").read_text())["front"]}
    assert front == nondominated(trials(url, "killed", "COMPLETE"))


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigint_stops_cleanly_after_writing_the_results(tmp_path, workers):
    out = tmp_path / f"int{workers}"
    url = sqlite_url(out)
    proc = start_nas("search", *SLOW_CNN, "--trials", "500", "--workers", workers, "--out", str(out))
    wait_for(
        lambda: len(trials(url, f"int{workers}", "COMPLETE")) >= 3 and trials(url, f"int{workers}", "RUNNING"),
        timeout_s=WAIT_S,
        what="3 complete trials and one running",
        poll_s=0.05,
    )
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr, stderr
    assert "interrupted; results of finished trials written" in stdout
    assert not trials(url, f"int{workers}", "RUNNING"), "a trial was left running"
    failed = trials(url, f"int{workers}", "FAIL")
    assert failed and all(t.user_attrs.get("fail_reason") == "interrupted" for t in failed)
    complete = trials(url, f"int{workers}", "COMPLETE")
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    front = {row["trial"] for row in json.loads((out / "pareto.json").read_text())["front"]}
    assert front == nondominated(complete)


# ------------------------------------------------------------------------------ injected faults
class _Faulty(nn.Module):
    """An activation that fails the way a real candidate can; `mode` is set when it is built."""

    schedule: list[str] = []

    def __init__(self) -> None:
        super().__init__()
        self.mode = self.schedule.pop(0) if self.schedule else "ok"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nan":
            return x * float("nan")
        if self.mode == "raise":
            raise ValueError("this candidate is broken")
        if self.mode == "oom":
            torch.empty(2**62, dtype=torch.uint8)  # a real allocation failure, not a simulated one
        return torch.relu(x)


@pytest.fixture
def faulty_space(tmp_path, monkeypatch):
    monkeypatch.setitem(ACTIVATIONS, "faulty", _Faulty)
    monkeypatch.setattr(_Faulty, "schedule", ["nan", "raise", "oom"])
    path = tmp_path / "faulty.yaml"
    # one layer, one activation: each model built takes the next failure from the schedule
    path.write_text(
        "name: faulty\nfamily: mlp\nparams:\n  activation: {choices: [faulty]}\n  dropout: {choices: [0.0]}\n"
        "layers:\n  count: {low: 1, high: 1}\n  params:\n    width: {choices: [8, 16, 32, 64]}\n"
    )
    return path


def test_failing_candidates_fail_alone_with_their_reason(tmp_path, faulty_space):
    result = run_search(
        SearchSettings(space=str(faulty_space), trials=3, epochs=1, sampler="random", out=str(tmp_path / "faults"))
    )
    assert result.failed == {"nan_loss": 1, "exception:ValueError": 1, "out_of_memory": 1}
    assert result.complete == 3  # the search went on past every failure
    failed = trials(sqlite_url(result.run.path), result.study_name, "FAIL")
    by_reason = {t.user_attrs["fail_reason"]: t.user_attrs["fail_message"] for t in failed}
    assert "nan" in by_reason["nan_loss"] and "broken" in by_reason["exception:ValueError"]
    assert "allocate" in by_reason["out_of_memory"]
    report = run_nas("report", str(result.run.path))
    assert report.returncode == 0, report.stderr
    assert "exception:ValueError 1" in report.stdout and "nan_loss 1" in report.stdout
    assert "out_of_memory 1" in report.stdout


# ------------------------------------------------------------------------------ heartbeats
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test itself asks for the dead trial
def test_a_dead_workers_trial_is_failed_by_its_missing_heartbeat_and_retried(tmp_path, monkeypatch):
    """A worker on another machine dies mid-trial: the next worker fails that trial and reruns it."""
    from nas import storage as storage_module
    from nas import workers
    from nas.config import load_space
    from nas.search.study import failure_reasons
    from nas.space import sample

    monkeypatch.setattr(storage_module, "HEARTBEAT_INTERVAL_S", 1)
    monkeypatch.setattr(storage_module, "GRACE_PERIOD_S", 2)
    first = run_search(SearchSettings(trials=1, epochs=1, out=str(tmp_path / "hb")))
    url = sqlite_url(first.run.path)
    storage = open_storage(url)
    study = optuna.load_study(study_name=first.study_name, storage=storage)
    dead = study.ask()
    sample(dead, load_space("mlp"))  # the candidate it was training
    # another machine ran it (so only the heartbeat can tell it died), beat once, then went silent
    dead.set_user_attr("host", "some-other-machine")
    dead.set_user_attr("pid", 12345)
    storage.record_heartbeat(dead._trial_id)
    time.sleep(3)

    result = workers.run_worker(workers.WorkerSettings(storage=url, trials=3))
    assert result.complete == 3
    lost = study.get_trials()[dead.number]
    assert lost.state.name == "FAIL"
    assert failure_reasons(study.get_trials()) == {"worker_lost": 1}
    retry = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == lost.params
