"""Search-space types: what a search space YAML file becomes once `nas.config` has validated it.

A leaf module (no imports from `nas`), so every layer can name these types without loading the
loaders or the registries they check against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    """One searchable parameter: categorical (`choices`) or a numeric range (`low`/`high`)."""

    name: str
    kind: str  # "choice" | "int" | "float"
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (param, allowed values) that must all hold

    def to_dict(self) -> dict[str, Any]:
        """The parameter as its YAML document: choices, or type, low, high (step, log), and conditions."""
        d: dict[str, Any] = {}
        if self.kind == "choice":
            d["choices"] = list(self.choices)
        else:
            d.update(type=self.kind, low=self.low, high=self.high)
            if self.step is not None:
                d["step"] = self.step
            if self.log:
                d["log"] = True
        if self.when:
            d["when"] = {k: list(v) for k, v in self.when}
        return d

    def describe(self) -> str:
        """One line for `nas spaces show`: the choices or the range, and when the parameter exists."""
        if self.kind == "choice":
            text = "{" + ", ".join(map(str, self.choices)) + "}"
        else:
            step = f" step {self.step:g}" if self.step else ""
            text = f"[{self.low:g}, {self.high:g}]{step}{' log' if self.log else ''} ({self.kind})"
        if self.when:
            text += "  when " + ", ".join(f"{k} in {list(v)}" for k, v in self.when)
        return text


@dataclass(frozen=True)
class Repeated:
    """A group of parameters sampled once per unit; `count` is itself searched."""

    name: str
    count: Param
    params: tuple[Param, ...]


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space (from YAML): the family it builds, its top-level parameters, the
    repeated units (a count plus per-unit parameters), and the file it came from.
    """

    name: str
    family: str
    description: str
    params: tuple[Param, ...]
    repeated: Repeated
    source: str

    def to_dict(self) -> dict[str, Any]:
        """The space as a YAML-shaped document (what is stored with the study)."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "params": {p.name: p.to_dict() for p in self.params},
            self.repeated.name: {
                "count": self.repeated.count.to_dict(),
                "params": {p.name: p.to_dict() for p in self.repeated.params},
            },
        }

    def has(self, name: str) -> bool:
        """Whether the space has a top-level parameter named `name`."""
        return any(p.name == name for p in self.params)


__all__ = ["Param", "Repeated", "SearchSpace"]
