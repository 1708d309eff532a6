"""Deployed runtimes (nas.runtimes): every registered runtime runs the model it was given, at
every precision it supports; int8 in ONNX Runtime is a QDQ graph that agrees with PyTorch's int8.
"""

from __future__ import annotations

import onnx
import optuna
import pytest
import torch

from nas.config import load_space
from nas.data import load_dataset
from nas.errors import ConfigError, RuntimeUnavailable
from nas.hardware import RUNTIME_NAMES, Runtime, runtime_precisions
from nas.models import build_model
from nas.runtimes import RUNTIMES, deploy_in_runtime, onnx_session, quantize_qdq, register_runtime
from nas.space import sample
from nas.train import TrainConfig, train

RUNTIME_OF = {
    "torch": Runtime("torch"),
    "torchscript": Runtime("torchscript"),
    "onnxruntime": Runtime("onnxruntime", "CPUExecutionProvider"),
}
# max abs logit difference from eager PyTorch at the same precision: fp32 graphs differ only in
# kernel order (nas export accepts 1e-4); fp16 rounds every activation to 11 significant bits
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-2, "bf16": 0.3}
# Agreement of the int8 PyTorch (FX PTQ) and int8 ONNX Runtime (QDQ) predictions on the 359 test
# digits. Both round the same trained float model to 8 bits with their own calibration (PyTorch:
# histogram observers; ONNX Runtime: min-max), so they differ only on inputs whose top-two logits
# are closer than a few quantization steps. Tried here on 11 trained models: 0.977-1.0 for MLPs and
# for CNNs trained to >= 0.9 accuracy, down to 0.93 only for CNNs left at 0.6-0.75 accuracy (many
# near-ties). A wrong graph, calibration on the wrong inputs or a different model gives 0.1-0.5.
# 0.95 on a model trained to >= 0.9 accuracy leaves room for both backends' rounding and fails
# on any real mismatch.
AGREEMENT = 0.95


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", 0)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread, as a search with --threads 1 trains: on a shared 2-core machine more
    threads only spin (training here took minutes instead of a second)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(data, space: str, seed: int, epochs: int = 0) -> torch.nn.Module:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    arch = sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed)).ask(), load_space(space))
    torch.manual_seed(seed)
    model = build_model(arch, data.input_shape, data.num_classes)
    if epochs:
        train(model, data, TrainConfig(epochs, 64, 3e-3, seed))
    return model.eval()


def test_every_runtime_name_is_registered():
    assert set(RUNTIMES) == set(RUNTIME_NAMES)
    with pytest.raises(ValueError, match="twice"):
        register_runtime("torch")(lambda *a: None)
    with pytest.raises(ValueError, match="RUNTIME_NAMES"):
        register_runtime("tflite")(lambda *a: None)


@pytest.mark.parametrize("name", RUNTIME_NAMES)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_each_runtime_runs_the_model_it_was_given(data, name, precision):
    model = _model(data, "cnn", seed=1)
    x = data.x_test[:16]
    deployed = deploy_in_runtime(model, precision, x, data.x_train[:64], RUNTIME_OF[name], threads=1)
    reference = deploy_in_runtime(model, precision, x, data.x_train[:64], RUNTIME_OF["torch"], threads=1)
    with torch.inference_mode():
        got = torch.as_tensor(deployed(x)).float()
        want = reference(x).float()
    assert got.shape == (16, data.num_classes)
    assert (got - want).abs().max().item() <= TOLERANCE[precision], (name, precision)
    # another model gives other logits: the runtime runs this model, not a cached one
    other = _model(data, "cnn", seed=2)
    assert not torch.allclose(
        torch.as_tensor(deploy_in_runtime(other, precision, x, x, RUNTIME_OF[name])(x)).float(), got
    )
    assert deployed.info["name"] == name and deployed.info["threads"] == 1
    assert deployed.info["execution_provider"] == RUNTIME_OF[name].execution_provider


def test_runtime_threads_override_the_search_threads(data):
    deployed = deploy_in_runtime(
        _model(data, "mlp", 0),
        "fp32",
        data.x_test[:4],
        data.x_test[:4],
        Runtime("onnxruntime", "CPUExecutionProvider", threads=2),
        threads=1,
    )
    assert deployed.info["threads"] == 2
    assert deployed.run.session.get_session_options().intra_op_num_threads == 2


def test_int8_in_onnxruntime_is_a_qdq_graph_that_agrees_with_pytorch_int8(data, tmp_path):
    model = _model(data, "cnn", seed=4, epochs=4)  # inverted residual blocks: conv, depthwise, hardswish
    calibration = data.x_train[:256]
    x, y = data.x_test, data.y_test
    torch_int8 = deploy_in_runtime(model, "int8", x[:32], calibration, RUNTIME_OF["torch"])
    ort_int8 = deploy_in_runtime(model, "int8", x[:32], calibration, RUNTIME_OF["onnxruntime"])
    assert "QDQ" in ort_int8.info["format"]
    p_torch, p_ort = torch_int8.predict(x), ort_int8.predict(x)
    agreement = (p_torch == p_ort).float().mean().item()
    assert agreement >= AGREEMENT, agreement
    acc_torch, acc_ort = ((p == y).float().mean().item() for p in (p_torch, p_ort))
    assert acc_ort >= 0.9 and abs(acc_torch - acc_ort) <= 1 - AGREEMENT, (acc_torch, acc_ort)
    # it is really int8: its logits differ from the float model's (by rounding), yet stay close
    with torch.inference_mode():
        diff = (torch.as_tensor(ort_int8(x)) - model(x)).abs().max().item()
    assert 1e-4 < diff < 5.0, diff

    # the graph quantize_qdq writes: QuantizeLinear/DequantizeLinear pairs, int8 weights
    from nas.runtimes import write_onnx

    write_onnx(model, x[:8], tmp_path / "float.onnx")
    graph = onnx.load(str(quantize_qdq(tmp_path / "float.onnx", tmp_path / "int8.onnx", calibration))).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 2 and ops.count("DequantizeLinear") >= ops.count("QuantizeLinear")
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer), "weights stored as int8"


def test_a_precision_the_runtime_cannot_run_is_refused(data):
    assert "bf16" not in runtime_precisions("onnxruntime")
    with pytest.raises(ConfigError, match="'bf16' does not run in runtime 'onnxruntime'"):
        deploy_in_runtime(_model(data, "mlp", 0), "bf16", data.x_test[:4], data.x_test[:4], RUNTIME_OF["onnxruntime"])


def test_a_missing_execution_provider_is_one_line(tmp_path, data):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    from nas.runtimes import write_onnx

    write_onnx(_model(data, "mlp", 0), data.x_test[:4], tmp_path / "m.onnx")
    with pytest.raises(RuntimeUnavailable) as e:
        onnx_session(tmp_path / "m.onnx", "CUDAExecutionProvider", 1)
    assert "\n" not in str(e.value) and "CUDAExecutionProvider is not available here" in str(e.value)
