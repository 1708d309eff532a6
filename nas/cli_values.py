"""The CLI's edge: value parsers for flags, and the one mapping from any user error to one line.

Every user error ends as exactly one line on stderr, `nas: error: ...`, and a non-zero exit
code: our own `NasError`s, click's usage errors (click prints three lines: usage, hint and
message), file-system refusals (disk full, read-only, no permission) and the equivalent SQLite
refusals. Messages are kept on one line: a newline in a file name is shown escaped (`\\n`).
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import math
import sys
from typing import Any, NoReturn

import click

from nas.errors import NasError

# Exit codes beyond the NasError family (nas.errors): click's own for usage errors, 1 for the rest.
USAGE_EXIT = 2
OS_EXIT = 1
_OS_ERRNOS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EDQUOT,
    errno.ENAMETOOLONG,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENOENT,
    errno.EEXIST,
}


def one_line(text: str) -> str:
    """`text` on one line: newlines and other control characters escaped, as Python writes them."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def fail(message: str, code: int) -> NoReturn:
    """Print `nas: error: MESSAGE` (one line) on stderr and exit with `code`."""
    click.echo(f"nas: error: {one_line(str(message))}", err=True)
    sys.exit(code)


def _sqlite_refusal(e: BaseException) -> str | None:
    text = str(getattr(e, "orig", e) or "")
    for needle, reason in (
        ("readonly database", "the study database is read-only"),
        ("disk is full", "no space left on device"),
        ("unable to open database file", "cannot open the study database"),
    ):
        if needle in text:
            return reason
    return None


def user_error(e: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code for an error the user can fix, or None for a bug."""
    if isinstance(e, NasError):
        return str(e), e.exit_code
    if isinstance(e, click.ClickException):
        message = e.format_message()
        ctx = getattr(e, "ctx", None)
        if isinstance(e, click.UsageError) and ctx is not None:
            message += f" (see '{ctx.command_path} --help')"
        return message, e.exit_code
    if isinstance(e, OSError) and e.errno in _OS_ERRNOS:
        from nas.atomic import describe_os_error

        name = e.filename if e.filename is not None else ""
        return (f"{name}: " if name else "") + describe_os_error(e), OS_EXIT
    if type(e).__module__.startswith("sqlalchemy"):
        reason = _sqlite_refusal(e)
        if reason:
            return reason, 4  # StorageError.exit_code
    return None


class NasGroup(click.Group):
    """A click group whose every user error is one `nas: error:` line (see the module docstring)."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's `main`, with every user error mapped to one line by `user_error` (exit code kept)."""
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.Abort:
            fail("interrupted", 130)
        except Exception as e:  # noqa: BLE001 - mapped, or re-raised with its traceback
            mapped = user_error(e)
            if mapped is None:
                raise
            fail(*mapped)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


class Quantity(click.ParamType):
    """A physical quantity with a unit (`50uJ`, `5ms`), converted to J or s; finite and > 0."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = kind

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        """How --help shows the value: E[J|mJ|uJ|nJ|pJ] or T[s|ms|us|ns]."""
        return {"energy": "E[J|mJ|uJ|nJ|pJ]", "latency": "T[s|ms|us|ns]"}.get(self.kind, "Q")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        """`value` in J or s (nas.units.parse_quantity); a usage error naming the flag otherwise."""
        from nas.errors import ConfigError
        from nas.units import parse_quantity

        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        try:
            return parse_quantity(value, self.kind, "value")
        except ConfigError as e:
            self.fail(str(e).removeprefix("value: "), param, ctx)


class FiniteFloat(click.ParamType):
    """A float that is finite (no `nan`, `inf`) and, if `positive`, > 0."""

    name = "number"

    def __init__(self, positive: bool = True) -> None:
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        """`value` as a finite float (> 0 if `positive`); a usage error naming the flag otherwise."""
        try:
            f = float(value)
        except (TypeError, ValueError):
            self.fail(f"{one_line(str(value))[:60]!r} is not a number", param, ctx)
        if not math.isfinite(f):
            self.fail(f"expected a finite number, got {value!r}", param, ctx)
        if self.positive and f <= 0:
            self.fail(f"expected a number > 0, got {value!r}", param, ctx)
        return f


ENERGY = Quantity("energy")
LATENCY = Quantity("latency")
SECONDS = FiniteFloat(positive=True)


def given_options() -> set[str]:
    """Names of the current command's options given on the command line or by environment variable."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }


def echo_json(doc: Any) -> None:
    """Print `doc` as strict JSON on stdout."""
    from nas.atomic import dumps_json

    click.echo(dumps_json(doc))  # strict JSON: NaN and infinities become null
