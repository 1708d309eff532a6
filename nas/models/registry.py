"""Registries of blocks, activations and model families.

Blocks and families register themselves with decorators; lookups of unknown names fail fast and
list the valid ones. Family schemas are data: which parameters a space of that family must and may
declare, globally and per repeated unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas.hardware import PRECISIONS  # noqa: F401  (re-exported: the formats models can run in)
from nas.registry import lookup  # noqa: F401  (re-exported: the families' modules use it)

BLOCKS: dict[str, Callable[..., Any]] = {}
FAMILIES: dict[str, FamilySchema] = {}
ACTIVATIONS: dict[str, Callable[[], Any]] = {}
# parameters whose values are names a family defines (e.g. nb201's edges -> its operations)
PARAM_CHOICES: dict[str, tuple[str, ...]] = {}


@dataclass(frozen=True)
class FamilySchema:
    """What a search space of one family declares, and the function that builds its models."""

    name: str
    unit: str  # the name of the repeated group in the YAML: "layers" or "stages"
    required: frozenset[str]
    optional: frozenset[str]
    unit_required: frozenset[str]
    unit_optional: frozenset[str]
    build: Callable[..., Any]


def register_block(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a block factory `fn(in_ch, out_ch, kernel, stride, act, ...)` as `name`."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        BLOCKS[name] = fn
        return fn

    return deco


def register_family(
    name: str,
    *,
    unit: str,
    required: set[str],
    optional: set[str],
    unit_required: set[str],
    unit_optional: set[str],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a model family's builder with the parameter names its genotype must and
    may hold (top-level and per unit); the space loader checks documents against them.
    """
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        FAMILIES[name] = FamilySchema(
            name,
            unit,
            frozenset(required),
            frozenset(optional),
            frozenset(unit_required),
            frozenset(unit_optional),
            fn,
        )
        return fn

    return deco


def valid_choices(param: str) -> tuple[str, ...] | None:
    """For parameters whose values are names from a registry, the valid names."""
    if param == "block":
        return tuple(sorted(BLOCKS))
    if param == "activation":
        return tuple(sorted(ACTIVATIONS))
    if param == "precision":
        return PRECISIONS
    return PARAM_CHOICES.get(param)
