"""The `cnn` family: a stem, then stages of repeated blocks, global pooling and a linear head."""

from __future__ import annotations

from torch import nn

from nas.architecture import Architecture
from nas.models.registry import ACTIVATIONS, BLOCKS, lookup, register_family

STEM_CHANNELS = 16


def scaled(channels: int, multiplier: float) -> int:
    """Channels after the width multiplier, rounded, never below 4."""
    return max(4, int(round(channels * multiplier)))


@register_family(
    "cnn",
    unit="stages",
    required={"activation", "width_multiplier"},
    optional={"precision", "prune_ratio", "dropout"},
    unit_required={"block", "channels", "kernel", "repeats", "stride"},
    unit_optional={"expansion"},
)
def build_cnn(arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A CNN from the genotype: stem, the units' blocks, global pooling, a linear classifier.

    input_shape: (C, H, W); the model maps (N, C, H, W) to logits (N, num_classes).
    """
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
                block(ch, out_ch, int(stage["kernel"]), stride, act, int(stage.get("expansion", 4)))
            )
            ch = out_ch
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    dropout = float(arch.params.get("dropout", 0.0))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(ch, num_classes))
    return nn.Sequential(*layers)
