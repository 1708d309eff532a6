"""The genotype: a sampled architecture, JSON-serialisable, from which a model is built."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nas.errors import ConfigError


@dataclass(frozen=True)
class Architecture:
    """One point of a search space.

    `params` holds the values sampled once (activation, dropout, precision...); `units` holds one
    mapping per repeated unit (an MLP layer, a CNN stage), so conditional per-unit values are simply
    absent where their condition does not hold. A nested repeated group (a layer's experts) is a
    list of mappings under its name inside each unit. Its readable label is the family's
    (`nas.models.architecture_label`).
    """

    family: str
    params: Mapping[str, Any] = field(default_factory=dict)
    units: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The genotype as plain JSON-ready data: family, params, units (copies)."""
        return {
            "family": self.family,
            "params": dict(self.params),
            "units": [dict(u) for u in self.units],
        }

    def to_json(self) -> str:
        """The genotype as canonical JSON (sorted keys): equal architectures give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, doc: Any, where: str = "architecture") -> Architecture:
        """Parse a genotype document (as `to_dict` writes it).

        Raises ConfigError, naming `where` and the field, for a non-mapping, a family that is not a
        string, params that are not a mapping or units that are not a list of mappings.
        """
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{where}: expected a mapping with family, params, units")
        family = doc.get("family")
        params = doc.get("params", {})
        units = doc.get("units", [])
        if not isinstance(family, str):
            raise ConfigError(f"{where}: field 'family': expected a string, got {family!r}")
        if not isinstance(params, Mapping):
            raise ConfigError(f"{where}: field 'params': expected a mapping")
        if not isinstance(units, list) or not all(isinstance(u, Mapping) for u in units):
            raise ConfigError(f"{where}: field 'units': expected a list of mappings")
        return cls(family=family, params=dict(params), units=tuple(dict(u) for u in units))
