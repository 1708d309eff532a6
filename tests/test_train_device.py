"""`--train-device cpu|cuda|auto`: where candidates train, independent of the profile's measured
device; stored with the settings; CUDA without a GPU is one error line; training energy is the
sensor's only when training runs on the sensor's device."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from click.testing import CliRunner

from nas.cli import main
from nas.energy.estimate import EstimateMeter
from nas.energy.rapl import RaplMeter
from nas.errors import ConfigError
from nas.search.context import prepare, resolve_train_device
from nas.search.settings import SearchSettings, WorkerSettings


def test_cuda_without_a_gpu_is_one_line_and_creates_nothing(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["search", "--train-device", "cuda", "--trials", "1", "--quiet", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"nas: error: --train-device cuda: no CUDA GPU is usable here (torch {torch.__version__}, "
        f"torch.cuda.is_available() is False); use --train-device cpu or auto"
    ]
    assert not out.exists()


def test_auto_is_cuda_only_where_present():
    assert resolve_train_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_train_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="--train-device: expected one of cpu, cuda, auto"):
        SearchSettings(train_device="tpu").validate()
    with pytest.raises(ConfigError, match="--train-device"):
        WorkerSettings(storage="sqlite://", train_device="tpu").validate()


def test_the_train_device_is_stored_and_used(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        ["search", "--train-device", "cpu", "--trials", "1", "--epochs", "1", "--quiet", "--out", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["settings"]["train_device"] == "cpu"
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{out / 'study.db'}")
    (trial,) = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert trial.user_attrs["training"]["device"] == "cpu"


def test_training_elsewhere_than_the_sensor_is_estimated():
    ctx = prepare(SearchSettings(profile="cpu-rapl", allow_estimate=True, train_device="cpu"))
    ctx.meter = RaplMeter(ctx.profile)  # a CPU package sensor (constructing it reads nothing)
    assert ctx.training_meter() is ctx.meter  # training on the CPU: the sensor sees it
    ctx.train_device = torch.device("cuda")  # training on a GPU the RAPL package does not cover
    assert isinstance(ctx.training_meter(), EstimateMeter)
