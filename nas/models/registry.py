"""Registries of blocks, activations and model families.

Blocks and families register themselves with decorators (timm's habit); lookups of unknown names
fail fast and list the valid ones. Families from installed packages (entry point group
`energy_nas.families`, see nas/plugins.py) are loaded the first time a name is missing or the
list of families is asked for. This module never imports torch.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Callable
from typing import Any

from nas.errors import ConfigError
from nas.hardware import PRECISIONS  # noqa: F401  (re-exported: the formats models can run in)
from nas.models.family import Family
from nas.plugins import FAMILIES_GROUP, load_group
from nas.registry import lookup

BLOCKS: dict[str, Callable[..., Any]] = {}
FAMILIES: dict[str, Family] = {}
ACTIVATIONS: dict[str, Callable[[], Any]] = {}

_BUILTIN_LOADED = False


def register_block(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a block factory (in_ch, out_ch, kernel, stride, act, expansion) -> module."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        BLOCKS[name] = fn
        return fn

    return deco


def register_family(name: str) -> Callable[[type[Family]], type[Family]]:
    """Decorator: register a `Family` subclass under `name` (one instance is kept).

    Registering a name twice warns and keeps the newer family (timm's habit), so a plugin can
    override a built-in family on purpose and notice when it does so by accident.
    """

    def deco(cls: type[Family]) -> type[Family]:
        _add_family(name, cls)
        return cls

    return deco


def _add_family(name: str, obj: Any) -> None:
    instance = obj() if isinstance(obj, type) else obj
    if not isinstance(instance, Family):
        raise ConfigError(f"family {name!r}: {obj!r} is not a nas.models.Family")
    if name in FAMILIES and type(FAMILIES[name]) is not type(instance):
        warnings.warn(f"family {name!r} registered twice; the later registration wins", stacklevel=3)
    instance.name = name
    FAMILIES[name] = instance


def _register_entry_point(name: str, obj: Any) -> None:
    """An entry point names a module (it registers itself) or a Family class / instance."""
    if isinstance(obj, Family) or (isinstance(obj, type) and issubclass(obj, Family)):
        if name not in FAMILIES or type(FAMILIES[name]) is not (obj if isinstance(obj, type) else type(obj)):
            _add_family(name, obj)
    elif name not in FAMILIES:
        raise ConfigError(
            f"entry point {FAMILIES_GROUP}:{name} loaded, but registered no family {name!r} "
            f"(registered: {', '.join(sorted(FAMILIES)) or 'none'})"
        )


def load_builtin_families() -> None:
    """Import every module of nas.models once, so each built-in family registers itself.

    Adding a family means adding its module here and a YAML space; no list to edit.
    """
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    import nas.models as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"nas.models.{info.name}")


def load_plugin_families() -> None:
    """Load families from installed packages' `energy_nas.families` entry points (once)."""
    load_builtin_families()
    load_group(FAMILIES_GROUP, _register_entry_point)


def get_family(name: str) -> Family:
    """The registered family `name`; ConfigError listing the valid names when there is none."""
    if name not in FAMILIES:
        load_plugin_families()
    return lookup(FAMILIES, "family", name)


def family_names() -> tuple[str, ...]:
    """Every registered family, plugins included, sorted."""
    load_plugin_families()
    return tuple(sorted(FAMILIES))
