"""Opening, creating and finding studies: the one way every command reaches an Optuna storage.

- `open_storage(url)`: an RDBStorage with this project's settings. SQLite runs in WAL mode (readers
  never block the writer) with synchronous=NORMAL and waits up to 60 s for a lock instead of failing
  with "database is locked"; PostgreSQL gives up connecting after 10 s. With `heartbeat`, trials of
  dead workers are failed and retried (heartbeats exist only for RDB storages).
- `create_or_load_study`: create a study, or load it when it exists; safe when several processes start
  at once on a new database (see `creation_lock`).
- `find_study` / `load_study`: an existing study by name (the only one when no name is given).
- `redact_url`: a URL fit to print or store, with the password (also a `?password=` query
  parameter) replaced by ***.

Errors are StorageError / RunError with one line that never shows a password.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import optuna
from sqlalchemy.engine import make_url

from nas.errors import RunError, StorageError

# Heartbeats are written by a thread during every trial. A worker is declared dead after
# GRACE_PERIOD_S without one: long enough that a busy machine or a slow database never fails a
# live trial, short enough that a dead machine's trial is retried within a minute.
HEARTBEAT_INTERVAL_S = 5
GRACE_PERIOD_S = 60
# A trial whose worker died is run again at most this often (a candidate that kills its worker
# every time, e.g. by exhausting host memory, must not stall the search).
MAX_RETRY = 2
SQLITE_TIMEOUT_S = 60  # how long a SQLite connection waits for a lock
POSTGRES_CONNECT_TIMEOUT_S = 10
# query parameters that carry a password (libpq's `password`, `sslpassword`; drivers' spellings)
_SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "sslpassword"})


# ------------------------------------------------------------------------------------ URLs
def redact_url(url: str) -> str:
    """`url` with any password replaced by *** (in the user info and in query parameters)."""
    try:
        parsed = make_url(url)
        secret = {k: "***" for k in parsed.query if k.lower() in _SECRET_PARAMS}
        if secret:
            parsed = parsed.update_query_dict(secret)
        return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except Exception:  # not a URL SQLAlchemy can parse: show only the scheme
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def _passwords(url: str) -> set[str]:
    """Every password spelled in `url` (user info and query parameters), raw and URL-decoded."""
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    userinfo = netloc.rsplit("@", 1)[0] if "@" in netloc else ""
    found = {userinfo.split(":", 1)[1]} if ":" in userinfo else set()
    query = url.split("?", 1)[1] if "?" in url else ""
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key.lower() in _SECRET_PARAMS:
            found.add(value)
    return {s for p in found for s in (p, unquote(p))} - {""}


def _without_password(text: str, url: str) -> str:
    """`text` with the URL's passwords cut out, wherever a driver chose to repeat them."""
    for secret in sorted(_passwords(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    try:
        path = make_url(url).database
    except Exception:
        return None
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


# ------------------------------------------------------------------------------------ creation lock
_held: dict[tuple[int, str], int] = {}  # (process id, lock file) -> depth; a forked child holds none
_held_guard = threading.Lock()


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Serialise creating a study database between processes (an exclusive `fcntl.flock`).

    Optuna creates a new database's tables and stamps its schema version (alembic) when a storage
    is first opened, and several processes doing so at once on one new SQLite file fail with "table
    alembic_version already exists" or a UNIQUE constraint error. The lock file sits next to the
    database (`DB.lock`); the lock is re-entrant within a process, and a no-op for server databases
    (where `open_storage` retries instead).
    """
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():  # no folder: opening the database fails with its own error
        yield
        return
    key = (os.getpid(), str(path.resolve()))
    with _held_guard:
        depth = _held.get(key, 0)
        _held[key] = depth + 1
    try:
        if depth:
            yield
            return
        # the umask decides, as for the database beside it: another user who may resume the run may take the lock
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child may share the descriptor
        finally:
            os.close(fd)
    finally:
        with _held_guard:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]


# ------------------------------------------------------------------------------------ heartbeats
def retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Optuna's callback that re-enqueues a trial whose worker died, at most MAX_RETRY times."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def heartbeat_kwargs() -> dict[str, Any]:
    """RDBStorage arguments that turn on heartbeats and the retry of trials whose worker died."""
    return {
        "heartbeat_interval": HEARTBEAT_INTERVAL_S,
        "grace_period": GRACE_PERIOD_S,
        "heartbeat_stale_trial_callback": retry_callback(),
    }


# ------------------------------------------------------------------------------------ opening
class _WalConnection(sqlite3.Connection):
    """A SQLite connection with synchronous=NORMAL: in WAL mode it syncs at checkpoints instead of
    at every commit. Optuna commits every suggest and attribute, so a full sync per commit was a
    large share of a trial's storage time (docs/benchmarks.md). The database stays consistent and
    survives a crash of any process; only a power loss or OS crash may undo the last commits
    (SQLite documentation, PRAGMA synchronous), which costs at most the trials in flight."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.execute("PRAGMA journal_mode").fetchone()[0] == "wal":  # NORMAL is only this safe with WAL
            self.execute("PRAGMA synchronous=NORMAL")


def _sqlite_wal(url: str) -> None:
    """Switch a SQLite database file to WAL journaling (stored in the file, so once is enough)."""
    path = sqlite_path(url)
    if path is None:
        return
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine arguments for `url`: lock timeout and WAL connections (SQLite), connect timeout (PostgreSQL)."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S, "factory": _WalConnection}}
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}}
    return {}


