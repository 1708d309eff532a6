"""Models: families (nas.models.family) build PyTorch modules from an Architecture.

Every module of this package is imported once (nas.models.registry.load_builtin_families), so a
built-in family registers itself by existing; installed packages add families through the
`energy_nas.families` entry point group, loaded on first need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.architecture import Architecture
from nas.energy.opgraph import GraphRecorder, OperatorGraph
from nas.models.family import Family, GroupSpec, ParamSpec, ReferenceNetwork
from nas.models.registry import (
    ACTIVATIONS,
    BLOCKS,
    FAMILIES,
    PRECISIONS,
    family_names,
    get_family,
    load_builtin_families,
    lookup,
    register_block,
    register_family,
)

__all__ = [
    "ACTIVATIONS",
    "BLOCKS",
    "FAMILIES",
    "PRECISIONS",
    "Family",
    "GroupSpec",
    "ModelStats",
    "ParamSpec",
    "ReferenceNetwork",
    "architecture_label",
    "build_model",
    "family_names",
    "get_family",
    "lookup",
    "model_stats",
    "register_block",
    "register_family",
]

load_builtin_families()


def build_model(arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the float model of `arch` for inputs of `input_shape` (C, H, W) by its family.

    Raises ConfigError for an unknown family (listing the registered ones).
    """
    return get_family(arch.family).build(arch, tuple(input_shape), num_classes)


def architecture_label(arch: Architecture) -> str:
    """The family's readable label of `arch`; no two different architectures share one."""
    return get_family(arch.family).label(arch)


@dataclass(frozen=True)
class ModelStats:
    """Size and work of a model for one input sample.

    `macs` are the multiply-accumulates PyTorch's FlopCounterMode counts (its FLOPs / 2: matmuls,
    convolutions, attention's score and value products) plus the registered costs of the ops it
    does not know (ELEMENTWISE_MACS: a recurrence's state update). Only the ops a forward really
    runs are counted, so a mixture of experts counts its router and the experts its tokens reach.
    `params` are all parameters stored; `active_params` those of the modules that ran on a
    non-empty input in that forward (the weights read per inference: a mixture of experts reads
    only its chosen experts'). `activation_elems` is the sum of the output elements of every leaf
    module, the activations written (and read back) per sample.
    """

    params: int
    macs: int
    activation_elems: int
    input_elems: int
    # every operator the forward pass ran (nas.energy.opgraph), for the operator-level estimate
    operators: OperatorGraph | None = field(default=None, compare=False, repr=False)
    active_params: int | None = None

    @property
    def weights_read(self) -> int:
        """Parameters read per inference: `active_params` when counted, else all `params`."""
        return self.params if self.active_params is None else self.active_params


def _elementwise_macs(*args: object, out_shape: tuple[int, ...] | None = None, **kwargs: object) -> int:
    """FLOPs of a fused multiply-add per output element (two per MAC), for FlopCounterMode."""
    n = 1
    for d in out_shape or ():
        n *= int(d)
    return 2 * n


# Ops the counter does not know but which are multiply-accumulates: `torch.addcmul(c, a, b)`
# computes c + a * b per element; families use it for a recurrence's state update.
ELEMENTWISE_MACS = {torch.ops.aten.addcmul: _elementwise_macs}


def model_stats(model: nn.Module, input_shape: tuple[int, ...]) -> ModelStats:
    """Count parameters, MACs, active parameters and activation traffic of `model` for one sample.

    MACs come from PyTorch's own FlopCounterMode (FLOPs / 2), with ELEMENTWISE_MACS registered for
    the multiply-adds it does not know. Its first use imports torch._dynamo (2-4 s here) and each
    call costs 10-70 ms: a measurable share of a tiny trial (docs/benchmarks.md, "Overhead"),
    accepted so that every op is counted.
    """
    params = sum(p.numel() for p in model.parameters())
    with torch.inference_mode(False):  # a normal tensor even inside a measurement's inference_mode,
        x = torch.zeros(1, *input_shape)  # so that the operators recorded do not depend on the caller
    outputs = 0
    idle: dict[int, nn.Module] = {}
    leaves = [m for m in model.modules() if not list(m.children())]
    for m in leaves:
        idle[id(m)] = m

    def hook(m: nn.Module, inputs: tuple[object, ...], out: object) -> None:
        nonlocal outputs
        if isinstance(out, torch.Tensor):
            outputs += out.numel()
        if any(isinstance(i, torch.Tensor) and i.numel() > 0 for i in inputs):
            idle.pop(id(m), None)

    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    recorder = GraphRecorder([*model.parameters(), *model.buffers()])
    try:
        with (
            torch.no_grad(),
            FlopCounterMode(display=False, custom_mapping=ELEMENTWISE_MACS) as counter,
            recorder,
        ):
            model(x)
        macs = counter.get_total_flops() // 2
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    unused = sum(p.numel() for m in idle.values() for p in m.parameters(recurse=False))
    return ModelStats(
        params=int(params),
        macs=int(macs),
        activation_elems=int(outputs),
        input_elems=int(x.numel()),
        operators=recorder.graph(int(x.numel())),
        active_params=int(params - unused),
    )
