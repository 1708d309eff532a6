"""Images as token sequences, for the sequence families (transformer, moe, ssm).

`rows`: each image row is one token of C x W values (digits 8x8 -> 8 tokens of 8 values; mnist
28x28 -> 28 tokens of 28). `patches`: non-overlapping P x P patches, each a token of C x P x P
values (ViT, Dosovitskiy et al., ICLR 2021; mnist with P = 7 -> 16 tokens of 49), the image
zero-padded at the bottom and right to a multiple of P. Only reshapes and a permute: exportable
to TorchScript and ONNX with a dynamic batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import ConfigError
from nas.models.family import ParamSpec

TOKENS = ParamSpec(
    "tokens",
    required=True,
    values="name",
    choices=lambda: ("rows", "patches"),
    doc="how an image becomes tokens: `rows` (one token per row) or `patches` (P x P patches)",
)
PATCH_SIZE = ParamSpec(
    "patch_size",
    values="positive_int",
    doc="patch side P when tokens is `patches` (declare it with `when: {tokens: patches}`)",
)


def token_layout(arch_params: dict, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(number of tokens, values per token, patch size or 0) for `input_shape` (C, H, W)."""
    if len(input_shape) != 3:
        raise ConfigError(f"sequence families need image inputs (C, H, W), got shape {tuple(input_shape)}")
    c, h, w = input_shape
    mode = arch_params.get("tokens", "rows")
    if mode == "rows":
        return h, c * w, 0
    if mode != "patches":
        raise ConfigError(f"unknown tokens {mode!r} (valid: patches, rows)")
    if "patch_size" not in arch_params:
        raise ConfigError("tokens 'patches' needs a patch_size")
    p = int(arch_params["patch_size"])
    return math.ceil(h / p) * math.ceil(w / p), c * p * p, p


class Tokenize(nn.Module):
    """(N, C, H, W) images -> (N, T, D) tokens, by rows or by P x P patches."""

    def __init__(self, input_shape: tuple[int, ...], patch: int) -> None:
        super().__init__()
        c, h, w = input_shape
        self.channels, self.height, self.width, self.patch = c, h, w, patch
        self.pad_h = (-h) % patch if patch else 0
        self.pad_w = (-w) % patch if patch else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, T, D) tokens."""
        n = x.shape[0]
        c, h, w, p = self.channels, self.height, self.width, self.patch
        if not p:
            return x.permute(0, 2, 1, 3).reshape(n, h, c * w)
        if self.pad_h or self.pad_w:
            x = F.pad(x, (0, self.pad_w, 0, self.pad_h))
        hp, wp = (h + self.pad_h) // p, (w + self.pad_w) // p
        x = x.reshape(n, c, hp, p, wp, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, hp * wp, c * p * p)
