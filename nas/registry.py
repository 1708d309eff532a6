"""String-to-thing lookups shared by every registry (families, blocks, meters, samplers, ...).

A leaf module: an unknown name fails fast with a ConfigError that lists the valid names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from nas.errors import ConfigError

T = TypeVar("T")


def lookup(registry: Mapping[str, T], kind: str, name: str) -> T:
    """`registry[name]`, or ConfigError "unknown KIND 'NAME' (valid: ...)" listing the valid names."""
    try:
        return registry[name]
    except KeyError:
        valid = ", ".join(sorted(registry)) or "none"
        raise ConfigError(f"unknown {kind} {name!r} (valid: {valid})") from None


__all__ = ["lookup"]
