"""The `ssm` family: a stack of selective state-space layers over image tokens (rows or patches).

Each layer is a pre-norm residual block around a Mamba-style mixer (Gu and Dao, 2023), written
with plain PyTorch ops: a gated input projection to `expansion` x width channels, per channel a
diagonal state of `state` values (S4D-real initialisation A = -(1..N), Gu et al., NeurIPS 2022),
input-dependent step size, input and output projections (the selective scan), a skip term D, the
SiLU gate and an output projection. The scan is a recurrence over the tokens:

    h_t = exp(delta_t A) * h_{t-1} + (delta_t x_t) B_t        y_t = C_t . h_t + D x_t

run step by step (linear in the number of tokens, no T x T term). The state update is
`torch.addcmul`, whose multiply-adds FlopCounterMode does not know; nas.models registers them
(ELEMENTWISE_MACS), and the input and output products are einsums it counts. Mamba's short causal
convolution and its hardware-aware parallel scan are left out.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas.architecture import Architecture
from nas.models.family import DROPOUT, Family, GroupSpec, ParamSpec, ReferenceNetwork, format_value
from nas.models.registry import register_family
from nas.models.tokens import PATCH_SIZE, TOKENS
from nas.models.transformer import (
    PRECISION_SEQ,
    SEQUENCE_PRECISIONS,
    WIDTH,
    Block,
    SequenceClassifier,
    token_label,
)


class SelectiveScan(nn.Module):
    """Mamba-style mixer: (N, T, width) -> (N, T, width), linear in T.

    `expansion` x width inner channels, each with a diagonal state of `state` values; the step
    size goes through a low-rank projection of rank ceil(width / 16) as in Mamba.
    """

    def __init__(self, width: int, state: int, expansion: int, dropout: float) -> None:
        super().__init__()
        inner = expansion * width
        self.inner, self.state = inner, state
        self.rank = math.ceil(width / 16)
        self.in_proj = nn.Linear(width, 2 * inner)
        self.x_proj = nn.Linear(inner, self.rank + 2 * state, bias=False)
        self.dt_proj = nn.Linear(self.rank, inner)
        self.a_log = nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.d = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, width) -> (N, T, width): gated selective scan over the T tokens, one step per token."""
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (N, T, inner) each
        u = F.silu(u)
        dt_low, b, c = self.x_proj(u).split([self.rank, self.state, self.state], dim=-1)
        delta = F.softplus(self.dt_proj(dt_low))  # (N, T, inner)
        a = -torch.exp(self.a_log)  # (inner, state)
        decay = torch.exp(delta.unsqueeze(-1) * a)  # (N, T, inner, state)
        drive = torch.einsum("ntd,nts->ntds", delta * u, b)  # input product, counted
        h = torch.zeros_like(drive[:, 0])
        states = []
        for t in range(drive.shape[1]):
            h = torch.addcmul(drive[:, t], decay[:, t], h)  # h_t = decay_t * h_{t-1} + drive_t
            states.append(h)
        y = torch.einsum("ntds,nts->ntd", torch.stack(states, dim=1), c)  # output product, counted
        y = (y + u * self.d) * F.silu(z)
        return self.drop(self.out_proj(y))


@register_family("ssm")
class SSM(Family):
    """Stack of selective state-space (Mamba-style) layers over image tokens."""

    description = "selective state-space (Mamba-style) layers over image rows or patches"
    params = (
        TOKENS,
        PATCH_SIZE,
        WIDTH,
        ParamSpec(
            "pooling",
            required=True,
            values="name",
            choices=lambda: ("mean", "last"),
            doc="`mean` over tokens or the `last` token's state",
        ),
        DROPOUT,
        PRECISION_SEQ,
    )
    unit = GroupSpec(
        "layers",
        (
            ParamSpec("state", required=True, values="positive_int", doc="state size N per channel"),
            ParamSpec("expansion", required=True, values="positive_int", doc="inner channels / width"),
        ),
        doc="state-space layers (depth = count)",
    )
    precisions = SEQUENCE_PRECISIONS

    def check_space(self, space: Any) -> None:
        """Patches need a declared patch size."""
        from nas.errors import ConfigError
        from nas.models.transformer import _values

        if "patches" in _values(space.params, "tokens") and not _values(space.params, "patch_size"):
            raise ConfigError(f"{space.source}: field 'params.patch_size': is required when tokens may be 'patches'")

    def build(self, arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """The state-space classifier; (N, C, H, W) -> (N, classes). No position embedding: the
        recurrence is ordered."""
        width = int(arch.params["width"])
        dropout = float(arch.params.get("dropout", 0.0))
        blocks = [
            Block(width, SelectiveScan(width, int(u["state"]), int(u["expansion"]), dropout), None) for u in arch.units
        ]
        return SequenceClassifier(input_shape, arch.params, blocks, width, num_classes, positions=False)

    def label(self, arch: Architecture) -> str:
        """E.g. `ssm rows w64 [n16 e2, n8 e2] mean`: every genotype value appears."""
        layers = ", ".join(f"n{u['state']} e{u['expansion']}" for u in arch.units)
        extras = []
        if arch.params.get("dropout"):
            extras.append(f"drop{format_value(arch.params['dropout'])}")
        if "precision" in arch.params:
            extras.append(str(arch.params["precision"]))
        text = f"ssm {token_label(arch.params)} w{arch.params['width']} [{layers}] {arch.params['pooling']}"
        return f"{text} {' '.join(extras)}".strip()

    def reference_networks(self) -> tuple[ReferenceNetwork, ...]:
        """A state-space stack over 32 image rows: the recurrence's elementwise work in the fit."""
        return (
            ReferenceNetwork(
                "ssm-64x2",
                {
                    "family": "ssm",
                    "params": {"tokens": "rows", "width": 64, "pooling": "mean"},
                    "units": [{"state": 16, "expansion": 2} for _ in range(2)],
                },
                12,
            ),
        )
