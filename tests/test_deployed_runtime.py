"""A search measures its candidates in the profile's runtime: with `runtime: onnxruntime` every
candidate runs in an ONNX Runtime session (int8 ones as QDQ graphs) while a RAPL sensor (a live
fake powercap tree) measures it, and every energy record names the runtime, host, device and sensor.
"""

from __future__ import annotations

import os
import socket

import onnxruntime as ort
import optuna
import pytest
from live_sensor import LivePowercap, rapl_profile

from nas.energy.rapl import RaplMeter
from nas.search import SearchSettings, run_search

SPACE = """
name: mlp-int8
family: mlp
params:
  activation: {choices: [relu, gelu]}
  dropout: {choices: [0.0]}
  precision: {choices: [fp32, int8]}
layers:
  count: {low: 1, high: 2}
  params:
    width: {choices: [16, 32, 64]}
"""


@pytest.fixture
def live_rapl(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("NAS_POWERCAP_ROOT", str(tmp_path / "powercap"))
    RaplMeter.clear_probe_cache()
    yield LivePowercap(tmp_path / "powercap", pids=lambda: [os.getpid()]).updated_on_read(monkeypatch)
    RaplMeter.clear_probe_cache()


def test_a_search_measures_every_candidate_in_onnx_runtime(tmp_path, live_rapl, monkeypatch):
    from nas import runtimes

    calls: list[int] = []
    run = runtimes._OrtRunner.__call__

    def counting(self, batch):
        calls.append(1)
        return run(self, batch)

    monkeypatch.setattr(runtimes._OrtRunner, "__call__", counting)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    profile = rapl_profile(tmp_path / "rapl-ort.yaml", runtime={"name": "onnxruntime", "threads": 1})
    result = run_search(
        SearchSettings(
            space=str(space), profile=str(profile), trials=4, epochs=1, sampler="random", out=str(tmp_path / "run")
        )
    )
    assert result.complete == 4
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert {t.user_attrs["precision"] for t in complete} == {"fp32", "int8"}, "both precisions sampled (seed 0)"
    for t in complete:
        record = t.user_attrs["energy"]
        assert record["method"] == "measured:rapl" and record["energy_per_inference_j"] > 0
        assert record["runtime"]["name"] == "onnxruntime" == t.user_attrs["runtime"]
        assert record["runtime"]["execution_provider"] == "CPUExecutionProvider"
        assert record["runtime"]["version"] == ort.__version__ and record["runtime"]["threads"] == 1
        assert ("QDQ" in record["runtime"]["format"]) == (t.user_attrs["precision"] == "int8")
        assert record["host"] == socket.gethostname() and record["device_name"]
    # the windows ran ONNX Runtime sessions: warm-up, window planning and every window's batches
    windows = sum(t.user_attrs["energy"]["protocol"]["batches_per_window"] * 2 for t in complete)
    assert len(calls) >= windows + 4


def test_torchscript_runtime_in_the_record(tmp_path, live_rapl):
    profile = rapl_profile(tmp_path / "rapl-ts.yaml", runtime="torchscript")
    run_search(SearchSettings(space="mlp", profile=str(profile), trials=1, epochs=1, out=str(tmp_path / "run")))
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    (trial,) = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert trial.user_attrs["energy"]["runtime"]["name"] == "torchscript"
    assert trial.user_attrs["energy"]["runtime"]["format"].startswith("torch.jit.trace")
