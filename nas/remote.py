"""Train on one machine, measure on another: the measurement queue in the study's database.

A search with `measure_remote` (`nas search --measure-remote`, `nas worker` joining it) does not
measure its candidates itself. Its trials hand them to `nas worker --measure-only`, started on the
target device, through a table of the study's own database (`nas_measurement_requests`, created
beside Optuna's tables with SQLAlchemy):

  trainer                                   measurer (on the board)
  ask a trial, sample, store the genotype
  INSERT request (state waiting)      ->    claim it: one conditional UPDATE
  user attr measure_state=waiting           (waiting, or claimed with a stale heartbeat -> claimed)
  poll the request                          rebuild the deployed model, measure it with its own
                                            sensor and runtime, heartbeat the claim meanwhile
                          <-                UPDATE request: state done, the energy record
  measure_state=done; over budget: stop,
  never trained; else train, evaluate

Why a table and a conditional UPDATE, not Optuna user attributes: Optuna writes a user attribute
as an upsert, which cannot compare-and-set, so two measurers could both believe they claimed a
candidate. `UPDATE ... WHERE state = 'waiting'` is atomic in every database SQLAlchemy speaks
(SQLite serialises writers; PostgreSQL re-checks the WHERE clause on the row it locked), and the
row count tells the one winner. The trainer reads the record from the same row and stores it as the
trial's user attributes, so reports read remote and local measurements alike.

Time: every timestamp (claim heartbeats) is the database server's clock, read inside the statement
that writes or compares it, so machines whose clocks disagree still agree on which claim is stale.
A measurer heartbeats its claim every `grace_s / 4`; a claim without a heartbeat for `grace_s` is
stale and another measurer may take it (a dead measurer loses only the measurement in flight). A
trainer that gets no record within `timeout_s` fails its trial with reason `measure_timeout` and
withdraws the request; a candidate the measurer cannot deploy fails with `measure_failed`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from nas.errors import StorageError, TrialFault

TABLE_NAME = "nas_measurement_requests"
WAITING, CLAIMED, DONE, FAILED, WITHDRAWN = "waiting", "claimed", "done", "failed", "withdrawn"
STATE_ATTR = "measure_state"  # the trial's user attribute mirroring the request (for people reading the study)
GRACE_S = 60.0  # a claim without a heartbeat this long is stale (as nas.workers.GRACE_PERIOD_S for trials)
TIMEOUT_S = 600.0  # how long a trainer waits for a measurement by default
POLL_S = 0.5  # how often trainers and idle measurers look at the queue

_metadata = sa.MetaData()
requests_table = sa.Table(
    TABLE_NAME,
    _metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),  # Optuna's trial id
    sa.Column("study_name", sa.String(512), nullable=False, index=True),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("request", sa.Text, nullable=False),  # JSON: what to deploy and measure
    sa.Column("requested_by", sa.String(255), nullable=False),
    sa.Column("claimed_by", sa.String(255), nullable=True),
    sa.Column("claims", sa.Integer, nullable=False, default=0),  # how often it was claimed (retries)
    sa.Column("heartbeat_at", sa.Float, nullable=True),  # database clock, seconds since the epoch
    sa.Column("result", sa.Text, nullable=True),  # JSON: the energy record and who measured it
    sa.Column("error", sa.Text, nullable=True),
)


def _now(dialect: str) -> Any:
    """The database server's clock in seconds since the epoch, as an SQL expression."""
    if dialect == "postgresql":
        return sa.literal_column("EXTRACT(EPOCH FROM clock_timestamp())")
    if dialect == "sqlite":
        return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)")
    if dialect in ("mysql", "mariadb"):
        return sa.literal_column("UNIX_TIMESTAMP(NOW(6))")
    raise StorageError(f"measuring on another machine needs SQLite, PostgreSQL or MySQL storage, not {dialect}")


