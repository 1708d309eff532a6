"""The `nb201` family: the NAS-Bench-201 cell search space (Dong & Yang, ICLR 2020).

One cell of 4 nodes (node 0 is the cell's input, node 3 its output) and 6 edges `i<-j` (j < i),
each carrying one of 5 operations; node i is the sum of its incoming edges. The same cell is
repeated throughout the NAS-Bench-201 macro skeleton ("TinyNetwork"):

    stem: 3x3 conv (16 channels, no bias) + BN
    stage 1: N cells at 16 channels
    residual reduction block (ResNet basic block, stride 2) to 32 channels
    stage 2: N cells at 32 channels
    residual reduction block to 64 channels
    stage 3: N cells at 64 channels
    BN + ReLU, global average pooling, linear classifier

with N = 5 in NAS-Bench-201. The modules mirror the published reference implementation
(GitHub D-X-Y/AutoDL-Projects, `xautodl/models/cell_operations.py`, `cell_infers/cells.py`,
`cell_infers/tiny_network.py`) so parameter counts match the benchmark's: 73,306 (every edge
parameter-free) to 1,531,546 (every edge `nor_conv_3x3`) parameters for 10 classes, 79,156 to
1,537,396 for 100 (NAS-Bench-201's published CIFAR-10 / CIFAR-100 ranges, 0.073306-1.531546 MB).
As in the reference, `none` is computed as `x * 0` (the benchmark's measured networks run it),
convolutions are ReLU-Conv-BN without bias, and average pooling excludes the padding.

Cell strings are NAS-Bench-201's standard notation, nodes separated by `+`, each listing its
incoming edges `op~j` for j = 0..i-1:

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

The genotype (`nas.architecture.Architecture`) holds the six edges as params named as
NAS-Bench-201's `edge2index` names them (`1<-0`, `2<-0`, `2<-1`, `3<-0`, `3<-1`, `3<-2`) and one
(empty) unit per cell of a stage, so `len(units)` is N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nas.architecture import Architecture
from nas.errors import ConfigError
from nas.models.family import PRECISION, Family, GroupSpec, ParamSpec
from nas.models.registry import register_family

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[str, ...] = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")  # the cell string's order
STEM_CHANNELS = 16  # NAS-Bench-201's C
CELLS_PER_STAGE = 5  # NAS-Bench-201's N


# ----------------------------------------------------------------------------- cell strings
def parse_cell(text: str) -> tuple[str, ...]:
    """The six edge operations of a NAS-Bench-201 cell string, in `EDGES` order.

    Accepts `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`; within a node the edges may come in any order.
    Raises ConfigError (saying what is wrong) on anything else: a wrong number of nodes, a missing,
    repeated or out-of-range input index, an unknown operation.
    """
    if not isinstance(text, str):
        raise ConfigError(f"expected a NAS-Bench-201 cell string, got {type(text).__name__}")
    nodes = text.strip().split("+")
    if len(nodes) != 3:
        raise ConfigError(f"cell string {_short(text)}: expected 3 nodes separated by '+', got {len(nodes)}")
    ops: list[str] = []
    for i, node in enumerate(nodes, start=1):
        node = node.strip()
        if not (node.startswith("|") and node.endswith("|")) or len(node) < 2:
            raise ConfigError(f"cell string {_short(text)}: node {i} must be written |op~j|...|, got {_short(node)}")
        by_input: dict[int, str] = {}
        for edge in node[1:-1].split("|"):
            op, sep, j_text = edge.partition("~")
            if not sep or not j_text.isdigit():
                raise ConfigError(f"cell string {_short(text)}: node {i}: expected op~j, got {_short(edge)}")
            if op not in OPS:
                raise ConfigError(
                    f"cell string {_short(text)}: unknown operation {_short(op)} (valid: {', '.join(OPS)})"
                )
            j = int(j_text)
            if j >= i or j in by_input:
                raise ConfigError(
                    f"cell string {_short(text)}: node {i} takes each of nodes 0..{i - 1} once, got input {j}"
                )
            by_input[j] = op
        if len(by_input) != i:
            raise ConfigError(f"cell string {_short(text)}: node {i} needs {i} inputs, got {len(by_input)}")
        ops.extend(by_input[j] for j in range(i))
    return tuple(ops)


def format_cell(ops: Sequence[str] | Mapping[str, str]) -> str:
    """The standard cell string of six edge operations (a sequence in `EDGES` order, or a
    mapping edge name -> op). Raises ConfigError on an unknown operation or a missing edge."""
    if isinstance(ops, Mapping):
        missing = [e for e in EDGES if e not in ops]
        if missing:
            raise ConfigError(f"nb201 genotype: missing edge {missing[0]!r} (needs {', '.join(EDGES)})")
        ops = [ops[e] for e in EDGES]
    ops = list(ops)
    if len(ops) != len(EDGES):
        raise ConfigError(f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(ops)}")
    for op in ops:
        if op not in OPS:
            raise ConfigError(f"unknown NAS-Bench-201 operation {_short(op)} (valid: {', '.join(OPS)})")
    return "+".join("|" + "|".join(f"{ops[_edge_index(i, j)]}~{j}" for j in range(i)) + "|" for i in range(1, 4))


def architecture_from_cell(text: str, cells_per_stage: int = CELLS_PER_STAGE) -> Architecture:
    """The `nb201` genotype of a cell string (N = `cells_per_stage` cells per stage)."""
    ops = parse_cell(text)
    return Architecture("nb201", dict(zip(EDGES, ops, strict=True)), tuple({} for _ in range(cells_per_stage)))


def cell_of(arch: Architecture) -> str:
    """The cell string of an `nb201` genotype."""
    return format_cell({e: arch.params[e] for e in EDGES if e in arch.params})


def describe(arch: Architecture) -> str:
    """`nb201|op~0|+|...|` (with ` N=n` when not 5 cells per stage, and the precision if any)."""
    n = "" if len(arch.units) == CELLS_PER_STAGE else f" N={len(arch.units)}"
    extra = f" {arch.params['precision']}" if "precision" in arch.params else ""
    return f"nb201{cell_of(arch)}{n}{extra}"


def _edge_index(i: int, j: int) -> int:
    return EDGES.index(f"{i}<-{j}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ----------------------------------------------------------------------------- modules
class ReLUConvBN(nn.Sequential):
    """ReLU - Conv2d (no bias) - BatchNorm2d, NAS-Bench-201's `nor_conv_kxk`."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The `none` edge: `x * 0`, as the reference computes it (shape-preserving; a real op)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zeros shaped like `x` (N, C, H, W), computed as the reference does."""
        return x.mul(0.0)


