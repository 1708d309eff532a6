"""ATen operators by kind, as the operator-level energy estimate charges them (see `nas.energy.opgraph`).

The tables name overload packets (`aten.convolution`, `aten.relu`, ...); `is_view`,
`pool_window` and `tensors` read one dispatched call.
"""

from __future__ import annotations

import math
from typing import Any

import torch

# ATen operator (overload packet) names by kind; anything else that is not a view is "other"
# (charged for its calls and bytes, with one element operation per output element).
MAC_KINDS = {
    "convolution": "conv",
    "_convolution": "conv",
    "conv2d": "conv",
    "conv1d": "conv",
    "addmm": "matmul",
    "mm": "matmul",
    "bmm": "matmul",
    "baddbmm": "matmul",
    "matmul": "matmul",
    "linear": "matmul",
    "_scaled_dot_product_efficient_attention": "matmul",
    "_scaled_dot_product_flash_attention": "matmul",
    "_scaled_dot_product_flash_attention_for_cpu": "matmul",
}
BATCH_NORM = {
    "_native_batch_norm_legit_no_training",
    "native_batch_norm",
    "_native_batch_norm_legit",
    "batch_norm",
    "native_layer_norm",
    "native_group_norm",
    "layer_norm",
    "group_norm",
}
POOL = {
    "avg_pool2d",
    "max_pool2d",
    "max_pool2d_with_indices",
    "avg_pool1d",
    "max_pool1d",
    "avg_pool3d",
    "max_pool3d_with_indices",
    "adaptive_avg_pool2d",
    "_adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "mean",
    "sum",
    "amax",
    "max",
    "_adaptive_avg_pool3d",
    "adaptive_avg_pool1d",
}
# element operations per output element of an activation: a compare/select is one; functions with a
# transcendental are evaluated with polynomial approximations of about ten vector instructions
# (assumption, order of magnitude: e.g. Arm Optimized Routines' expf is ~10-15 instructions)
ACTIVATION_OPS = {
    "relu": 1,
    "relu_": 1,
    "hardtanh": 1,
    "hardtanh_": 1,
    "clamp": 1,
    "clamp_": 1,
    "clamp_min": 1,
    "threshold": 1,
    "leaky_relu": 2,
    "hardswish": 4,
    "hardswish_": 4,
    "hardsigmoid": 3,
    "silu": 12,
    "silu_": 12,
    "sigmoid": 10,
    "tanh": 10,
    "gelu": 14,
    "elu": 12,
    "softmax": 12,
    "_softmax": 12,
    "log_softmax": 12,
    "_log_softmax": 12,
    "mish": 24,
}
ELEMENTWISE = {
    "add",
    "add_",
    "sub",
    "sub_",
    "mul",
    "mul_",
    "div",
    "div_",
    "neg",
    "abs",
    "pow",
    "sqrt",
    "rsqrt",
    "exp",
    "where",
    "maximum",
    "minimum",
    "addcmul",
    "lerp",
}
COPY = {
    "clone",
    "cat",
    "copy_",
    "_to_copy",
    "stack",
    "constant_pad_nd",
    "new_zeros",
    "zeros_like",
    "empty_like",
    "fill_",
    "zero_",
    "index",
    "gather",
    "embedding",
    "repeat",
    "flip",
    "roll",
}
ALLOCATIONS = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided"}  # no kernel
FUSABLE_ACTIVATIONS = {
    "relu",
    "relu_",
    "hardtanh",
    "hardtanh_",
    "clamp",
    "clamp_",
    "clamp_min",
    "sigmoid",
    "tanh",
    "leaky_relu",
}


FOLDABLE_NORMS = {
    "_native_batch_norm_legit_no_training",
    "native_batch_norm",
    "batch_norm",
    "_native_batch_norm_legit",
}


def is_view(func: Any) -> bool:
    """Whether ATen operator `func` returns a view (its output aliases an input without writing it)."""
    schema = func._schema
    if not schema.returns:
        return False
    info = schema.returns[0].alias_info
    return info is not None and not info.is_write


def pool_window(name: str, args: tuple[Any, ...], out: torch.Tensor, inp: torch.Tensor | None) -> int:
    """Element operations of a pooling or reduction: every output reads its window."""
    if name in (
        "avg_pool2d",
        "max_pool2d",
        "max_pool2d_with_indices",
        "avg_pool1d",
        "avg_pool3d",
        "max_pool1d",
        "max_pool3d_with_indices",
    ):
        kernel = args[1] if len(args) > 1 else 1
        window = math.prod(kernel) if isinstance(kernel, (list, tuple)) else int(kernel) ** (int(out.dim()) - 2)
        return int(out.numel()) * int(window)
    return int(inp.numel()) if inp is not None else int(out.numel())


def tensors(values: tuple[Any, ...] | list[Any]) -> list[torch.Tensor]:
    """The tensors among `values`, one level of lists/tuples deep (ATen arguments are that flat)."""
    out: list[torch.Tensor] = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (tuple, list)):
            out.extend(t for t in v if isinstance(t, torch.Tensor))
    return out