def measurer_id() -> str:
    """Who claims: host, process and a random part (a pid can repeat across containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Request:
    """One candidate waiting for (or holding) a measurement."""

    trial_id: int
    study_name: str
    trial_number: int
    payload: dict[str, Any]


class MeasureQueue:
    """The measurement requests of one storage database.

    `engine`: the SQLAlchemy engine of the study's RDB storage (`queue_for(storage)` finds it).
    Creating the queue creates its table if missing (idempotent; safe when several processes race).
    """

    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine
        self.now = _now(engine.dialect.name)
        for attempt in range(3):
            try:
                _metadata.create_all(engine, checkfirst=True)
                break
            except sa.exc.DBAPIError:  # another process created it between the check and CREATE
                if attempt == 2:
                    raise
                time.sleep(0.2)

    # ------------------------------------------------------------------ trainer side
    def request(self, study_name: str, trial_id: int, trial_number: int, payload: dict[str, Any]) -> None:
        """Queue trial `trial_id` for a measurement (a retried trial id replaces its old request)."""
        t = requests_table
        row = {
            "study_name": study_name,
            "trial_number": trial_number,
            "state": WAITING,
            "request": json.dumps(payload),
            "requested_by": f"{socket.gethostname()}:{os.getpid()}",
            "claimed_by": None,
            "claims": 0,
            "heartbeat_at": None,
            "result": None,
            "error": None,
        }
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.trial_id == trial_id))
            conn.execute(sa.insert(t).values(trial_id=trial_id, **row))

    def state(self, trial_id: int) -> tuple[str, dict[str, Any] | None, str | None]:
        """(state, result, error) of a request."""
        t = requests_table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.state, t.c.result, t.c.error).where(t.c.trial_id == trial_id)).first()
        if row is None:
            return WITHDRAWN, None, "the request row is gone"
        return row.state, json.loads(row.result) if row.result else None, row.error

    def wait(
        self, trial_id: int, timeout_s: float, poll_s: float = POLL_S, sleep: Callable[[float], None] = time.sleep
    ) -> dict[str, Any]:
        """Block until trial `trial_id` is measured; return the result (record and measurer).

        Raises TrialFault('measure_timeout') after `timeout_s` seconds without a result (and
        withdraws the request, so no measurer starts it later), TrialFault('measure_failed') when
        the measurer could not deploy or measure the candidate.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            state, result, error = self.state(trial_id)
            if state == DONE and result is not None:
                return result
            if state == FAILED:
                raise TrialFault("measure_failed", f"the measurer could not measure this candidate: {error}")
            if state == WITHDRAWN:
                raise TrialFault("measure_withdrawn", f"the measurement request was withdrawn ({error})")
            if time.monotonic() >= deadline:
                self.withdraw(trial_id, f"no measurement within {timeout_s:g} s")
                # a result may have landed between the read and the withdrawal
                state, result, _ = self.state(trial_id)
                if state == DONE and result is not None:
                    return result
                raise TrialFault(
                    "measure_timeout",
                    f"no measurement arrived within {timeout_s:g} s (state {state}); is `nas worker "
                    f"--measure-only` running on the target device?",
                )
            sleep(poll_s)

    def withdraw(self, trial_id: int, why: str) -> None:
        """Take back a request not yet measured (a measurer holding it can no longer complete it)."""
        t = requests_table
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t)
                .where(t.c.trial_id == trial_id, t.c.state.in_((WAITING, CLAIMED)))
                .values(state=WITHDRAWN, error=why)
            )

    # ------------------------------------------------------------------ measurer side
    def _claimable(self, grace_s: float) -> Any:
        t = requests_table
        return sa.or_(t.c.state == WAITING, sa.and_(t.c.state == CLAIMED, t.c.heartbeat_at < self.now - grace_s))

    def pending(self, study_name: str, grace_s: float = GRACE_S) -> int:
        """How many requests of the study a measurer could claim now (waiting, or stale claims)."""
        t = requests_table
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(t)
                    .where(t.c.study_name == study_name, self._claimable(grace_s))
                ).scalar_one()
            )

    def open_requests(self, study_name: str) -> int:
        """Requests of the study not yet finished (waiting or claimed, stale or not)."""
        t = requests_table
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(t)
                    .where(t.c.study_name == study_name, t.c.state.in_((WAITING, CLAIMED)))
                ).scalar_one()
            )

    def claim(self, study_name: str, me: str, grace_s: float = GRACE_S) -> Request | None:
        """Claim the oldest claimable request of the study for measurer `me`, or None.

        The claim is one conditional UPDATE; its row count says whether this measurer won.
        """
        t = requests_table
        with self.engine.connect() as conn:
            candidates = (
                conn.execute(
                    sa.select(t.c.trial_id)
                    .where(t.c.study_name == study_name, self._claimable(grace_s))
                    .order_by(t.c.trial_id)
                    .limit(8)
                )
                .scalars()
                .all()
            )
        for trial_id in candidates:
            with self.engine.begin() as conn:
                won = (
                    conn.execute(
                        sa.update(t)
                        .where(t.c.trial_id == trial_id, self._claimable(grace_s))
                        .values(state=CLAIMED, claimed_by=me, heartbeat_at=self.now, claims=t.c.claims + 1)
                    ).rowcount
                    == 1
                )
                if won:
                    row = conn.execute(sa.select(t).where(t.c.trial_id == trial_id)).one()
                    return Request(row.trial_id, row.study_name, row.trial_number, json.loads(row.request))
        return None

    def _update_claim(self, trial_id: int, me: str, **values: Any) -> bool:
        """Set `values` on the request only while `me` still holds its claim; True when it did."""
        t = requests_table
        with self.engine.begin() as conn:
            update = sa.update(t).where(t.c.trial_id == trial_id, t.c.claimed_by == me, t.c.state == CLAIMED)
            return conn.execute(update.values(**values)).rowcount == 1

    def heartbeat(self, trial_id: int, me: str) -> bool:
        """Renew `me`'s claim; False when it was lost (taken over as stale, or withdrawn)."""
        return self._update_claim(trial_id, me, heartbeat_at=self.now)

    def complete(self, trial_id: int, me: str, result: dict[str, Any]) -> bool:
        """Store `me`'s result; False (nothing stored) when the claim was lost meanwhile."""
        return self._update_claim(trial_id, me, state=DONE, result=json.dumps(result), heartbeat_at=self.now)

    def release(self, trial_id: int, me: str) -> bool:
        """Hand `me`'s claim back (a measurer stopped cleanly): the next measurer takes it at once."""
        return self._update_claim(trial_id, me, state=WAITING, claimed_by=None, heartbeat_at=None)

    def fail(self, trial_id: int, me: str, error: str) -> bool:
        """Mark the candidate as not measurable (the trainer fails its trial with this error)."""
        return self._update_claim(trial_id, me, state=FAILED, error=error[:1000])


def queue_for(storage: Any) -> MeasureQueue:
    """The measurement queue in the database of an Optuna RDB storage (StorageError elsewhere)."""
    import optuna

    backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
    engine = backend.engine if isinstance(backend, optuna.storages.RDBStorage) else None
    if engine is None:
        raise StorageError(
            "measuring on another machine needs a database storage (--storage URL: PostgreSQL, "
            "or SQLite on a shared disk), which trainers and measurers open"
        )
    return MeasureQueue(engine)


class Heartbeat:
    """Renews a claim from a background thread every `interval_s` while a measurement runs.

    `lost` is set when a renewal finds the claim gone (the measurement is then discarded)."""

    def __init__(self, queue: MeasureQueue, trial_id: int, me: str, interval_s: float) -> None:
        self.queue, self.trial_id, self.me, self.interval_s = queue, trial_id, me, interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nas-claim-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.queue.heartbeat(self.trial_id, self.me):
                    self.lost.set()
                    return
            except sa.exc.SQLAlchemyError:  # a database hiccup: try again at the next beat
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


__all__ = ["GRACE_S", "TIMEOUT_S", "Heartbeat", "MeasureQueue", "Request", "measurer_id", "queue_for"]
