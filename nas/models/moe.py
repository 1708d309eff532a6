"""The `moe` family: the transformer with mixture-of-experts feed-forward layers.

Each layer's feed-forward is a set of experts (a nested repeated group: per layer a number of
experts, each with its own hidden width) and a linear router. Every token goes to its `top_k`
experts only (Shazeer et al., ICLR 2017; Switch Transformer, Fedus et al., JMLR 2022): the forward
gathers each expert's tokens and runs the expert on those alone, so the work done, and what
FlopCounterMode counts, is the router plus the chosen experts, never all experts. A 16-expert
top-1 layer costs about what one expert's dense feed-forward costs, while holding 16 times its
parameters. Router `softmax` gates with the chosen experts' softmax probabilities (Switch);
`sigmoid` gates with sigmoid scores renormalised over the chosen experts (DeepSeek-V3, 2024).
No auxiliary load-balancing loss is added (the search's training loop is the same for every
family).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nas.architecture import Architecture
from nas.models.family import GroupSpec, ParamSpec, ReferenceNetwork
from nas.models.registry import register_family
from nas.models.transformer import FeedForward, Transformer

ROUTERS = ("softmax", "sigmoid")


class MixtureOfExperts(nn.Module):
    """Top-k routed experts: (N, T, width) -> (N, T, width); only chosen experts compute.

    `widths` are the experts' hidden widths; `top_k` is capped at the number of experts.
    """

    def __init__(
        self,
        width: int,
        widths: list[int],
        top_k: int,
        router: str,
        act: type[nn.Module],
        dropout: float,
    ) -> None:
        super().__init__()
        self.router = nn.Linear(width, len(widths))
        self.experts = nn.ModuleList(FeedForward(width, w, act, dropout) for w in widths)
        self.top_k = max(1, min(int(top_k), len(widths)))
        self.gating = router

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, width) -> (N, T, width): route each token to its top-k experts and mix their outputs."""
        n, t, w = x.shape
        flat = x.reshape(n * t, w)
        logits = self.router(flat)
        scores = logits.softmax(dim=-1) if self.gating == "softmax" else torch.sigmoid(logits)
        top_scores, top_experts = torch.topk(scores, self.top_k, dim=-1)  # (N*T, k)
        if self.gating == "sigmoid":
            top_scores = top_scores / top_scores.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            chosen = top_experts == e  # (N*T, k)
            rows = chosen.any(dim=-1).nonzero().squeeze(-1)  # the tokens routed to expert e
            gate = (top_scores * chosen).sum(dim=-1).index_select(0, rows)
            out = out.index_add(0, rows, expert(flat.index_select(0, rows)) * gate.unsqueeze(-1))
        return out.reshape(n, t, w)


@register_family("moe")
class MoE(Transformer):
    """Transformer encoder whose feed-forward layers are top-k routed mixtures of experts."""

    description = "transformer encoder with top-k routed mixture-of-experts feed-forward layers"
    params = (
        *Transformer.params,
        ParamSpec(
            "router",
            required=True,
            values="name",
            choices=lambda: ROUTERS,
            doc="gating: `softmax` (Switch) or `sigmoid` renormalised over the chosen experts",
        ),
    )
    unit = GroupSpec(
        "layers",
        (
            ParamSpec(
                "heads",
                required=True,
                values="positive_int",
                doc="attention heads (must divide width)",
            ),
            ParamSpec(
                "top_k",
                required=True,
                values="positive_int",
                doc="experts each token goes to (capped at the layer's experts)",
            ),
        ),
        groups=(
            GroupSpec(
                "experts",
                (
                    ParamSpec(
                        "width",
                        required=True,
                        values="positive_int",
                        doc="the expert's hidden width",
                    ),
                ),
                doc="the layer's experts (number of experts = count)",
            ),
        ),
        doc="encoder layers (depth = count)",
    )

    def ffn(
        self,
        arch: Architecture,
        unit: Mapping[str, Any],
        width: int,
        act: type[nn.Module],
        dropout: float,
    ) -> nn.Module:
        """The layer's mixture of experts."""
        widths = [int(e["width"]) for e in unit["experts"]]
        return MixtureOfExperts(width, widths, int(unit["top_k"]), str(arch.params["router"]), act, dropout)

    def unit_label(self, unit: Mapping[str, Any]) -> str:
        """One layer: heads, top-k and the experts' widths, e.g. `h4 top2 e(64,64,128)`."""
        experts = ",".join(str(e["width"]) for e in unit["experts"])
        return f"h{unit['heads']} top{unit['top_k']} e({experts})"

    def label(self, arch: Architecture) -> str:
        """E.g. `moe rows w64 softmax [h4 top1 e(64,64), h2 top2 e(32,32,32)] mean gelu`."""
        return (
            super()
            .label(arch)
            .replace(
                f" w{arch.params['width']} ",
                f" w{arch.params['width']} {arch.params['router']} ",
                1,
            )
        )

    def reference_networks(self) -> tuple[ReferenceNetwork, ...]:
        """An 8-expert top-1 encoder: many parameters, few of them read per inference."""
        return (
            ReferenceNetwork(
                "moe-64x2-8e",
                {
                    "family": "moe",
                    "params": {
                        "tokens": "patches",
                        "patch_size": 8,
                        "width": 64,
                        "pooling": "mean",
                        "router": "softmax",
                    },
                    "units": [{"heads": 4, "top_k": 1, "experts": [{"width": 256}] * 8} for _ in range(2)],
                },
                11,
            ),
        )
