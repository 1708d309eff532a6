"""The family contract: one object per model family owns everything family-specific.

A family says which parameters a search space of it must and may declare (globally, per repeated
unit, and per nested unit), builds the `nn.Module` of an Architecture, gives each architecture a
readable label that no other architecture shares, prunes (or refuses to, naming why), lists the
precisions it can be deployed in, and offers the reference networks that `nas profiles calibrate`
measures. Nothing outside a family's module switches on its name.

A new family is a subclass registered with `@register_family("name")` in its own module (for a
built-in family, a module under nas/models/; for a third-party one, any module named by an
`energy_nas.families` entry point) plus a YAML search space.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError
from nas.hardware import PRECISIONS

if TYPE_CHECKING:
    from torch import nn

    from nas.architecture import Architecture
    from nas.searchspace import SearchSpace

# What a parameter's values must be; checked on every choice or on both ends of a range.
VALUE_KINDS = {
    "any": "any value",
    "positive_int": "positive integers",
    "fraction": "values in [0, 1)",
    "positive": "values > 0",
    "name": "names",
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter a space may declare: its name, whether it is required, what values it takes.

    `values` is a key of VALUE_KINDS; `choices`, when given, returns the valid names (a registry's
    keys) and every declared choice must be one of them. `doc` is the README's one-line description.
    """

    name: str
    required: bool = False
    values: str = "any"
    choices: Callable[[], Sequence[Any]] | None = None
    doc: str = ""

    def check(self, declared: Sequence[Any], kind: str) -> str | None:
        """Why the declared values (choices, or a range's ends of `kind`) are invalid, or None."""
        if self.choices is not None:
            valid = tuple(self.choices())
            for v in declared:
                if v not in valid:
                    return f"unknown {self.name} {v!r} (valid: {', '.join(map(str, valid))})"
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        if self.values == "positive_int":
            if kind == "float" or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in declared):
                return "expected positive integers"
        elif self.values == "fraction":
            if any(not number(v) or not 0 <= v < 1 for v in declared):
                return "expected values in [0, 1)"
        elif self.values == "positive":
            if any(not number(v) or v <= 0 for v in declared):
                return "expected values > 0"
        return None


@dataclass(frozen=True)
class GroupSpec:
    """A repeated group a space declares (`layers`, `stages`, per layer `experts`).

    Its `count` is searched; `params` are sampled once per unit; `groups` are nested repeated
    groups sampled once per unit of this group.
    """

    name: str
    params: tuple[ParamSpec, ...] = ()
    groups: tuple[GroupSpec, ...] = ()
    required: bool = True
    doc: str = ""


@dataclass(frozen=True)
class ReferenceNetwork:
    """A fixed network `nas profiles calibrate` measures: a name and its architecture document.

    `order` places it in calibration's small-to-large sequence across families (ties by name).
    """

    name: str
    architecture: Mapping[str, Any]
    order: float = 0.0


# Parameters every family may offer with the same meaning.
PRECISION = ParamSpec(
    "precision",
    values="name",
    choices=lambda: PRECISIONS,
    doc="deployment precision (fp32, bf16, fp16, int8), among the family's precisions",
)
PRUNE_RATIO = ParamSpec(
    "prune_ratio",
    values="fraction",
    doc="share of channels / hidden units removed by structured pruning after training",
)
DROPOUT = ParamSpec("dropout", values="fraction", doc="dropout probability during training")


def format_value(value: Any) -> str:
    """A value as labels show it: floats without trailing zeros, everything else as str."""
    return f"{value:g}" if isinstance(value, float) else str(value)


class Family:
    """Base class of a model family. Subclasses set `params`, `unit` and implement `build`.

    Optional behaviour (pruning, space checks, reference networks, shipped spaces) comes as
    methods with a default here (Optuna's habit): override what the family supports.
    """

    name: str = ""  # set by register_family
    description: str = ""
    params: tuple[ParamSpec, ...] = ()
    unit: GroupSpec = GroupSpec("units")
    precisions: tuple[str, ...] = PRECISIONS  # formats the family's networks deploy in
    prunable: bool = False  # whether `prune` is implemented

    # ---------------------------------------------------------------- required
    def build(self, arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """The float model of `arch` for inputs (C, H, W) and `num_classes` logits.

        Raises ConfigError when `arch` cannot be built for this input.
        """
        raise NotImplementedError

    # ---------------------------------------------------------------- optional
    def label(self, arch: Architecture) -> str:
        """A readable label that no other architecture shares: every value of the genotype.

        Families override it with a more compact form; it must stay injective (the contract
        tests check it over samples of each space).
        """

        def unit_text(unit: Mapping[str, Any]) -> str:
            parts = []
            for k in sorted(unit):
                v = unit[k]
                if isinstance(v, list):
                    parts.append(f"{k}=(" + "; ".join(unit_text(u) for u in v) + ")")
                else:
                    parts.append(f"{k}={format_value(v)}")
            return " ".join(parts)

        units = "; ".join(unit_text(u) for u in arch.units)
        params = " ".join(f"{k}={format_value(v)}" for k, v in sorted(arch.params.items()))
        return f"{arch.family}[{units}] {params}".strip()

    def prune(self, model: nn.Module, ratio: float) -> nn.Module:
        """`model` (a private copy) with `ratio` of its prunable units physically removed.

        The default refuses with a ConfigError; families that prune set `prunable` and override.
        """
        raise ConfigError(
            f"structured pruning is not defined for family {self.name!r} (remove prune_ratio from the space)"
        )

    def check_space(self, space: SearchSpace) -> None:
        """Family-specific checks across parameters (e.g. heads dividing widths); raise ConfigError."""

    def reference_networks(self) -> tuple[ReferenceNetwork, ...]:
        """Fixed networks calibration measures for this family (none by default)."""
        return ()

    def degenerate(self, arch: Architecture) -> str | None:
        """Why the network of `arch` cannot learn (its output does not depend on its input, so its
        accuracy is chance whatever the training), or None. Samplers that see it skip such genotypes.

        None by default; NAS-Bench-201 cells whose every input-to-output path has a `none` edge
        are degenerate.
        """
        return None

    def spaces(self) -> tuple[Path, ...]:
        """YAML search spaces this family ships outside search_spaces/ (a plugin's own spaces)."""
        return ()

    def __repr__(self) -> str:
        return f"<family {self.name!r} ({type(self).__module__}.{type(self).__qualname__})>"
