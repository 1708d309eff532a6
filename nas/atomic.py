"""Writing output files whole or not at all, with the permissions the user's umask asks for.

`tempfile.mkstemp` creates its file 0600 (so that no one else can read it before it is
complete); renaming it into place would keep that mode, and a run folder's `pareto.json` or an
exported model would be unreadable to the user's group, whatever their umask. Every output file
of energy-nas is therefore written through `atomic_path`: a temporary file in the target's
folder, chmod-ed to `0o666 & ~umask` (what `open(path, "w")` would have created), then
`os.replace`-d onto the target, so a crash, a full disk or an exception leaves either the old
file or the new one, never a truncated or 0-byte one.

Errors from the file system (read-only folder, full disk, no permission) are raised as
`RunError` with one line naming the file; nothing else is caught.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nas.errors import RunError


def current_umask() -> int:
    """The process's umask, read without changing it where /proc allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0o666 less the umask (0o644 under umask 022)."""
    return 0o666 & ~current_umask()


def one_line(text: str) -> str:
    """`text` on one line: a newline (or other control character) in a file name is escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def describe_os_error(e: OSError) -> str:
    """A short reason for an OSError: 'no space left on device', 'read-only file system', ..."""
    reason = {
        errno.ENOSPC: "no space left on device",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EDQUOT: "disk quota exceeded",
    }.get(e.errno or 0)
    return reason or (e.strerror or e.__class__.__name__).lower()


@contextlib.contextmanager
def atomic_path(path: str | Path, what: str = "cannot write") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success give it the umask's mode and rename it onto `path`.

    The body writes the whole file to the yielded path (with any writer: `torch.save`,
    `safetensors.torch.save_file`, `torch.onnx.export`, ...). On any exception the temporary file
    is removed and `path` is untouched; an OSError (disk full, read-only, permission) becomes a
    one-line `RunError` naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise RunError(f"{one_line(str(path))}: {what} ({describe_os_error(e)})") from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RunError(f"{one_line(str(path))}: {what} ({describe_os_error(e)})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8, newlines kept as given) to `path` through `atomic_path`."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(data)
        else:
            tmp.write_bytes(data)


def finite_or_none(doc: object) -> object:
    """`doc` with every NaN or infinite float replaced by None, recursively (dicts, lists, tuples)."""
    if isinstance(doc, float):
        return doc if doc == doc and doc not in (float("inf"), float("-inf")) else None
    if isinstance(doc, dict):
        return {k: finite_or_none(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [finite_or_none(v) for v in doc]
    return doc


def dumps_json(doc: object, indent: int | None = 2) -> str:
    """Strict JSON (RFC 8259): NaN/Infinity, which `json.dumps` writes by default but no JSON parser
    must accept, become null; `allow_nan=False` guards the rest; other objects go through `str`."""
    import json

    return json.dumps(finite_or_none(doc), indent=indent, allow_nan=False, default=str)
