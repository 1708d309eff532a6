"""Reading YAML at the edge: `read_yaml` and `Doc`, typed field access whose errors name file and field.

A leaf module (it imports only `nas.errors`): the loaders of search spaces, hardware profiles and
anything else read from YAML share it, so every bad value is reported the same way.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas.errors import ConfigError


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with `nas.yamlio.load_yaml` (safe, bounded, unique keys); one-line ConfigError."""
    from nas.yamlio import load_yaml

    return load_yaml(path)


MAX_INT = 2**31 - 1  # counts, sizes and indexes beyond this are typos, and overflow downstream
MAX_TEXT = 2000  # characters in a free-text field (a description, a source): a paragraph, not a book
MAX_NUMBER = 1e30  # profile coefficients are bounded so that their products stay finite (float max 1.8e308)
MIN_POSITIVE = 1e-30  # ... and so that dividing by them does too


def _finite(value: Any) -> float | None:
    """`value` as a finite float, or None when it is not a number or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    return f if math.isfinite(f) else None


def show_value(value: Any) -> str:
    """A short, one-line repr for error messages, whatever the value (huge, nested, aliased)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    short = reprlib.Repr()  # keyword arguments only from Python 3.12
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple, short.maxset = 2, 4, 4, 4, 4
    short.maxstring, short.maxother, short.maxlong = 60, 60, 40
    try:
        text = short.repr(value)
    except Exception:  # a value whose repr itself fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def field_name(key: Any) -> str:
    """A field name fit for a one-line message: control characters escaped, long names cut."""
    text = str(key)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 40 else text[:37] + "..."


_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def _yaml11_float(value: Any) -> Any:
    """YAML 1.1 reads `1e-12` (no dot) as a string; take it as the number the author meant."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    return value


class Doc:
    """A mapping read from one file, with typed getters whose errors name file and field."""

    def __init__(self, data: Any, file: str, path: str = "") -> None:
        self.file, self.path = file, path
        if not isinstance(data, Mapping):
            raise self.error("expected a mapping", data)
        self.data = data

    def field(self, key: str) -> str:
        """The dotted field name of `key` in this document (e.g. `device.precisions`)."""
        return f"{self.path}.{field_name(key)}" if self.path else field_name(key)

    def error(self, expected: str, got: Any = None, key: str | None = None) -> ConfigError:
        """A ConfigError naming the file and field, what was `expected` and (if given) what was `got`."""
        where = self.field(key) if key is not None else (self.path or "(top level)")
        shown = f", got {show_value(got)}" if got is not None else ""
        return ConfigError(f"{self.file}: field '{where}': {expected}{shown}")

    def has(self, key: str) -> bool:
        """Whether the mapping holds `key`."""
        return key in self.data

    def raw(self, key: str, default: Any = ...) -> Any:
        """The value of `key` as read; `default` when absent, or ConfigError "is required" without one."""
        if key not in self.data:
            if default is ...:
                raise self.error("is required", key=key)
            return default
        return self.data[key]

    def sub(self, key: str, default: Any = ...) -> Doc:
        """The mapping under `key` as a Doc (its errors name the nested field); ConfigError if not a mapping."""
        value = self.raw(key, default)
        return Doc(value, self.file, self.field(key))

    def str(self, key: str, default: Any = ...) -> str:
        """A non-empty string (or a None `default`); ConfigError otherwise."""
        value = self.raw(key, default)
        if not isinstance(value, str) or not value.strip():
            if value is default and default is None:
                return value
            raise self.error("expected a non-empty string", value, key)
        return self.check_text(value, key)

    def text(self, key: str, default: str = "") -> str:
        """A free-text field: a string (possibly empty) of at most MAX_TEXT characters."""
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error("expected a string", value, key)
        return self.check_text(value, key)

    def check_text(self, value: str, key: str) -> str:
        """`value`, or ConfigError naming `key` if it is longer than MAX_TEXT characters."""
        if len(value) > MAX_TEXT:
            raise self.error(f"expected at most {MAX_TEXT} characters", f"{len(value)} characters", key)
        return value

    def int(self, key: str, default: Any = ..., low: int | None = None) -> int:
        """An integer (not a bool), at least `low` if given and at most MAX_INT in size; ConfigError otherwise."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error("expected an integer", value, key)
        if low is not None and value < low:
            raise self.error(f"expected an integer >= {low}", value, key)
        if abs(value) > MAX_INT:
            raise self.error(f"expected an integer of at most {MAX_INT}", value, key)
        return value

    def number(self, key: str, default: Any = ..., positive: bool = False) -> float:
        """A finite number >= 0 (> 0 with `positive`) as float; `1e-12` written without a dot counts.

        Raises ConfigError otherwise.
        """
        value = _finite(_yaml11_float(self.raw(key, default)))
        if value is None:
            raise self.error("expected a finite number", self.raw(key, default), key)
        if positive and value <= 0:
            raise self.error("expected a number > 0", value, key)
        if value < 0:
            raise self.error("expected a number >= 0", value, key)
        if value > MAX_NUMBER or 0 < value < MIN_POSITIVE:
            raise self.error(f"expected 0 or a number in [{MIN_POSITIVE:g}, {MAX_NUMBER:g}]", value, key)
        return float(value)

    def real(self, key: str) -> float:
        """Any finite number, negative included."""
        value = _finite(_yaml11_float(self.raw(key)))
        if value is None:
            raise self.error("expected a finite number", self.raw(key), key)
        if abs(value) > MAX_NUMBER:
            raise self.error(f"expected a number of magnitude at most {MAX_NUMBER:g}", value, key)
        return value

    def check_keys(self, allowed: set[str] | frozenset[str]) -> None:
        """Raise ConfigError for the first key not in `allowed`, listing the valid ones."""
        for key in self.data:
            if key not in allowed:
                raise self.error(f"unknown field (valid: {', '.join(sorted(allowed))})", key=str(key))


__all__ = ["MAX_INT", "Doc", "field_name", "read_yaml", "show_value"]
