"""Structured pruning removes channels for real; int8 is a real quantized model."""

from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn

from nas.architecture import Architecture
from nas.compress import prune, to_precision
from nas.config import load_space
from nas.data import load_dataset
from nas.models import build_model, model_stats
from nas.space import sample
from nas.train import TrainConfig, accuracy, train


def _zero_half(model: nn.Module) -> None:
    """Give every BN random positive scales, then silence the first half of its channels, and
    likewise the first half of every hidden Linear's units: pruning 50% must remove exactly those."""
    g = torch.Generator().manual_seed(0)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.1)
                m.weight[: n // 2] = 0
                m.bias[: n // 2] = 0
        for lin in linears[:-1]:
            n = lin.out_features
            lin.weight[: n // 2] = 0
            lin.bias[: n // 2] = 0


@pytest.mark.parametrize("space", ["cnn", "mlp"])
def test_pruning_silenced_channels_keeps_outputs_and_cuts_macs(space):
    sp = load_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    x = torch.randn(6, 1, 8, 8)
    for _ in range(15):
        trial = study.ask()
        arch = sample(trial, sp)
        # even widths so that half is exact
        arch = Architecture(
            arch.family, {**arch.params, "width_multiplier": 1.0} if space == "cnn" else arch.params, arch.units
        )
        model = build_model(arch, (1, 8, 8), 10).eval()
        _zero_half(model)
        pruned = prune(model, arch.family, 0.5).eval()
        with torch.no_grad():
            assert torch.allclose(pruned(x), model(x), atol=1e-5), arch
        before, after = model_stats(model, (1, 8, 8)), model_stats(pruned, (1, 8, 8))
        assert after.macs < before.macs and after.params < before.params
        study.tell(trial, 0.0)


def test_mlp_pruning_shrinks_layers_physically():
    arch = Architecture("mlp", {"activation": "relu", "dropout": 0.0}, ({"width": 64}, {"width": 32}))
    pruned = prune(build_model(arch, (1, 8, 8), 10), "mlp", 0.25)
    widths = [m.out_features for m in pruned.modules() if isinstance(m, nn.Linear)]
    assert widths == [48, 24, 10]


def test_prune_ratio_out_of_range():
    from nas.errors import ConfigError

    with pytest.raises(ConfigError):
        prune(nn.Sequential(nn.Linear(2, 2)), "mlp", 1.0)


@pytest.fixture(scope="module")
def trained():
    data = load_dataset("digits")
    arch = Architecture("mlp", {"activation": "relu", "dropout": 0.0}, ({"width": 128},))
    torch.manual_seed(0)
    model = build_model(arch, data.input_shape, data.num_classes)
    train(model, data, TrainConfig(epochs=4, seed=0))
    return data, model.eval()


def test_int8_is_really_quantized_and_keeps_accuracy(trained):
    data, model = trained
    q = to_precision(model, "int8", data.x_train[:256])
    kinds = {type(m).__module__ for m in q.modules()}
    assert any("quantized" in k for k in kinds), kinds
    fp32, int8 = accuracy(model, data.x_val, data.y_val), accuracy(q, data.x_val, data.y_val)
    assert fp32 > 0.8
    assert abs(fp32 - int8) < 0.05


def test_bf16_runs_in_bf16_and_returns_float32(trained):
    data, model = trained
    low = to_precision(model, "bf16", data.x_train[:8])
    assert next(low.parameters()).dtype == torch.bfloat16
    out = low(data.x_val[:4])
    assert out.dtype == torch.float32
    assert abs(accuracy(low, data.x_val, data.y_val) - accuracy(model, data.x_val, data.y_val)) < 0.05
