"""Energy that follows the architecture: counted MACs and the estimate per family.

Properties (hypothesis): attention's score and value products grow with the square of the number
of tokens, the state-space recurrence's work linearly; a mixture of experts counts its router and
its chosen experts only, so experts the router never picks add parameters but no MACs and no
estimated energy beyond the router's extra logits.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.architecture import Architecture
from nas.config import load_profile
from nas.energy.estimate import EstimateMeter
from nas.models import ELEMENTWISE_MACS, ModelStats, build_model, model_stats
from nas.models.moe import MixtureOfExperts
from nas.models.ssm import SelectiveScan
from nas.models.transformer import FeedForward, SelfAttention

FEW = settings(max_examples=10, deadline=None)


def _op_macs(module: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """MACs per aten op (FLOPs / 2) of one forward, with the registered elementwise costs."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=ELEMENTWISE_MACS) as counter:
        module.eval()(x)
    return {str(op): n // 2 for op, n in counter.get_flop_counts()["Global"].items()}


@FEW
@given(tokens=st.integers(2, 40), heads=st.sampled_from([1, 2, 4]), head_dim=st.integers(1, 16))
def test_doubling_tokens_quadruples_attention_score_and_value_macs(tokens, heads, head_dim):
    attn = SelfAttention(heads * head_dim, heads, 0.0)
    one = _op_macs(attn, torch.randn(1, tokens, heads * head_dim))
    two = _op_macs(attn, torch.randn(1, 2 * tokens, heads * head_dim))
    # the two T x T products (Q K^T and weights V) run as batched matmuls, the projections as addmm
    assert one["aten.bmm"] == 2 * heads * tokens * tokens * head_dim
    assert two["aten.bmm"] == 4 * one["aten.bmm"]
    assert two["aten.addmm"] == 2 * one["aten.addmm"]


@FEW
@given(tokens=st.integers(2, 30), width=st.integers(2, 24), state=st.integers(1, 8), expansion=st.integers(1, 2))
def test_doubling_tokens_doubles_the_recurrence(tokens, width, state, expansion):
    scan = SelectiveScan(width, state, expansion, 0.0)
    one = _op_macs(scan, torch.randn(1, tokens, width))
    two = _op_macs(scan, torch.randn(1, 2 * tokens, width))
    inner = expansion * width
    # the state update is counted (registered cost), one multiply-add per state value per token
    assert one["aten.addcmul"] == tokens * inner * state
    assert {op: 2 * n for op, n in one.items()} == two


def test_whole_models_scale_as_their_mixers():
    """On real models (embedding and head included) doubling tokens: transformer > 2x, ssm ~2x."""

    def macs(family: str, side: int) -> int:
        params = {"tokens": "rows", "width": 32, "pooling": "mean"}
        unit = {"heads": 2, "mlp_ratio": 1} if family == "transformer" else {"state": 8, "expansion": 1}
        arch = Architecture(family, params, (unit, unit))
        return model_stats(build_model(arch, (1, side, 8), 10), (1, side, 8)).macs

    assert macs("transformer", 64) / macs("transformer", 32) > 2.3
    assert 1.95 < macs("ssm", 64) / macs("ssm", 32) <= 2.0


def _moe(experts: int, top_k: int, width: int) -> Architecture:
    return Architecture(
        "moe",
        {"tokens": "rows", "width": 16, "pooling": "mean", "router": "softmax"},
        ({"heads": 2, "top_k": top_k, "experts": [{"width": width}] * experts},),
    )


def _with_idle_experts(model: nn.Module, extra: int) -> nn.Module:
    """`model` with `extra` experts appended to every MoE layer that its router never picks."""
    grown = copy.deepcopy(model)
    for moe in list(grown.modules()):
        if not isinstance(moe, MixtureOfExperts):
            continue
        old = moe.router
        moe.router = nn.Linear(old.in_features, old.out_features + extra)
        with torch.no_grad():
            moe.router.weight.zero_()
            moe.router.weight[: old.out_features] = old.weight
            moe.router.bias.fill_(-1e4)  # never among the top-k
            moe.router.bias[: old.out_features] = old.bias
        for _ in range(extra):
            moe.experts.append(copy.deepcopy(moe.experts[0]))
    return grown


@settings(max_examples=6, deadline=None)
@given(experts=st.integers(1, 4), extra=st.integers(1, 6), top_k=st.integers(1, 2), width=st.sampled_from([8, 32]))
def test_idle_experts_add_parameters_but_no_macs_or_energy(experts, extra, top_k, width):
    torch.manual_seed(0)
    model = build_model(_moe(experts, top_k, width), (1, 8, 8), 10).eval()
    grown = _with_idle_experts(model, extra).eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), grown(x), atol=1e-5)  # same network function
    small, big = model_stats(model, (1, 8, 8)), model_stats(grown, (1, 8, 8))
    tokens, router_in = 8, 16
    expert_params = sum(p.numel() for p in model.blocks[0].ffn.experts[0].parameters())
    assert big.params == small.params + extra * (expert_params + router_in + 1)
    # MACs: only the router's extra logits; weights read: only the router's extra rows
    assert big.macs - small.macs == tokens * router_in * extra
    assert big.weights_read - small.weights_read == extra * (router_in + 1)

    # the operator-level estimate reads no weights of an operator over zero rows: the graph's weight
    # reads grow by the router's extra rows only
    def graph_weights(stats: ModelStats) -> int:
        return sum(op.weight_elems for op in stats.operators.calls())

    assert graph_weights(big) - graph_weights(small) == extra * (router_in + 1)
    # estimated energy: grows (the router's extra logits and each expert's routing check, which eager
    # PyTorch runs for an idle expert too), but an idle expert's size costs nothing: idle experts
    # eight times as wide give the same estimate
    meter = EstimateMeter(load_profile("cpu-host"))
    energy = lambda stats: meter.estimate(stats, "fp32", 1).energy_per_inference_j  # noqa: E731
    wide = copy.deepcopy(grown)
    for moe in (m for m in wide.modules() if isinstance(m, MixtureOfExperts)):
        for i in range(experts, experts + extra):
            act = type(moe.experts[i].net[1])
            moe.experts[i] = FeedForward(router_in, 8 * width, act, 0.0)
    wide_stats = model_stats(wide.eval(), (1, 8, 8))
    assert wide_stats.params > big.params
    assert energy(big) - energy(small) >= 0
    assert energy(wide_stats) == pytest.approx(energy(big), rel=1e-12)


def test_sixteen_experts_top1_cost_about_one_dense_expert():
    """The issue's example: a 16-expert top-1 layer costs about one expert's dense feed-forward."""
    moe = model_stats(build_model(_moe(16, 1, 64), (1, 8, 8), 10), (1, 8, 8))
    dense = Architecture(
        "transformer", {"tokens": "rows", "width": 16, "pooling": "mean"}, ({"heads": 2, "mlp_ratio": 4},)
    )  # hidden 64: one expert's width
    dense_stats = model_stats(build_model(dense, (1, 8, 8), 10), (1, 8, 8))
    assert moe.params > 8 * dense_stats.params / 2
    assert abs(moe.macs - dense_stats.macs) <= 8 * 16 * 16  # the router's logits
