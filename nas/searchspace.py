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
    """A group of parameters sampled once per unit; `count` is itself searched.

    `groups` are nested repeated groups, sampled once per unit of this one (per layer, its
    experts); their values sit in each unit under the nested group's name, as a list of units.
    """

    name: str
    count: Param
    params: tuple[Param, ...]
    groups: tuple[Repeated, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The group as a YAML-shaped mapping: count, params and nested groups by name."""
        return {
            "count": self.count.to_dict(),
            "params": {p.name: p.to_dict() for p in self.params},
            **{g.name: g.to_dict() for g in self.groups},
        }


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space of one family, or (with `families`) a choice between families.

    For a choice, `family` reads `cnn|ssm|...`, `params` is empty, `repeated` is None and each of
    `families` is the space of one family (its `family` names it).
    """

    name: str
    family: str
    description: str
    params: tuple[Param, ...]
    repeated: Repeated | None
    source: str
    families: tuple[SearchSpace, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The space as a YAML-shaped document (what is stored with the study)."""
        if self.families:
            return {
                "name": self.name,
                "description": self.description,
                "families": {f.family: _family_body(f) for f in self.families},
            }
        return {"name": self.name, "family": self.family, "description": self.description, **_family_body(self)}

    def has(self, name: str) -> bool:
        """Whether a global parameter `name` is declared (in any family of a choice)."""
        return any(p.name == name for p in self.params) or any(f.has(name) for f in self.families)

    def alternatives(self) -> tuple[SearchSpace, ...]:
        """The single-family spaces this space samples from: its families, or itself."""
        return self.families or (self,)


def _family_body(space: SearchSpace) -> dict[str, Any]:
    """One family's `params` and repeated group as a YAML-shaped mapping."""
    if space.repeated is None:
        return {"params": {p.name: p.to_dict() for p in space.params}}
    return {"params": {p.name: p.to_dict() for p in space.params}, space.repeated.name: space.repeated.to_dict()}


__all__ = ["Param", "Repeated", "SearchSpace"]
