"""The `resmlp` family: flatten, embed, then residual MLP blocks (x + W2 act(W1 LN(x))), LayerNorm, head.

Registering is the decorator below; the space it ships (resmlp.yaml) is returned by `spaces()`.
It does not prune: the base class's refusal stands.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from nas.models import ACTIVATIONS, Family, GroupSpec, ParamSpec, lookup, register_family


class ResidualMLP(nn.Module):
    """x + Linear(act(Linear(LayerNorm(x)))): (N, width) -> (N, width)."""

    def __init__(self, width: int, hidden: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), act(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_family("resmlp")
class ResMLP(Family):
    """Residual MLP over the flattened image."""

    description = "residual MLP blocks over the flattened input (example plugin)"
    params = (
        ParamSpec("activation", required=True, values="name", choices=lambda: sorted(ACTIVATIONS)),
        ParamSpec("width", required=True, values="positive_int", doc="residual stream width"),
    )
    unit = GroupSpec("blocks", (ParamSpec("hidden", required=True, values="positive_int", doc="block hidden width"),))
    precisions = ("fp32", "bf16")

    def build(self, arch, input_shape, num_classes):
        """(N, C, H, W) -> (N, classes)."""
        width = int(arch.params["width"])
        act = lookup(ACTIVATIONS, "activation", arch.params["activation"])
        blocks = [ResidualMLP(width, int(u["hidden"]), act) for u in arch.units]
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), width),
            *blocks,
            nn.LayerNorm(width),
            nn.Linear(width, num_classes),
        )

    def label(self, arch):
        """E.g. `resmlp w64 [32, 128] relu`."""
        hidden = ", ".join(str(u["hidden"]) for u in arch.units)
        return f"resmlp w{arch.params['width']} [{hidden}] {arch.params['activation']}"

    def spaces(self):
        """The search space this package ships."""
        return (Path(__file__).with_name("resmlp.yaml"),)
