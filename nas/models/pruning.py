"""Slicing helpers for structured pruning: copies of layers keeping chosen channels or units.

Families prune with these (`Family.prune`); the importance scores are the family's choice.
"""

from __future__ import annotations

import torch
from torch import nn


def keep_count(n: int, ratio: float) -> int:
    """How many of `n` channels remain after removing `ratio` of them (at least one)."""
    return max(1, int(round(n * (1.0 - ratio))))


def top_indices(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Sorted indices of the highest `scores`, keeping keep_count(len(scores), ratio)."""
    k = keep_count(len(scores), ratio)
    return torch.sort(torch.topk(scores, k).indices).values


def slice_conv(conv: nn.Conv2d, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> nn.Conv2d:
    """A copy of `conv` keeping output channels `out_idx` and input channels `in_idx`.

    For a depthwise conv (groups == channels) the two index sets are the same channels; other
    grouped convolutions raise ValueError.
    """
    depthwise = conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
    w = conv.weight.detach()
    if depthwise:
        idx = out_idx if out_idx is not None else in_idx
        if idx is None:
            return conv
        new = nn.Conv2d(
            len(idx),
            len(idx),
            conv.kernel_size,
            conv.stride,
            conv.padding,
            groups=len(idx),
            bias=conv.bias is not None,
        )
        new.weight.data = w[idx].clone()
        if conv.bias is not None:
            new.bias.data = conv.bias.detach()[idx].clone()
        return new
    if conv.groups != 1:
        raise ValueError("grouped convolutions other than depthwise are not pruned")
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(
        w.shape[1],
        w.shape[0],
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    )
    new.weight.data = w.clone()
    if conv.bias is not None:
        b = conv.bias.detach()
        new.bias.data = (b[out_idx] if out_idx is not None else b).clone()
    return new


def slice_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    """A copy of `bn` keeping channels `idx` (affine parameters and running statistics)."""
    new = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum)
    new.weight.data = bn.weight.detach()[idx].clone()
    new.bias.data = bn.bias.detach()[idx].clone()
    new.running_mean = bn.running_mean[idx].clone()
    new.running_var = bn.running_var[idx].clone()
    new.num_batches_tracked = bn.num_batches_tracked.clone()
    return new


def slice_linear(lin: nn.Linear, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> nn.Linear:
    """A copy of `lin` keeping output features `out_idx` and input features `in_idx`."""
    w = lin.weight.detach()
    b = lin.bias.detach() if lin.bias is not None else None
    if out_idx is not None:
        w = w[out_idx]
        b = b[out_idx] if b is not None else None
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    new.weight.data = w.clone()
    if b is not None:
        new.bias.data = b.clone()
    return new