def _edge_op(op: str, channels: int) -> nn.Module:
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ConfigError(f"unknown NAS-Bench-201 operation {_short(op)} (valid: {', '.join(OPS)})")


class InferCell(nn.Module):
    """One NAS-Bench-201 cell at `channels` channels: node i = sum over j < i of edge(i<-j)(node j).

    Input and output (N, channels, H, W). Edges are kept in `EDGES` order in `self.edges`.
    `graph_memo`: identical cells run identical operators (nas.energy.opgraph records one per shape).
    """

    graph_memo = True

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.ops = tuple(ops)
        self.edges = nn.ModuleList(_edge_op(op, channels) for op in self.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Node 3 of the cell for input node 0 = `x`; (N, channels, H, W) in and out."""
        nodes = [x]
        for i in range(1, 4):
            total = None
            for j in range(i):
                y = self.edges[_edge_index(i, j)](nodes[j])
                total = y if total is None else total + y
            nodes.append(total)
        return nodes[-1]

    def extra_repr(self) -> str:
        """The cell string (shown by `repr`)."""
        return format_cell(self.ops)


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction block: ReLUConvBN 3x3 (stride) - ReLUConvBN 3x3, plus a shortcut
    of 2x2 average pooling (stride 2) and a 1x1 conv (no bias, no BN); output = shortcut + body.

    (N, c_in, H, W) -> (N, c_out, ceil(H/2), ceil(W/2)). The shortcut's pooling uses `ceil_mode`,
    which equals the reference's pooling on even sizes and keeps odd sizes (7x7) working.
    """

    graph_memo = True

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        if stride == 2:
            self.downsample: nn.Module | None = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True),
                nn.Conv2d(c_in, c_out, 1, stride=1, padding=0, bias=False),
            )
        elif c_in != c_out:
            self.downsample = ReLUConvBN(c_in, c_out, 1, 1)
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shortcut(x) + body(x): (N, c_in, H, W) -> (N, c_out, ceil(H/2), ceil(W/2)) at stride 2."""
        body = self.conv_b(self.conv_a(x))
        shortcut = x if self.downsample is None else self.downsample(x)
        return shortcut + body


class NB201Network(nn.Module):
    """NAS-Bench-201's macro skeleton around one cell; input (B, C, H, W), output logits (B, classes)."""

    def __init__(
        self,
        ops: Sequence[str],
        in_channels: int,
        num_classes: int,
        channels: int = STEM_CHANNELS,
        cells_per_stage: int = CELLS_PER_STAGE,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResNetBasicBlock(c, c * 2, 2))
                c *= 2
            layers.extend(InferCell(ops, c) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) of images `x` (B, C, H, W)."""
        out = self.lastact(self.cells(self.stem(x)))
        out = self.global_pooling(out)
        return self.classifier(out.flatten(1))


@register_family("nb201")
class NB201(Family):
    """NAS-Bench-201's cell space: six edges, each one of five operations, in the benchmark's skeleton."""

    description = "NAS-Bench-201 cell (6 edges x 5 operations) in the benchmark's 3-stage skeleton"
    params = (
        *(
            ParamSpec(
                edge,
                required=True,
                values="name",
                choices=lambda: OPS,
                doc=f"operation on edge {edge} ({', '.join(OPS)})",
            )
            for edge in EDGES
        ),
        PRECISION,
    )
    unit = GroupSpec("cells", (), doc="cells per stage (NAS-Bench-201's N = count); one cell shared by all")

    def build(self, arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """The NAS-Bench-201 network of `arch` for inputs (C, H, W); N = len(arch.units) cells per stage.

        Raises ConfigError when an edge is missing or names an unknown operation.
        """
        ops = parse_cell(cell_of(arch))
        if len(arch.units) < 1:
            raise ConfigError("nb201 genotype: field 'units': expected at least one cell per stage")
        return NB201Network(ops, int(input_shape[0]), num_classes, cells_per_stage=len(arch.units))

    def label(self, arch: Architecture) -> str:
        """The cell string, e.g. `nb201|nor_conv_3x3~0|+|...|` (see `describe`)."""
        return describe(arch)

    def degenerate(self, arch: Architecture) -> str | None:
        """Why a cell cannot learn: every input-to-output path has a `none` edge (`x * 0`), so the
        network's output is the classifier's bias and its accuracy chance (341 of the 15,625 cells);
        None when some path carries the input."""
        if any(all(arch.params[e] != "none" for e in path) for path in PATHS):
            return None
        return "every path from the cell's input to its output has a none edge"


# the cell's four input-to-output paths, as the edges they take
PATHS: tuple[tuple[str, ...], ...] = (("3<-0",), ("1<-0", "3<-1"), ("2<-0", "3<-2"), ("1<-0", "2<-1", "3<-2"))


__all__ = [
    "CELLS_PER_STAGE",
    "EDGES",
    "OPS",
    "PATHS",
    "InferCell",
    "NB201Network",
    "ResNetBasicBlock",
    "architecture_from_cell",
    "NB201",
    "cell_of",
    "format_cell",
    "parse_cell",
]
