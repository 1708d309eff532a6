"""The compression levers: structured channel pruning and deployment precision.

Pruning physically removes channels and hidden units (smaller layers, fewer MACs; no masks).
Importance is the magnitude of each channel's BatchNorm scale (network slimming, Liu et al., ICCV
2017), or for MLP hidden units the L1 norm of their incoming weights. An interface between two
blocks is pruned only when no residual connection ties it; inverted-residual blocks always prune
their expanded hidden channels, which no skip touches.

Precision: `int8` is real static post-training quantization with PyTorch's FX graph mode
(`torch.ao.quantization.quantize_fx`, x86/fbgemm kernels, observers calibrated on training data).
We use it rather than torchao's PT2E flow because PT2E only yields int8 kernels on CPU after
torch.compile with the inductor backend, which costs tens of seconds per candidate on a small
machine; FX convert gives the deployable int8 model in about a second. `torch.ao.quantization` is
deprecated in torch 2.13 (its warning is silenced here, on purpose) and the move to torchao PT2E is
the planned migration. `bf16` / `fp16` cast weights and inputs.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from nas.errors import ConfigError

# -------------------------------------------------------------------------------- slicing helpers


def _keep(n: int, ratio: float) -> int:
    return max(1, int(round(n * (1.0 - ratio))))


def _top(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    k = _keep(len(scores), ratio)
    return torch.sort(torch.topk(scores, k).indices).values


def _conv(conv: nn.Conv2d, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> nn.Conv2d:
    """A copy of `conv` keeping output channels `out_idx` and input channels `in_idx`.

    For a depthwise conv (groups == channels) the two index sets are the same channels.
    """
    depthwise = conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
    w = conv.weight.detach()
    if depthwise:
        idx = out_idx if out_idx is not None else in_idx
        if idx is None:
            return conv
        new = nn.Conv2d(len(idx), len(idx), conv.kernel_size, conv.stride, conv.padding, groups=len(idx),
                        bias=conv.bias is not None)
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
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    new.weight.data = w.clone()
    if conv.bias is not None:
        b = conv.bias.detach()
        new.bias.data = (b[out_idx] if out_idx is not None else b).clone()
    return new


def _bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum)
    new.weight.data = bn.weight.detach()[idx].clone()
    new.bias.data = bn.bias.detach()[idx].clone()
    new.running_mean = bn.running_mean[idx].clone()
    new.running_var = bn.running_var[idx].clone()
    new.num_batches_tracked = bn.num_batches_tracked.clone()
    return new


def _linear(lin: nn.Linear, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> nn.Linear:
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


# -------------------------------------------------------------------------------- pruning


def prune(model: nn.Module, family: str, ratio: float) -> nn.Module:
    """A copy of `model` with `ratio` of its prunable channels / hidden units physically removed."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"prune ratio must be in [0, 1), got {ratio}")
    model = copy.deepcopy(model)
    if ratio == 0.0:
        return model
    if family == "mlp":
        return _prune_mlp(model, ratio)
    if family == "cnn":
        return _prune_cnn(model, ratio)
    raise ConfigError(f"structured pruning is not defined for family {family!r} (valid: cnn, mlp)")


def _prune_mlp(model: nn.Sequential, ratio: float) -> nn.Sequential:
    linears = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    in_idx = None
    for i in linears[:-1]:
        lin = model[i]
        out_idx = _top(lin.weight.detach().abs().sum(dim=1), ratio)
        model[i] = _linear(lin, out_idx, in_idx)
        in_idx = out_idx
    model[linears[-1]] = _linear(model[linears[-1]], None, in_idx)
    return model


def _bn_scores(bn: nn.BatchNorm2d) -> torch.Tensor:
    return bn.weight.detach().abs()


def _prune_cnn(model: nn.Sequential, ratio: float) -> nn.Sequential:
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
            idx = _top(_bn_scores(body[1]) * _bn_scores(body[4]), ratio)
            body[0], body[1] = _conv(body[0], out_idx=idx), _bn(body[1], idx)
            body[3], body[4] = _conv(body[3], out_idx=idx), _bn(body[4], idx)
            body[6] = _conv(body[6], in_idx=idx)

    # interfaces: stem output, then each block's output; the consumer is the next block or the head
    producers = [None, *blocks]  # None = the stem (layers 0, 1)
    for n, prod in enumerate(producers):
        consumer = blocks[n] if n < len(blocks) else head
        if (prod is not None and skip(prod)) or (consumer != head and skip(consumer)):
            continue
        if consumer != head and layers[consumer].kind == "inverted_residual" and not layers[consumer].expanded:
            continue  # its depthwise width is tied to its input
        # slice the producer's output
        if prod is None:
            idx = _top(_bns := _bn_scores(layers[1]), ratio)
            layers[0], layers[1] = _conv(layers[0], out_idx=idx), _bn(layers[1], idx)
        else:
            p = layers[prod]
            if p.kind == "conv":
                idx = _top(_bn_scores(p[1]), ratio)
                p[0], p[1] = _conv(p[0], out_idx=idx), _bn(p[1], idx)
            elif p.kind == "dwsep":
                idx = _top(_bn_scores(p[4]), ratio)
                p[3], p[4] = _conv(p[3], out_idx=idx), _bn(p[4], idx)
            else:  # inverted residual without skip: its projection
                idx = _top(_bn_scores(p.body[-1]), ratio)
                p.body[-2], p.body[-1] = _conv(p.body[-2], out_idx=idx), _bn(p.body[-1], idx)
        # slice the consumer's input
        if consumer == head:
            layers[head] = _linear(layers[head], None, idx)
            continue
        c = layers[consumer]
        if c.kind == "conv":
            c[0] = _conv(c[0], in_idx=idx)
        elif c.kind == "dwsep":
            c[0], c[1] = _conv(c[0], in_idx=idx), _bn(c[1], idx)
            c[3] = _conv(c[3], in_idx=idx)
        else:
            c.body[0] = _conv(c.body[0], in_idx=idx)
    return nn.Sequential(*layers)


# -------------------------------------------------------------------------------- precision


class CastInput(nn.Module):
    """Runs a model in a lower float precision: inputs cast in, float32 logits out."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Cast `x` to the wrapped model's dtype, run it, return float32 logits (same shape)."""
        return self.model(x.to(self.dtype)).float()


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def low_precision_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a low float precision (`bf16`, `fp16`); KeyError for others."""
    return _DTYPES[precision]


def to_precision(model: nn.Module, precision: str, calibration: torch.Tensor, batch_size: int = 64) -> nn.Module:
    """The deployable form of a trained float model at `precision` (a new module, in eval mode).

    `int8` quantizes weights and activations (static PTQ), calibrating activation ranges on
    `calibration` inputs; it runs on CPU quantized kernels.
    """
    model = copy.deepcopy(model).eval()
    if precision == "fp32":
        return model
    if precision in _DTYPES:
        return CastInput(model, _DTYPES[precision]).eval()
    if precision != "int8":
        raise ConfigError(f"unknown precision {precision!r} (valid: fp32, bf16, fp16, int8)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86"
        model = model.cpu()
        calibration = calibration.cpu()
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (calibration[:1],))
        with torch.no_grad():
            for start in range(0, len(calibration), batch_size):
                prepared(calibration[start : start + batch_size])
        return convert_fx(prepared).eval()
