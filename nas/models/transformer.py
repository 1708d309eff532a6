"""The `transformer` family: a pre-norm encoder over image tokens (rows or patches).

tokens -> linear embedding + learned positions (+ a class token) -> `layers` pre-norm blocks
(x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)); Xiong et al., ICML 2020) -> LayerNorm ->
class token or mean over tokens -> linear head. Attention is written with plain matmuls
(softmax(Q K^T / sqrt(d_head)) V), so PyTorch's FlopCounterMode counts its score and value
products, which grow with the square of the number of tokens. Per layer the number of heads and
the MLP ratio are searched (AutoFormer's space, Chen et al., ICCV 2021); the model width is shared
by the residual stream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nas.architecture import Architecture
from nas.errors import ConfigError
from nas.models.blocks import activation_spec
from nas.models.family import (
    DROPOUT,
    Family,
    GroupSpec,
    ParamSpec,
    ReferenceNetwork,
    format_value,
)
from nas.models.registry import ACTIVATIONS, lookup, register_family
from nas.models.tokens import PATCH_SIZE, TOKENS, Tokenize, token_layout

SEQUENCE_PRECISIONS = ("fp32", "bf16", "fp16")  # FX int8 does not quantize attention's matmuls

WIDTH = ParamSpec("width", required=True, values="positive_int", doc="model width (embedding size of every token)")
POOLING = ParamSpec(
    "pooling",
    required=True,
    values="name",
    choices=lambda: ("cls", "mean"),
    doc="`cls` (a learned class token) or `mean` over tokens",
)
PRECISION_SEQ = ParamSpec(
    "precision",
    values="name",
    choices=lambda: SEQUENCE_PRECISIONS,
    doc="deployment precision (fp32, bf16, fp16)",
)


def _values(space: Any, name: str) -> tuple[Any, ...]:
    """Every value a declared parameter can take (a choice's choices, an int range's integers)."""
    p = next((q for q in space if q.name == name), None)
    if p is None:
        return ()
    if p.kind == "choice":
        return p.choices
    step = int(p.step or 1)
    return tuple(range(int(p.low), int(p.high) + 1, step))[:4096]


class SelfAttention(nn.Module):
    """Multi-head self-attention with explicit matmuls: (N, T, width) -> (N, T, width)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ConfigError(f"width {width} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)
        self.scale = 1.0 / math.sqrt(self.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, width) -> (N, T, width)."""
        n, t, w = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (N, heads, T, head_dim)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale  # T x T x head_dim MACs per head
        weights = self.drop(scores.softmax(dim=-1))
        out = torch.matmul(weights, v)  # T x T x head_dim MACs per head
        return self.proj(out.transpose(1, 2).reshape(n, t, w))


class FeedForward(nn.Module):
    """Linear - activation - dropout - Linear: (N, T, width) -> (N, T, width)."""

    def __init__(self, width: int, hidden: int, act: type[nn.Module], dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), act(), nn.Dropout(dropout), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, width) -> (N, T, width)."""
        return self.net(x)


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, width: int, mixer: nn.Module, ffn: nn.Module | None) -> None:
        super().__init__()
        self.norm1, self.mixer = nn.LayerNorm(width), mixer
        self.norm2 = nn.LayerNorm(width) if ffn is not None else None
        self.ffn = ffn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, width) -> (N, T, width)."""
        x = x + self.mixer(self.norm1(x))
        if self.ffn is not None:
            x = x + self.ffn(self.norm2(x))
        return x


class SequenceClassifier(nn.Module):
    """Tokenize - embed (+ positions, + class token) - blocks - LayerNorm - pool - head.

    (N, C, H, W) -> (N, classes). `pooling` is `cls`, `mean` or `last` (the last token).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        params: Mapping[str, Any],
        blocks: list[nn.Module],
        width: int,
        num_classes: int,
        positions: bool = True,
    ) -> None:
        super().__init__()
        tokens, token_dim, patch = token_layout(dict(params), input_shape)
        self.pooling = str(params.get("pooling", "mean"))
        self.tokenize = Tokenize(tuple(input_shape), patch)
        self.embed = nn.Linear(token_dim, width)
        extra = 1 if self.pooling == "cls" else 0
        self.cls = nn.Parameter(torch.zeros(1, 1, width)) if extra else None
        self.pos = nn.Parameter(torch.randn(1, tokens + extra, width) * 0.02) if positions else None
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, classes) logits."""
        h = self.embed(self.tokenize(x))
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
        if self.pos is not None:
            h = h + self.pos
        h = self.norm(self.blocks(h))
        if self.pooling == "cls":
            pooled = h[:, 0]
        elif self.pooling == "last":
            pooled = h[:, -1]
        else:
            pooled = h.mean(dim=1)
        return self.head(pooled)


def token_label(params: Mapping[str, Any]) -> str:
    """`rows` or `patch7`: how the family reads the image."""
    return f"patch{params['patch_size']}" if params.get("tokens") == "patches" else "rows"


def extras_label(params: Mapping[str, Any], default_act: str) -> str:
    """Activation, dropout and precision as labels show them."""
    parts = [str(params.get("activation", default_act))]
    if params.get("dropout"):
        parts.append(f"drop{format_value(params['dropout'])}")
    if "precision" in params:
        parts.append(str(params["precision"]))
    return " ".join(parts)


@register_family("transformer")
class Transformer(Family):
    """Pre-norm transformer encoder over image rows or patches (ViT-style classifier)."""

    description = "pre-norm transformer encoder over image rows or patches"
    params = (
        TOKENS,
        PATCH_SIZE,
        WIDTH,
        POOLING,
        activation_spec(required=False),
        DROPOUT,
        PRECISION_SEQ,
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
            ParamSpec("mlp_ratio", required=True, values="positive", doc="MLP hidden width / model width"),
        ),
        doc="encoder layers (depth = count)",
    )
    precisions = SEQUENCE_PRECISIONS

    def check_space(self, space: Any) -> None:
        """Every declared width is divisible by every declared head count; patches need a size."""
        widths = _values(space.params, "width")
        heads = {h for g in [space.repeated] for h in _values(g.params, "heads")}
        for w in widths:
            for h in heads:
                if w % h:
                    raise ConfigError(
                        f"{space.source}: field 'layers.params.heads': {h} heads do not divide width {w} "
                        "(choose widths that every head count divides)"
                    )
        if "patches" in _values(space.params, "tokens") and not _values(space.params, "patch_size"):
            raise ConfigError(f"{space.source}: field 'params.patch_size': is required when tokens may be 'patches'")

    def ffn(
        self,
        arch: Architecture,
        unit: Mapping[str, Any],
        width: int,
        act: type[nn.Module],
        dropout: float,
    ) -> nn.Module:
        """The feed-forward part of one layer (the MoE family replaces it)."""
        hidden = max(1, int(round(width * float(unit["mlp_ratio"]))))
        return FeedForward(width, hidden, act, dropout)

    def build(self, arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """The encoder classifier; (N, C, H, W) -> (N, classes). ConfigError if heads do not divide width."""
        width = int(arch.params["width"])
        act = lookup(ACTIVATIONS, "activation", arch.params.get("activation", "gelu"))
        dropout = float(arch.params.get("dropout", 0.0))
        blocks = [
            Block(
                width,
                SelfAttention(width, int(u["heads"]), dropout),
                self.ffn(arch, u, width, act, dropout),
            )
            for u in arch.units
        ]
        return SequenceClassifier(input_shape, arch.params, blocks, width, num_classes)

    def unit_label(self, unit: Mapping[str, Any]) -> str:
        """One layer: heads and MLP ratio."""
        return f"h{unit['heads']} r{format_value(unit['mlp_ratio'])}"

    def label(self, arch: Architecture) -> str:
        """E.g. `transformer patch7 w64 [h4 r2, h2 r4] cls gelu`: every genotype value appears."""
        layers = ", ".join(self.unit_label(u) for u in arch.units)
        head = f"{arch.family} {token_label(arch.params)} w{arch.params['width']}"
        return f"{head} [{layers}] {arch.params['pooling']} {extras_label(arch.params, 'gelu')}"

    def reference_networks(self) -> tuple[ReferenceNetwork, ...]:
        """A small and a wide encoder over 8x8 patches: attention and LayerNorm in the fit."""

        def ref(name: str, width: int, depth: int, order: float) -> ReferenceNetwork:
            return ReferenceNetwork(
                name,
                {
                    "family": "transformer",
                    "params": {
                        "tokens": "patches",
                        "patch_size": 8,
                        "width": width,
                        "pooling": "mean",
                    },
                    "units": [{"heads": 4, "mlp_ratio": 4} for _ in range(depth)],
                },
                order,
            )

        return (ref("transformer-64x2", 64, 2, 9), ref("transformer-256x4", 256, 4, 10))
