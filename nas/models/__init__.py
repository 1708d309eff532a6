"""Models: build a PyTorch module from an Architecture through the family and block registries."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.architecture import Architecture
from nas.models import blocks, cnn, mlp  # noqa: F401  (register blocks and families)
from nas.models.registry import (
    ACTIVATIONS,
    BLOCKS,
    FAMILIES,
    PRECISIONS,
    FamilySchema,
    lookup,
    register_block,
    register_family,
    valid_choices,
)

__all__ = [
    "ACTIVATIONS",
    "BLOCKS",
    "FAMILIES",
    "PRECISIONS",
    "FamilySchema",
    "ModelStats",
    "build_model",
    "model_stats",
    "register_block",
    "register_family",
    "valid_choices",
]


def build_model(arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the float model of `arch` for inputs of `input_shape` (C, H, W)."""
    family = lookup(FAMILIES, "family", arch.family)
    return family.build(arch, tuple(input_shape), num_classes)


@dataclass(frozen=True)
class ModelStats:
    """Size and work of a model for one input sample.

    `macs` are the multiply-accumulates of the model's linear and convolution layers, the ops
    PyTorch's FlopCounterMode counts in these models (its FLOPs / 2); `activation_elems` is the sum
    of the output elements of every leaf module, the activations written (and read back) per sample.
    """

    params: int
    macs: int
    activation_elems: int
    input_elems: int


# Leaf modules whose parameters do no multiply-accumulate a FLOP counter counts (norms scale and shift).
_NO_MACS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def _layer_macs(m: nn.Module, out: torch.Tensor) -> int:
    """MACs of one linear or convolution layer's forward pass that produced `out`."""
    if isinstance(m, nn.Linear):
        return out.numel() * m.in_features
    kernel = 1
    for k in m.kernel_size:
        kernel *= k
    return out.numel() * (m.in_channels // m.groups) * kernel


def model_stats(model: nn.Module, input_shape: tuple[int, ...]) -> ModelStats:
    """Count parameters, MACs and activation traffic of `model` for one sample.

    MACs are counted by forward hooks on the linear and convolution layers. A model with another
    kind of weighted layer is counted by FlopCounterMode instead, which sees every op but costs
    seconds: its first use imports torch._dynamo (2-4 s here) and each call 10-70 ms, a large share
    of a small trial (docs/benchmarks.md, "Overhead").
    """
    params = sum(p.numel() for p in model.parameters())
    x = torch.zeros(1, *input_shape)
    outputs = macs = 0
    leaves = [m for m in model.modules() if not list(m.children())]
    counted = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    by_hooks = all(
        isinstance(m, counted + _NO_MACS) or not any(True for _ in m.parameters(recurse=False)) for m in leaves
    )

    def hook(m: nn.Module, _i: object, out: object) -> None:
        nonlocal outputs, macs
        if isinstance(out, torch.Tensor):
            outputs += out.numel()
            if by_hooks and isinstance(m, counted):
                macs += _layer_macs(m, out)

    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if by_hooks:
                model(x)
            else:
                with FlopCounterMode(display=False) as counter:
                    model(x)
                macs = counter.get_total_flops() // 2
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return ModelStats(
        params=int(params),
        macs=int(macs),
        activation_elems=int(outputs),
        input_elems=int(x.numel()),
    )