def _racing(e: BaseException) -> bool:
    """Whether `e` is what a process sees when another one creates the same schema at that moment."""
    text = str(e)
    return "already exists" in text or "UNIQUE constraint" in text or "duplicate key" in text


def open_storage(url: str, heartbeat: bool = True) -> optuna.storages.RDBStorage:
    """An RDB storage for `url` (creating its tables if the database is new).

    Heartbeats cost a thread and a write per trial (about 20 ms on SQLite on a 2-core machine), so a
    lone search on its run folder's SQLite goes without (`heartbeat=False`): when it is rerun after a
    crash, it fails and retries its lost trial at once from the process id
    (nas.search.study.recover_lost_trials). Raises StorageError (one line, no password).
    """
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    if netloc.count("@") > 1:  # drivers would read part of the password as the host, and print it
        raise StorageError(
            f"storage {url.split('://', 1)[0]}://***: the user name or password contains '@'; write it as %40"
        )
    for attempt in range(3):
        try:
            with creation_lock(url), warnings.catch_warnings():
                _sqlite_wal(url)
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs(url), **(heartbeat_kwargs() if heartbeat else {})
                )
        except Exception as e:
            if attempt < 2 and _racing(e):  # a server database being created by another process
                time.sleep(0.5 * (attempt + 1))
                continue
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            msg = _without_password(redact_url(msg) if "://" in msg else msg, url)
            hint = (
                " (no database driver for this URL; PostgreSQL: postgresql+psycopg://)"
                if isinstance(e, ImportError)
                else ""
            )
            raise StorageError(
                f"storage {redact_url(url)}: cannot open ({e.__class__.__name__}: {msg}){hint}"
            ) from None
    raise AssertionError("unreachable")


def storage_url(study: optuna.Study) -> str:
    """The database URL behind `study` ('' for storages that have none)."""
    return storage_url_of(study._storage)


# ------------------------------------------------------------------------------------ studies
def create_or_load_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler | None = None,
    init: Callable[[optuna.Study], None] | None = None,
) -> optuna.Study:
    """The study `name` in `storage`, created with `directions` if it does not exist yet.

    `init(study)` runs right after, under the creation lock of a SQLite storage, so a process that
    joins a study another one is creating sees it complete (e.g. its settings attributes).
    Raises RunError when the stored study has other directions.
    """
    url = storage_url_of(storage)
    for attempt in range(3):
        try:
            with creation_lock(url):
                study = optuna.create_study(
                    storage=storage, study_name=name, directions=list(directions), sampler=sampler, load_if_exists=True
                )
                if init is not None:
                    init(study)
                return study
        except optuna.exceptions.DuplicatedStudyError:  # created by another process meanwhile
            if attempt == 2:
                raise
            time.sleep(0.2)
        except ValueError as e:  # directions differ from the stored study's
            raise RunError(f"study {name!r}: {e}") from None
    raise AssertionError("unreachable")


def storage_url_of(storage: optuna.storages.BaseStorage) -> str:
    """The database URL of an RDB storage ('' for others)."""
    return str(getattr(getattr(storage, "_backend", storage), "url", ""))


def find_study(storage: optuna.storages.BaseStorage, url: str, study_name: str | None) -> optuna.Study:
    """The study named `study_name` in `storage` (the only one when no name is given).

    Raises StorageError when the studies cannot be listed, RunError when the name is unknown or
    missing among several studies.
    """
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


def load_study(url: str, study_name: str | None = None, heartbeat: bool = False) -> optuna.Study:
    """Open `url` and return its study `study_name` (see `open_storage`, `find_study`)."""
    return find_study(open_storage(url, heartbeat=heartbeat), url, study_name)


__all__ = [
    "GRACE_PERIOD_S",
    "HEARTBEAT_INTERVAL_S",
    "MAX_RETRY",
    "create_or_load_study",
    "creation_lock",
    "engine_kwargs",
    "find_study",
    "heartbeat_kwargs",
    "load_study",
    "open_storage",
    "redact_url",
    "retry_callback",
    "sqlite_path",
    "storage_url",
    "storage_url_of",
]
