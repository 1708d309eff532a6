"""The measurement queue (nas.remote) on SQLite: one claim per candidate, stale claims taken over,
claims handed back, withdrawn requests refused, a trainer without a measurer failing with its own
reason, and `nas worker --measure-only` refusing what does not apply. (PostgreSQL and real
processes: tests/e2e/test_measure_remote.py.)"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from nas.cli import main
from nas.errors import TrialFault
from nas.remote import CLAIMED, DONE, WAITING, WITHDRAWN, MeasureQueue

PAYLOAD = {"architecture": {"family": "mlp"}, "seed": 1, "precision": "fp32", "prune_ratio": 0.0}


@pytest.fixture
def queue(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'q.db'}", connect_args={"timeout": 30})
    yield MeasureQueue(engine)
    engine.dispose()


def _age_claim(queue: MeasureQueue, trial_id: int, seconds: float) -> None:
    """Pretend the claim's last heartbeat was `seconds` ago (on the database's clock)."""
    from nas.remote import requests_table as t

    with queue.engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.trial_id == trial_id).values(heartbeat_at=t.c.heartbeat_at - seconds))


def test_a_candidate_is_claimed_once_even_by_racing_measurers(queue):
    for i in range(6):
        queue.request("s", trial_id=i, trial_number=i, payload={**PAYLOAD, "seed": i})
    won: dict[str, list[int]] = {f"m{k}": [] for k in range(4)}

    def measurer(me: str) -> None:
        while (claim := queue.claim("s", me)) is not None:
            won[me].append(claim.trial_id)

    threads = [threading.Thread(target=measurer, args=(me,)) for me in won]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = sorted(i for ids in won.values() for i in ids)
    assert claimed == list(range(6)), won  # every request once, none twice
    assert queue.pending("s") == 0 and queue.open_requests("s") == 6


def test_a_stale_claim_is_taken_over_and_the_late_result_is_refused(queue):
    queue.request("s", 7, 0, PAYLOAD)
    first = queue.claim("s", "a", grace_s=60)
    assert first is not None and first.payload == PAYLOAD
    assert queue.claim("s", "b", grace_s=60) is None  # a live claim is not taken
    assert queue.heartbeat(7, "a")
    _age_claim(queue, 7, 61)
    assert queue.claim("s", "b", grace_s=60).trial_id == 7  # silent for longer than the grace
    assert not queue.heartbeat(7, "a") and not queue.complete(7, "a", {"energy": "late"})
    assert queue.complete(7, "b", {"energy": "b's"})
    assert queue.state(7) == (DONE, {"energy": "b's"}, None)
    assert queue.wait(7, timeout_s=1) == {"energy": "b's"}


def test_a_released_claim_is_claimable_at_once(queue):
    queue.request("s", 3, 0, PAYLOAD)
    assert queue.claim("s", "a").trial_id == 3
    assert queue.state(3)[0] == CLAIMED
    assert queue.release(3, "a") and queue.state(3)[0] == WAITING
    assert queue.claim("s", "b").trial_id == 3


def test_no_measurement_in_time_is_a_trial_fault_and_withdraws_the_request(queue):
    queue.request("s", 5, 0, PAYLOAD)
    with pytest.raises(TrialFault) as e:
        queue.wait(5, timeout_s=0.2, poll_s=0.05)
    assert e.value.reason == "measure_timeout"
    assert queue.state(5)[0] == WITHDRAWN and queue.claim("s", "late") is None
    queue.request("s", 6, 1, PAYLOAD)
    assert queue.claim("s", "m") is not None and queue.fail(6, "m", "ExportError: no")
    with pytest.raises(TrialFault) as e:
        queue.wait(6, timeout_s=1)
    assert e.value.reason == "measure_failed" and "ExportError: no" in str(e.value)


def test_a_search_without_a_measurer_fails_its_candidates_with_their_own_reason(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "search",
            "--space",
            "mlp",
            "--trials",
            "1",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--measure-remote",
            "--measure-timeout",
            "0.5",
            "--timeout",
            "2",
            "--quiet",
        ],
        catch_exceptions=False,
    )
    # every trial failed, so the search exits non-zero and says why (the run folder is kept)
    assert result.exit_code != 0 and "measure_timeout" in result.output, result.output
    import optuna

    study = optuna.load_study(study_name="run", storage=f"sqlite:///{out / 'study.db'}")
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert failed and {t.user_attrs["fail_reason"] for t in failed} == {"measure_timeout"}
    assert all(t.user_attrs["measure_state"] == "measure_timeout" for t in failed)
    assert not study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--trials", "3"], "--trials does not apply to --measure-only"),
        (["--train-device", "cpu"], "--train-device does not apply to --measure-only"),
    ],
)
def test_measure_only_refuses_training_options(extra, needle):
    result = CliRunner().invoke(main, ["worker", "--measure-only", "--storage", "sqlite://", *extra])
    assert result.exit_code == 2 and result.output.strip() == f"nas: error: {needle} (a measurer trains nothing)"


def test_measurer_options_need_measure_only():
    result = CliRunner().invoke(main, ["worker", "--storage", "sqlite://", "--claim-grace", "5"])
    assert result.exit_code == 2 and result.output.strip() == "nas: error: --claim-grace only applies to --measure-only"


def test_measure_only_refuses_a_study_that_measures_itself(tmp_path):
    out = tmp_path / "run"
    created = CliRunner().invoke(
        main,
        ["search", "--space", "mlp", "--trials", "1", "--epochs", "1", "--out", str(out), "--quiet"],
        catch_exceptions=False,
    )
    assert created.exit_code == 0, created.output
    result = CliRunner().invoke(main, ["worker", "--measure-only", "--storage", f"sqlite:///{out / 'study.db'}"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "measures its candidates itself" in line and "--measure-remote" in line
