"""Models: build a PyTorch module from an Architecture through the family and block registries."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.architecture import Architecture
from nas.energy.opgraph import GraphRecorder, OperatorGraph
from nas.models import blocks, cnn, mlp, nb201  # noqa: F401  (register blocks and families)
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
    # every operator the forward pass ran (nas.energy.opgraph), for the operator-level estimate
    operators: OperatorGraph | None = field(default=None, compare=False, repr=False)


def model_stats(model: nn.Module, input_shape: tuple[int, ...]) -> ModelStats:
    """Count parameters, MACs and activation traffic of `model` for one sample.

    MACs come from PyTorch's own FlopCounterMode (FLOPs / 2), never from our own arithmetic. Its
    first use imports torch._dynamo (2-4 s here) and each call costs 10-70 ms: a measurable share of
    a tiny trial (docs/benchmarks.md, "Overhead"), accepted so that every op is counted.
    """
    params = sum(p.numel() for p in model.parameters())
    x = torch.zeros(1, *input_shape)
    outputs = 0
    leaves = [m for m in model.modules() if not list(m.children())]

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal outputs
        if isinstance(out, torch.Tensor):
            outputs += out.numel()

    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    recorder = GraphRecorder([*model.parameters(), *model.buffers()])
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter, recorder:
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
        operators=recorder.graph(int(x.numel())),
    )
