"""The compression levers: structured channel pruning and deployment precision.

Pruning physically removes channels and hidden units (smaller layers, fewer MACs; no masks). Each
family prunes its own networks (`Family.prune` in nas/models/: BatchNorm-scale importance for the
CNN, incoming L1 norm for MLP hidden units) or refuses with a ConfigError.

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
from nas.models.registry import get_family

# -------------------------------------------------------------------------------- pruning


def prune(model: nn.Module, family: str, ratio: float) -> nn.Module:
    """A copy of `model` with `ratio` of its prunable channels / hidden units physically removed.

    The family does the pruning (`Family.prune`, nas/models/); a family that cannot prune raises
    ConfigError saying so, as does a ratio outside [0, 1).
    """
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"prune ratio must be in [0, 1), got {ratio}")
    fam = get_family(family)
    model = copy.deepcopy(model)
    if ratio == 0.0:
        return model
    return fam.prune(model, ratio)


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
