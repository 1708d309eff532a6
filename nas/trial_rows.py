"""Trial rows read and written directly, where Optuna's public API is slow: writing a trial's user
attributes in one transaction, counting trials, and reading a whole study's trials for a report.

Studies are opened by `nas.storage`; this module only reads and writes rows of an open one.

Reading (`read_trials`): Optuna builds a full FrozenTrial per trial through the SQLAlchemy ORM
(parameters with their distributions, every attribute row as an object); for a 10,000-trial study
that took 6-11 s, most of `nas report`. A report needs each trial's number, state, values, user
attributes and constraints, so on an RDB storage `read_trials` selects just those columns from
Optuna's tables (four queries, no ORM objects); elsewhere it copies them from `study.get_trials`.

Writing (`set_user_attrs`): Optuna writes each `trial.set_user_attr` as its own transaction (a SELECT of the trial, an upsert
and a commit). A trial of ours stores about twenty attributes, so on SQLite that was 20-75 ms per
trial on the 2-core benchmark machine: the largest cost of a replayed trial, and a visible share
of a short training trial (docs/benchmarks.md, "Scale" and "Overhead"). Optuna 5.0 has no public
batch call, so on an RDB storage (SQLite, PostgreSQL) `set_user_attrs` checks the trial once and
upserts every attribute in one multi-row statement and one commit, through Optuna's own table
models; on any other storage, or if those internals change, it falls back to one
`trial.set_user_attr` per key. The stored rows are the same either way.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState


def _rdb(storage: Any) -> Any:
    """The RDBStorage behind `storage` (Optuna wraps it in a cache), or None."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def _upsert(dialect: str) -> Any:
    """The dialect's INSERT that supports ON CONFLICT DO UPDATE, or None."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects.sqlite import insert

        return insert
    return None


def set_user_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    """Set every item of `attrs` as a user attribute of the running `trial`, in one write."""
    if not attrs:
        return
    rdb = _rdb(getattr(trial, "storage", None))
    insert = _upsert(rdb.engine.name) if rdb is not None else None
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:  # Optuna moved its internals: fall back to the public call
        insert = None
    trial_id = getattr(trial, "_trial_id", None)
    if insert is None or trial_id is None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    table = models.TrialUserAttributeModel
    rows = [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]
    with _create_scoped_session(rdb.scoped_session) as session:
        try:
            # the same check set_user_attr makes: a finished trial's attributes are frozen
            rdb.check_trial_is_updatable(trial_id, models.TrialModel.find_or_raise_by_id(trial_id, session).state)
            stmt = insert(table).values(rows)
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[table.trial_id, table.key], set_={"value_json": stmt.excluded.value_json}
                )
            )
        except BaseException:  # Ctrl-C too: never leave the thread's session inside a transaction
            session.rollback()
            raise
    cached = getattr(trial, "_cached_frozen_trial", None)  # what trial.user_attrs returns
    if cached is not None:
        cached.user_attrs.update(attrs)


@dataclass(frozen=True)
class StoredTrial:
    """What a report reads of one trial (the FrozenTrial fields of the same names)."""

    number: int
    state: TrialState
    values: list[float] | None
    user_attrs: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)


def count_trials(study: optuna.Study, state: TrialState) -> int:
    """How many of the study's trials are in `state`, counted by the database where there is one.

    Optuna's `get_n_trials` (and `MaxTrialsCallback`, which a search ran after every trial to stop
    at its target) lists every trial of the study to count them: about 5 ms per call at 10,000
    trials on SQLite (docs/benchmarks.md, "Scale"). One COUNT query gives the same number, read from
    the database, so trials finished by other workers count too.
    """
    rdb = _rdb(study._storage)
    if rdb is not None:
        try:
            import sqlalchemy as sa
            from optuna.storages._rdb import models

            trials_t = models.TrialModel.__table__
            query = (
                sa.select(sa.func.count())
                .select_from(trials_t)
                .where(trials_t.c.study_id == study._study_id, trials_t.c.state == state)
            )
            with rdb.engine.connect() as conn:
                return int(conn.execute(query).scalar_one())
        except (ImportError, AttributeError):  # Optuna moved its internals: use the public call
            pass
    return study._storage.get_n_trials(study._study_id, state)


def read_trials(study: optuna.Study, states: Container[TrialState] | None = None) -> list[StoredTrial]:
    """The study's trials (those in `states`, if given), ordered by number."""
    rdb = _rdb(study._storage)
    if rdb is not None:
        try:
            trials = _read_rdb(rdb, study._study_id)
        except (ImportError, AttributeError):  # Optuna moved its internals: use the public call
            trials = None
        if trials is not None:
            return [t for t in trials if states is None or t.state in states]
    return [
        StoredTrial(t.number, t.state, t.values, t.user_attrs, t.constraints)
        for t in study.get_trials(deepcopy=False, states=states)
    ]


def _read_rdb(rdb: Any, study_id: int) -> list[StoredTrial]:
    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from optuna.study._constrained_optimization import _get_constraints_from_system_attrs

    trials_t = models.TrialModel.__table__
    values_t = models.TrialValueModel.__table__
    user_t = models.TrialUserAttributeModel.__table__
    system_t = models.TrialSystemAttributeModel.__table__
    in_study = trials_t.c.study_id == study_id

    def of_study(table: Any, *columns: Any) -> Any:
        return (
            sa.select(table.c.trial_id, *columns)
            .join(trials_t, trials_t.c.trial_id == table.c.trial_id)
            .where(in_study)
        )

    with rdb.engine.connect() as conn:  # one read transaction: a consistent snapshot
        rows = conn.execute(sa.select(trials_t.c.trial_id, trials_t.c.number, trials_t.c.state).where(in_study)).all()
        values: dict[int, dict[int, float]] = {}
        for tid, objective, value, kind in conn.execute(
            of_study(values_t, values_t.c.objective, values_t.c.value, values_t.c.value_type)
        ):
            values.setdefault(tid, {})[objective] = models.TrialValueModel.stored_repr_to_value(value, kind)
        user_rows = conn.execute(of_study(user_t, user_t.c.key, user_t.c.value_json)).all()
        # one parse of a JSON array of every value: a json.loads call per value cost more than the parsing
        parsed = json.loads("[" + ",".join(r[2] for r in user_rows) + "]")
        user: dict[int, dict[str, Any]] = {}
        for (tid, key, _), value in zip(user_rows, parsed, strict=True):
            user.setdefault(tid, {})[key] = value
        system: dict[int, dict[str, Any]] = {}
        constraint_rows = of_study(system_t, system_t.c.key, system_t.c.value_json).where(
            system_t.c.key.like("constraints%")
        )
        for tid, key, value_json in conn.execute(constraint_rows):
            system.setdefault(tid, {})[key] = json.loads(value_json)
    out = []
    for tid, number, state in rows:
        v = values.get(tid)
        out.append(
            StoredTrial(
                number=number,
                state=TrialState[state] if isinstance(state, str) else state,
                values=[v[i] for i in sorted(v)] if v else None,
                user_attrs=user.get(tid, {}),
                constraints=_get_constraints_from_system_attrs(system.get(tid, {})),
            )
        )
    return sorted(out, key=lambda t: t.number)


__all__ = ["StoredTrial", "count_trials", "read_trials", "set_user_attrs"]
