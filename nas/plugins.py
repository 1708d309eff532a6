"""Third-party registrations through Python entry points, loaded lazily and once per group.

An installed package extends energy-nas by declaring entry points in one of these groups (its
`pyproject.toml`, `[project.entry-points."energy_nas.families"]` and so on):

- `energy_nas.families`: NAME = "pkg.module" or "pkg.module:FamilyClass" (a `nas.models.Family`)
- `energy_nas.datasets`: NAME = "pkg.module" or "pkg.module:loader" (a `nas.data` loader)
- `energy_nas.meters`:   NAME = "pkg.module:MeterClass" (a `nas.energy.Meter` subclass)

Loading an entry point imports its module, which may register itself with the registry's
decorator; when the entry point names an object, the registry registers that object under the
entry point's name. Registries call `load_group` the first time a name is missing or a listing is
asked for, so `import nas` stays light and a plugin works in every command. A plugin that fails to
import is reported as a ConfigError naming the distribution and entry point (one line, no
traceback), never silently skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from nas.errors import ConfigError

FAMILIES_GROUP = "energy_nas.families"
DATASETS_GROUP = "energy_nas.datasets"
METERS_GROUP = "energy_nas.meters"

_loaded: set[str] = set()


def group_entry_points(group: str) -> tuple[EntryPoint, ...]:
    """The installed entry points of `group`, sorted by name (empty when none is installed)."""
    return tuple(sorted(entry_points(group=group), key=lambda ep: ep.name))


def load_group(group: str, register: Callable[[str, Any], None]) -> None:
    """Load every entry point of `group` once, passing (name, loaded object) to `register`.

    Raises ConfigError when an entry point cannot be imported. Later calls do nothing, so
    registries may call this on every miss.
    """
    if group in _loaded:
        return
    _loaded.add(group)
    for ep in group_entry_points(group):
        try:
            obj = ep.load()
        except Exception as e:  # a plugin's own bug: named, never hidden
            dist = ep.dist.name if ep.dist is not None else "an installed package"
            _loaded.discard(group)
            raise ConfigError(
                f"entry point {group}:{ep.name} = {ep.value!r} from {dist} failed to load "
                f"({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            ) from e
        register(ep.name, obj)


def reset(group: str | None = None) -> None:
    """Forget which groups were loaded (tests that install a plugin mid-session call this)."""
    if group is None:
        _loaded.clear()
    else:
        _loaded.discard(group)
