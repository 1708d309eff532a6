"""The `mlp` family: flatten, then `layers` hidden layers of their own width."""

from __future__ import annotations

import math

from torch import nn

from nas.architecture import Architecture
from nas.models.blocks import activation_spec
from nas.models.family import (
    DROPOUT,
    PRECISION,
    PRUNE_RATIO,
    Family,
    GroupSpec,
    ParamSpec,
    ReferenceNetwork,
    format_value,
)
from nas.models.pruning import slice_linear, top_indices
from nas.models.registry import ACTIVATIONS, lookup, register_family


def _reference(name: str, widths: list[int], order: float) -> ReferenceNetwork:
    return ReferenceNetwork(
        name,
        {
            "family": "mlp",
            "params": {"activation": "relu", "dropout": 0.0},
            "units": [{"width": w} for w in widths],
        },
        order,
    )


@register_family("mlp")
class MLP(Family):
    """Multi-layer perceptron over the flattened input; prunes hidden units by incoming L1 norm."""

    description = "multi-layer perceptron over the flattened input"
    params = (
        activation_spec(),
        ParamSpec("dropout", required=True, values="fraction", doc=DROPOUT.doc),
        PRECISION,
        PRUNE_RATIO,
    )
    unit = GroupSpec(
        "layers",
        (ParamSpec("width", required=True, values="positive_int", doc="hidden units"),),
        doc="hidden layers",
    )
    prunable = True

    def build(self, arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """Flatten - (Linear - activation - dropout) per layer - Linear head; (N, C, H, W) -> (N, classes)."""
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

    def label(self, arch: Architecture) -> str:
        """E.g. `mlp[128, 64] relu drop0.1 int8 prune0.25` (every genotype value appears)."""
        widths = ", ".join(str(u["width"]) for u in arch.units)
        extras = [str(arch.params.get("activation", ""))]
        if arch.params.get("dropout"):
            extras.append(f"drop{format_value(arch.params['dropout'])}")
        if "precision" in arch.params:
            extras.append(str(arch.params["precision"]))
        if arch.params.get("prune_ratio"):
            extras.append(f"prune{format_value(arch.params['prune_ratio'])}")
        return f"mlp[{widths}] {' '.join(e for e in extras if e)}".strip()

    def prune(self, model: nn.Module, ratio: float) -> nn.Module:
        """Remove `ratio` of each hidden layer's units, lowest L1 norm of incoming weights first."""
        linears = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
        in_idx = None
        for i in linears[:-1]:
            lin = model[i]
            out_idx = top_indices(lin.weight.detach().abs().sum(dim=1), ratio)
            model[i] = slice_linear(lin, out_idx, in_idx)
            in_idx = out_idx
        model[linears[-1]] = slice_linear(model[linears[-1]], None, in_idx)
        return model

    def reference_networks(self) -> tuple[ReferenceNetwork, ...]:
        """MLPs whose fp32 weights span ~0.2 MB to ~120 MB: byte-heavy against the CNNs' MACs."""
        return (
            _reference("mlp-64", [64], order=0),
            _reference("mlp-512-256", [512, 256], order=1),
            _reference("mlp-1024x4", [1024, 1024, 1024, 1024], order=5),
            _reference("mlp-2048x2", [2048, 2048], order=7),
            _reference("mlp-4096x2", [4096, 4096], order=8),
        )
