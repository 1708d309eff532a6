"""The nb201 family: cell strings, the benchmark's parameter counts and MACs, the shipped space."""

from __future__ import annotations

import itertools

import pytest
import torch

from nas.architecture import Architecture
from nas.config import load_space
from nas.errors import ConfigError
from nas.models import architecture_label, build_model, model_stats
from nas.models.nb201 import EDGES, OPS, architecture_from_cell, cell_of, format_cell, parse_cell

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"


def test_every_cell_string_round_trips():
    seen = set()
    for ops in itertools.product(OPS, repeat=6):
        text = format_cell(ops)
        assert parse_cell(text) == ops
        seen.add(text)
    assert len(seen) == 5**6


def test_cell_string_layout_is_the_benchmarks():
    ops = ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect")
    assert format_cell(ops) == (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    )
    assert format_cell(dict(zip(EDGES, ops, strict=True))) == format_cell(ops)
    # within a node the edges may be listed in any order
    assert parse_cell("|a~0|".replace("a", "none") + "+|skip_connect~1|none~0|+|none~2|none~0|none~1|") == (
        "none",
        "none",
        "skip_connect",
        "none",
        "none",
        "none",
    )


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "|none~0|+|none~0|none~1|",
        "|none~0|+|none~0|none~1|+|none~0|none~1|conv~2|",
        "|none~0|+|none~0|none~0|+|none~0|none~1|none~2|",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|+|none~0|none~1|none~2|",
        "none~0+none~0|none~1+none~0|none~1|none~2",
        "|none|+|none~0|none~1|+|none~0|none~1|none~2|",
    ],
)
def test_malformed_cell_strings_are_refused(bad):
    with pytest.raises(ConfigError, match="cell string|cell"):
        parse_cell(bad)


def test_genotype_round_trip_through_json():
    arch = architecture_from_cell(RESNET)
    again = Architecture.from_dict(arch.to_dict())
    assert again == arch and cell_of(again) == RESNET and len(again.units) == 5
    assert architecture_label(again) == "nb201" + RESNET


# NAS-Bench-201's published ranges (CIFAR-10 / CIFAR-100, 32x32): parameters 0.073306-1.531546 M
# and 0.079156-1.537396 M; FLOPs 7.78305-220.11969 M (CIFAR-10), which count the classifier's bias.
@pytest.mark.parametrize(
    "cell, classes, params, macs_m",
    [
        (ALL_NONE, 10, 73_306, 7.78305),
        (ALL_3X3, 10, 1_531_546, 220.11969),
        (ALL_NONE, 100, 79_156, 7.7889),
        (ALL_3X3, 100, 1_537_396, 220.12554),
    ],
)
def test_parameter_counts_and_macs_match_the_benchmark(cell, classes, params, macs_m):
    model = build_model(architecture_from_cell(cell), (3, 32, 32), classes)
    stats = model_stats(model, (3, 32, 32))
    assert stats.params == params
    assert (stats.macs + classes) / 1e6 == pytest.approx(macs_m, abs=1e-5)


def test_none_edge_contributes_nothing_and_skip_passes_through():
    model = build_model(
        architecture_from_cell("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"), (3, 8, 8), 10
    ).eval()
    cell = model.cells[0]
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(cell(x), x)


def test_shipped_space_has_the_six_edges():
    space = load_space("nb201")
    assert [p.name for p in space.params] == list(EDGES)
    assert all(p.choices == OPS for p in space.params)
    assert space.repeated.count.low == space.repeated.count.high == 5


def test_unknown_operation_in_a_genotype_is_refused():
    arch = architecture_from_cell(RESNET)
    bad = Architecture("nb201", {**arch.params, "3<-2": "sep_conv_3x3"}, arch.units)
    with pytest.raises(ConfigError, match="sep_conv_3x3"):
        build_model(bad, (3, 32, 32), 10)


def test_odd_input_sizes_build():
    model = build_model(architecture_from_cell(ALL_3X3), (1, 7, 7), 10)
    assert model(torch.randn(2, 1, 7, 7)).shape == (2, 10)


def test_degenerate_cells_are_those_with_no_path_free_of_none():
    """341 of the 15,625 cells have a `none` edge on every input-to-output path: their output is
    the classifier's bias, whatever the weights; a family without the notion says None."""
    from nas.models import get_family

    family = get_family("nb201")
    cells = [
        Architecture("nb201", dict(zip(EDGES, ops, strict=True)), ({},)) for ops in itertools.product(OPS, repeat=6)
    ]
    degenerate = [a for a in cells if family.degenerate(a)]
    assert len(degenerate) == 341
    for arch in degenerate[:20]:  # the network's output does not depend on its input
        model = build_model(arch, (3, 8, 8), 10).eval()
        with torch.no_grad():
            assert torch.allclose(model(torch.randn(2, 3, 8, 8)), model(torch.randn(2, 3, 8, 8)))
    live = architecture_from_cell("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert family.degenerate(live) is None
    assert get_family("mlp").degenerate(Architecture("mlp", {}, ({"width": 8},))) is None
