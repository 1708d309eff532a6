"""The `mlp` family: flatten, then `units` hidden layers of their own width."""

from __future__ import annotations

import math

from torch import nn

from nas.architecture import Architecture
from nas.models.registry import ACTIVATIONS, lookup, register_family


@register_family(
    "mlp",
    unit="layers",
    required={"activation", "dropout"},
    optional={"precision", "prune_ratio"},
    unit_required={"width"},
    unit_optional=set(),
)
def build_mlp(arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """An MLP from the genotype: flatten, one Linear + activation (+ dropout) per unit, a classifier.

    The model maps (N, *input_shape) to logits (N, num_classes).
    """
    act = lookup(ACTIVATIONS, "activation", arch.params["activation"])
    dropout = float(arch.params.get("dropout", 0.0))
    layers: list[nn.Module] = [nn.Flatten()]
    width_in = math.prod(input_shape)
    for unit in arch.units:
        width = int(unit["width"])
        layers += [nn.Linear(width_in, width), act()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width_in = width
    layers.append(nn.Linear(width_in, num_classes))
    return nn.Sequential(*layers)
