"""Contract tests over every registered block, family and shipped space."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from torch import nn

from nas.architecture import Architecture
from nas.config import list_spaces, load_space
from nas.errors import ConfigError
from nas.models import ACTIVATIONS, BLOCKS, FAMILIES, build_model, model_stats
from nas.space import sample


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_block_forward_shape(name, stride):
    block = BLOCKS[name](8, 12, 3, stride, nn.ReLU, 4)
    y = block(torch.randn(2, 8, 9, 9))
    assert y.shape == (2, 12, math.ceil(9 / stride), math.ceil(9 / stride))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_is_a_module(name):
    assert isinstance(ACTIVATIONS[name](), nn.Module)


def test_inverted_residual_uses_skip_only_when_shapes_match():
    same = BLOCKS["inverted_residual"](8, 8, 3, 1, nn.ReLU, 2)
    other = BLOCKS["inverted_residual"](8, 16, 3, 1, nn.ReLU, 2)
    assert same.skip and not other.skip
    # with the body zeroed the skip path passes the input through unchanged
    for p in same.body.parameters():
        nn.init.zeros_(p)
    x = torch.randn(1, 8, 5, 5)
    assert torch.equal(same.eval()(x), x)


@pytest.mark.parametrize("path", list_spaces(), ids=lambda p: p.stem)
@pytest.mark.parametrize("input_shape", [(1, 8, 8), (1, 28, 28), (3, 12, 12)])
def test_every_space_samples_buildable_models(path, input_shape):
    space = load_space(path)
    assert all(alt.family in FAMILIES for alt in space.alternatives())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(8):
        trial = study.ask()
        arch = sample(trial, space)
        model = build_model(arch, input_shape, 10)
        assert model(torch.randn(3, *input_shape)).shape == (3, 10)
        # the genotype survives JSON and rebuilds the same shapes
        again = Architecture.from_dict(arch.to_dict())
        assert again == arch
        stats = model_stats(model, input_shape)
        assert stats.params == sum(p.numel() for p in build_model(again, input_shape, 10).parameters())
        study.tell(trial, 0.0)


def test_conditional_and_repeated_params_exist_only_where_they_apply():
    space = load_space("cnn")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_ir = seen_other = False
    for _ in range(40):
        trial = study.ask()
        arch = sample(trial, space)
        n = trial.params["stages.count"]
        assert len(arch.units) == n
        assert not any(k.startswith(f"stages.{n}.") for k in trial.params), "no params for absent stages"
        for i, unit in enumerate(arch.units):
            has_exp = f"stages.{i}.expansion" in trial.params
            assert has_exp == (unit["block"] == "inverted_residual")
            seen_ir |= has_exp
            seen_other |= not has_exp
        study.tell(trial, 0.0)
    assert seen_ir and seen_other


def test_mlp_macs_match_the_layer_products():
    arch = Architecture("mlp", {"activation": "relu", "dropout": 0.0}, ({"width": 32}, {"width": 16}))
    stats = model_stats(build_model(arch, (1, 8, 8), 10), (1, 8, 8))
    assert stats.macs == 64 * 32 + 32 * 16 + 16 * 10
    assert stats.params == (64 * 32 + 32) + (32 * 16 + 16) + (16 * 10 + 10)


def test_conv_macs_scale_with_channels():
    def macs(ch: int) -> int:
        arch = Architecture(
            "cnn",
            {"activation": "relu", "width_multiplier": 1.0},
            ({"block": "conv", "channels": ch, "kernel": 3, "repeats": 1, "stride": 1},),
        )
        return model_stats(build_model(arch, (1, 8, 8), 10), (1, 8, 8)).macs

    # the stage conv dominates: 16 -> ch channels, 3x3, 8x8 outputs
    assert macs(32) - macs(16) == 8 * 8 * 9 * 16 * 16 + 16 * 10


def test_unknown_family_or_block_fails_fast():
    with pytest.raises(ConfigError, match="unknown family 'rnn' \\(valid: cnn, .*mlp"):
        build_model(Architecture("rnn", {}, ()), (1, 8, 8), 10)
    bad = Architecture(
        "cnn",
        {"activation": "relu", "width_multiplier": 1.0},
        ({"block": "nope", "channels": 8, "kernel": 3, "repeats": 1, "stride": 1},),
    )
    with pytest.raises(ConfigError, match="unknown block 'nope'"):
        build_model(bad, (1, 8, 8), 10)
