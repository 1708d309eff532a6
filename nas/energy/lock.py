"""One device, one measurer: an inter-process lock per energy sensor.

A counter is per device (NVML) or per package (RAPL), not per process, so two processes measuring
one device at once contaminate each other's windows. Each sensor meter holds this lock, keyed by the
device's identity (GPU UUID, "rapl-packages"), while it measures.

The lock is an advisory `fcntl.flock` on a file in a lock folder shared by every energy-nas process
on the machine: `$NAS_LOCK_DIR`, else `$XDG_RUNTIME_DIR/energy-nas-locks`, else
`/tmp/energy-nas-locks`. The kernel drops a flock when its process dies, so a crashed worker never
leaves a stale lock. Within one process the lock is re-entrant (a search holds it around an
inference measurement that may in turn take it for the idle baseline) and serialises threads.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from pathlib import Path
from types import TracebackType

from nas.errors import MeterUnavailable

POLL_S = 0.05  # how often a waiting process retries a held lock


def lock_dir() -> Path:
    """The folder holding the lock files (created on first use)."""
    if os.environ.get("NAS_LOCK_DIR"):
        return Path(os.environ["NAS_LOCK_DIR"])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "energy-nas-locks"
    return Path("/tmp/energy-nas-locks")


def lock_path(key: str, directory: Path | None = None) -> Path:
    """The lock file of device `key` (characters outside [A-Za-z0-9._-] become '_')."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", key) or "device"
    return (directory or lock_dir()) / f"{safe}.lock"


class _Held:
    """The process-wide state of one lock file: thread lock, open descriptor, depth."""

    def __init__(self) -> None:
        self.thread_lock = threading.RLock()
        self.fd: int | None = None
        self.depth = 0


_HELD: dict[Path, _Held] = {}
_HELD_GUARD = threading.Lock()


def _held(path: Path) -> _Held:
    with _HELD_GUARD:
        return _HELD.setdefault(path, _Held())


class DeviceLock:
    """Context manager: exclusive use of one measured device across processes.

    `timeout_s=None` waits as long as it takes; otherwise a lock still held after `timeout_s`
    raises MeterUnavailable naming the holder's pid.
    """

    def __init__(self, key: str, directory: Path | None = None, timeout_s: float | None = None) -> None:
        self.key = key
        self.path = lock_path(key, directory)
        self.timeout_s = timeout_s

    def acquire(self) -> None:
        """Take the lock (re-entrant within a process; an flock on the lock file across processes)."""
        state = _held(self.path)
        state.thread_lock.acquire()
        try:
            if state.depth == 0:
                state.fd = self._lock_file()
            state.depth += 1
        except BaseException:
            state.thread_lock.release()
            raise

    def release(self) -> None:
        """Release one level of the lock; the file lock is dropped when the outermost level is."""
        state = _held(self.path)
        state.depth -= 1
        if state.depth == 0 and state.fd is not None:
            fcntl.flock(state.fd, fcntl.LOCK_UN)
            os.close(state.fd)
            state.fd = None
        state.thread_lock.release()

    @property
    def held(self) -> bool:
        """Whether this process holds the lock now."""
        return _held(self.path).depth > 0

    def _lock_file(self) -> int:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if str(directory).startswith("/tmp/"):
                # shared by every user on the machine, like /tmp itself (sticky, world-writable)
                try:
                    os.chmod(directory, 0o1777)
                except PermissionError:
                    pass  # created by another user, who already set it
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except PermissionError:
                fd = os.open(self.path, os.O_RDONLY)  # flock works on a read-only descriptor too
        except OSError as e:
            raise MeterUnavailable(
                f"cannot create the device lock {self.path} ({e.strerror}); set NAS_LOCK_DIR to a "
                f"writable folder shared by every energy-nas process on this machine"
            ) from None
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    holder = _read_pid(self.path)
                    os.close(fd)
                    raise MeterUnavailable(
                        f"device {self.key!r} is being measured by another process"
                        f"{f' (pid {holder})' if holder else ''}; lock {self.path} still held after "
                        f"{self.timeout_s:g} s"
                    ) from None
                time.sleep(POLL_S)
        try:  # record the holder for the message above; best effort
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        return fd

    def __enter__(self) -> DeviceLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
