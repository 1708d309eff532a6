"""The `cnn` family: a stem, then stages of repeated blocks, global pooling and a linear head.

Pruning removes channels by the magnitude of their BatchNorm scale (network slimming, Liu et al.,
ICCV 2017). An interface between two blocks is pruned only when no residual connection ties it;
inverted-residual blocks always prune their expanded hidden channels, which no skip touches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
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
from nas.models.pruning import slice_bn, slice_conv, slice_linear, top_indices
from nas.models.registry import ACTIVATIONS, BLOCKS, lookup, register_family

STEM_CHANNELS = 16


def scaled(channels: int, multiplier: float) -> int:
    """Channels after the width multiplier, rounded, never below 4."""
    return max(4, int(round(channels * multiplier)))


def _reference(
    name: str,
    stages: Sequence[tuple[str, int, int, int, int]],
    mult: float = 1.0,
    order: float = 0.0,
) -> ReferenceNetwork:
    return ReferenceNetwork(
        name,
        order=order,
        architecture={
            "family": "cnn",
            "params": {"activation": "relu", "width_multiplier": mult},
            "units": [
                {
                    "block": b,
                    "channels": c,
                    "kernel": k,
                    "repeats": r,
                    "stride": s,
                    **({"expansion": 4} if b == "inverted_residual" else {}),
                }
                for b, c, k, r, s in stages
            ],
        },
    )


def _bn_scores(bn: nn.BatchNorm2d) -> torch.Tensor:
    return bn.weight.detach().abs()


@register_family("cnn")
class CNN(Family):
    """MobileNet-style CNN: 3x3 stem, stages of registered blocks, global average pool, linear head."""

    description = "convolutional network of stages of blocks (conv, dwsep, inverted_residual)"
    params = (
        activation_spec(),
        ParamSpec(
            "width_multiplier",
            required=True,
            values="positive",
            doc="scales every stage's channels (and the 16-channel stem)",
        ),
        DROPOUT,
        PRECISION,
        PRUNE_RATIO,
    )
    unit = GroupSpec(
        "stages",
        (
            ParamSpec(
                "block",
                required=True,
                values="name",
                choices=lambda: sorted(BLOCKS),
                doc="block type (conv, dwsep, inverted_residual)",
            ),
            ParamSpec(
                "channels",
                required=True,
                values="positive_int",
                doc="output channels before the multiplier",
            ),
            ParamSpec("kernel", required=True, values="positive_int", doc="kernel size"),
            ParamSpec("repeats", required=True, values="positive_int", doc="blocks in the stage"),
            ParamSpec(
                "stride",
                required=True,
                values="positive_int",
                doc="stride of the stage's first block",
            ),
            ParamSpec(
                "expansion",
                values="positive_int",
                doc="hidden expansion of inverted-residual blocks (default 4)",
            ),
        ),
        doc="stages of repeated blocks",
    )
    prunable = True

    def build(self, arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """Stem - stages - pool - (dropout) - Linear; (N, C, H, W) -> (N, classes)."""
        act = lookup(ACTIVATIONS, "activation", arch.params["activation"])
        mult = float(arch.params.get("width_multiplier", 1.0))
        in_ch = input_shape[0]
        stem_ch = scaled(STEM_CHANNELS, mult)
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, stem_ch, 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(stem_ch),
            act(),
        ]
        ch = stem_ch
        for stage in arch.units:
            block = lookup(BLOCKS, "block", stage["block"])
            out_ch = scaled(int(stage["channels"]), mult)
            for r in range(int(stage["repeats"])):
                stride = int(stage["stride"]) if r == 0 else 1
                layers.append(
                    block(
                        ch,
                        out_ch,
                        int(stage["kernel"]),
                        stride,
                        act,
                        int(stage.get("expansion", 4)),
                    )
                )
                ch = out_ch
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        dropout = float(arch.params.get("dropout", 0.0))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(ch, num_classes))
        return nn.Sequential(*layers)

    def label(self, arch: Architecture) -> str:
        """E.g. `cnn x0.75 [conv c16 k3 s1 x2, inverted_residual e6 c24 k5 s2 x1] relu`.

        Per stage: block, expansion (when set), channels, kernel, stride, repeats; then the width
        multiplier, activation, dropout, precision and prune ratio, so every genotype value shows.
        """
        stages = []
        for u in arch.units:
            exp = f" e{u['expansion']}" if "expansion" in u else ""
            stages.append(f"{u['block']}{exp} c{u['channels']} k{u['kernel']} s{u['stride']} x{u['repeats']}")
        extras = [str(arch.params.get("activation", ""))]
        if arch.params.get("dropout"):
            extras.append(f"drop{format_value(arch.params['dropout'])}")
        if "precision" in arch.params:
            extras.append(str(arch.params["precision"]))
        if arch.params.get("prune_ratio"):
            extras.append(f"prune{format_value(arch.params['prune_ratio'])}")
        mult = format_value(arch.params.get("width_multiplier", 1.0))
        return f"cnn x{mult} [{', '.join(stages)}] {' '.join(e for e in extras if e)}".strip()

    def prune(self, model: nn.Module, ratio: float) -> nn.Module:
        """Remove `ratio` of the channels at every untied interface and inside inverted residuals."""
        layers = list(model)
        blocks = [i for i, m in enumerate(layers) if getattr(m, "kind", None)]
        head = max(i for i, m in enumerate(layers) if isinstance(m, nn.Linear))

        def skip(i: int) -> bool:
            m = layers[i]
            return getattr(m, "kind", None) == "inverted_residual" and m.skip

        # hidden channels of inverted residuals: internal, never tied to a skip
        for i in blocks:
            m = layers[i]
            if m.kind == "inverted_residual" and m.expanded:
                body = m.body  # expand conv, bn, act, dw conv, bn, act, project conv, bn
                idx = top_indices(_bn_scores(body[1]) * _bn_scores(body[4]), ratio)
                body[0], body[1] = slice_conv(body[0], out_idx=idx), slice_bn(body[1], idx)
                body[3], body[4] = slice_conv(body[3], out_idx=idx), slice_bn(body[4], idx)
                body[6] = slice_conv(body[6], in_idx=idx)

        # interfaces: stem output, then each block's output; the consumer is the next block or the head
        producers = [None, *blocks]  # None = the stem (layers 0, 1)
        for n, prod in enumerate(producers):
            consumer = blocks[n] if n < len(blocks) else head
            if (prod is not None and skip(prod)) or (consumer != head and skip(consumer)):
                continue
            if consumer != head and layers[consumer].kind == "inverted_residual" and not layers[consumer].expanded:
                continue  # its depthwise width is tied to its input
            if prod is None:
                idx = top_indices(_bn_scores(layers[1]), ratio)
                layers[0], layers[1] = slice_conv(layers[0], out_idx=idx), slice_bn(layers[1], idx)
            else:
                p = layers[prod]
                if p.kind == "conv":
                    idx = top_indices(_bn_scores(p[1]), ratio)
                    p[0], p[1] = slice_conv(p[0], out_idx=idx), slice_bn(p[1], idx)
                elif p.kind == "dwsep":
                    idx = top_indices(_bn_scores(p[4]), ratio)
                    p[3], p[4] = slice_conv(p[3], out_idx=idx), slice_bn(p[4], idx)
                else:  # inverted residual without skip: its projection
                    idx = top_indices(_bn_scores(p.body[-1]), ratio)
                    p.body[-2], p.body[-1] = (
                        slice_conv(p.body[-2], out_idx=idx),
                        slice_bn(p.body[-1], idx),
                    )
            if consumer == head:
                layers[head] = slice_linear(layers[head], None, idx)
                continue
            c = layers[consumer]
            if c.kind == "conv":
                c[0] = slice_conv(c[0], in_idx=idx)
            elif c.kind == "dwsep":
                c[0], c[1] = slice_conv(c[0], in_idx=idx), slice_bn(c[1], idx)
                c[3] = slice_conv(c[3], in_idx=idx)
            else:
                c.body[0] = slice_conv(c.body[0], in_idx=idx)
        return nn.Sequential(*layers)

    def reference_networks(self) -> tuple[ReferenceNetwork, ...]:
        """CNNs from a small depthwise one to a wide plain one: MAC-heavy against the MLPs."""
        return (
            _reference("cnn-dwsep-small", [("dwsep", 32, 3, 1, 2), ("dwsep", 64, 3, 1, 2)], order=2),
            _reference("cnn-conv-mid", [("conv", 32, 3, 2, 1), ("conv", 64, 3, 2, 2)], order=3),
            _reference(
                "cnn-invres",
                [("inverted_residual", 24, 3, 2, 1), ("inverted_residual", 48, 5, 2, 2)],
                order=4,
            ),
            _reference(
                "cnn-conv-wide",
                [("conv", 64, 3, 2, 1), ("conv", 128, 3, 2, 2), ("conv", 256, 3, 1, 2)],
                order=6,
            ),
        )
