"""The genotype: a sampled architecture, JSON-serialisable, from which a model is built."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nas.errors import ConfigError

# family -> its own short label of a genotype (families whose genotype reads better in their
# field's notation register here, e.g. nb201's cell string); others use the generic summary
DESCRIBERS: dict[str, Callable[[Architecture], str]] = {}


@dataclass(frozen=True)
class Architecture:
    """One point of a search space.

    `params` holds the values sampled once (activation, dropout, precision...); `units` holds one
    mapping per repeated unit (an MLP layer, a CNN stage), so conditional per-unit values are simply
    absent where their condition does not hold.
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

    def describe(self) -> str:
        """A short human-readable summary, e.g. `mlp[128,64] relu`; nb201 cells as their cell string."""
        if self.family in DESCRIBERS:
            return DESCRIBERS[self.family](self)
        unit_keys = ("width",) if self.family == "mlp" else ("block", "channels", "repeats")
        parts = []
        for u in self.units:
            parts.append("/".join(str(u[k]) for k in unit_keys if k in u))
        extras = [str(self.params[k]) for k in ("activation", "precision") if k in self.params]
        if self.params.get("prune_ratio"):
            extras.append(f"prune{self.params['prune_ratio']}")
        return f"{self.family}[{', '.join(parts)}] {' '.join(extras)}".strip()
