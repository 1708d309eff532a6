"""Building blocks: activations and the CNN blocks (plain conv, depthwise-separable, inverted residual).

Each block factory takes (in_ch, out_ch, kernel, stride, act, expansion) and returns a module.
"""

from __future__ import annotations

from torch import nn

from nas.models.family import ParamSpec
from nas.models.registry import ACTIVATIONS, register_block

ACTIVATIONS.update(
    {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "hardswish": nn.Hardswish,
        "tanh": nn.Tanh,
    }
)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]


@register_block("conv")
def plain_conv(
    in_ch: int, out_ch: int, kernel: int, stride: int, act: type[nn.Module], expansion: int = 1
) -> nn.Module:
    """Conv - BN - activation."""
    block = nn.Sequential(*_conv_bn(in_ch, out_ch, kernel, stride), act())
    block.kind = "conv"  # lets structured pruning find producers and consumers
    return block


@register_block("dwsep")
def depthwise_separable(
    in_ch: int, out_ch: int, kernel: int, stride: int, act: type[nn.Module], expansion: int = 1
) -> nn.Module:
    """Depthwise conv - BN - act - pointwise conv - BN - act (MobileNet v1)."""
    block = nn.Sequential(
        *_conv_bn(in_ch, in_ch, kernel, stride, groups=in_ch),
        act(),
        *_conv_bn(in_ch, out_ch, 1, 1),
        act(),
    )
    block.kind = "dwsep"
    return block


class InvertedResidual(nn.Module):
    """Pointwise expand - depthwise - pointwise project, with a skip when shapes match (MobileNet v2)."""

    kind = "inverted_residual"

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, act: type[nn.Module], expansion: int) -> None:
        super().__init__()
        self.expanded = expansion != 1
        hidden = max(1, in_ch * expansion)
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [*_conv_bn(in_ch, hidden, 1, 1), act()]
        layers += [*_conv_bn(hidden, hidden, kernel, stride, groups=hidden), act()]
        layers += _conv_bn(hidden, out_ch, 1, 1)
        self.body = nn.Sequential(*layers)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x):  # noqa: D401
        """x: (N, C_in, H, W) -> (N, C_out, H / stride, W / stride); adds x when shapes match."""
        y = self.body(x)
        return x + y if self.skip else y


@register_block("inverted_residual")
def inverted_residual(
    in_ch: int, out_ch: int, kernel: int, stride: int, act: type[nn.Module], expansion: int = 4
) -> nn.Module:
    """The `inverted_residual` block: MobileNetV2's expand (1x1), depthwise (k x k), project (1x1)."""
    return InvertedResidual(in_ch, out_ch, kernel, stride, act, expansion)


def activation_spec(required: bool = True) -> ParamSpec:
    """The `activation` parameter of a family: a name from the ACTIVATIONS registry."""
    return ParamSpec(
        "activation",
        required=required,
        values="name",
        choices=lambda: sorted(ACTIVATIONS),
        doc="activation function (" + ", ".join(sorted(ACTIVATIONS)) + ")",
    )
