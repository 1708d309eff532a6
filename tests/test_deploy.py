"""nas.deploy: one contract over every runtime the deployed network can be measured in."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from nas.config import load_space
from nas.deploy import RUNTIMES, deploy
from nas.errors import ConfigError
from nas.models import build_model
from nas.space import sample

INPUT_SHAPE, CLASSES = (1, 8, 8), 10


@pytest.fixture(scope="module")
def model():
    """A small float MLP sampled from the shipped mlp space, in eval mode."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    arch = sample(study.ask(), load_space("mlp"))
    torch.manual_seed(0)
    return build_model(arch, INPUT_SHAPE, CLASSES).eval()


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_runtime_runs_the_deployed_network_as_eager_pytorch_does(runtime, model):
    calibration = torch.rand(16, *INPUT_SHAPE)
    deployed = deploy(model, "fp32", calibration, "cpu", input_shape=INPUT_SHAPE, runtime=runtime)
    assert deployed.runtime == runtime and deployed.precision == "fp32"
    x = torch.rand(7, *INPUT_SHAPE)  # another batch size than the example the runtime was prepared with
    with torch.no_grad():
        want, got = model(x), deployed.model(x)
    got = torch.as_tensor(np.asarray(got.detach() if isinstance(got, torch.Tensor) else got))  # ORT gives numpy
    assert got.shape == (7, CLASSES)
    assert torch.allclose(got.float(), want, atol=1e-4)


def test_an_unknown_runtime_lists_the_known_ones(model):
    with pytest.raises(ConfigError, match="unknown runtime 'tflite'") as e:
        deploy(model, "fp32", torch.rand(4, *INPUT_SHAPE), "cpu", input_shape=INPUT_SHAPE, runtime="tflite")
    assert all(name in str(e.value) for name in RUNTIMES)
