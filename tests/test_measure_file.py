"""`nas measure --model FILE --profile P`: an exported or third-party model measured on this device
in the profile's runtime (a live fake RAPL tree as the sensor), or estimated and labelled so."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
from click.testing import CliRunner
from live_sensor import LivePowercap, rapl_profile

from nas.cli import main
from nas.energy.rapl import RaplMeter
from nas.models import model_stats
from nas.runtimes import write_onnx, write_torchscript

SHAPE = (1, 8, 8)


def nas(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small CNN written as nas export writes it (ONNX and TorchScript), and a bare state dict."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10)
    ).eval()
    x = torch.zeros(4, *SHAPE)
    write_onnx(model, x, folder / "model.onnx")
    write_torchscript(model, x, folder / "model.torchscript.pt")
    torch.save(model.state_dict(), folder / "weights.pt")
    return folder, model


@pytest.fixture
def live_rapl(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("NAS_POWERCAP_ROOT", str(tmp_path / "powercap"))
    RaplMeter.clear_probe_cache()
    LivePowercap(tmp_path / "powercap", pids=lambda: [os.getpid()]).updated_on_read(monkeypatch)
    yield
    RaplMeter.clear_probe_cache()


def test_an_onnx_file_is_measured_in_onnx_runtime(files, tmp_path, live_rapl):
    folder, model = files
    profile = rapl_profile(tmp_path / "board.yaml", runtime="onnxruntime")
    result = nas("measure", "--model", str(folder / "model.onnx"), "--profile", str(profile), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    record = doc["record"]
    assert doc["format"] == "onnx" and doc["input_shape"] == list(SHAPE) and doc["precision"] == "fp32"
    assert record["method"] == "measured:rapl" and record["energy_per_inference_j"] > 0
    assert record["runtime"]["name"] == "onnxruntime" and record["host"] == socket.gethostname()
    assert record["batch_size"] == 16  # the profile's
    # onnx-tool counts Gemm/Conv bias additions and the graph's shape constants too: a little above
    # PyTorch's FlopCounterMode and parameter count
    exact = model_stats(model, SHAPE)
    assert exact.params <= doc["stats"]["params"] <= 1.01 * exact.params
    assert exact.macs <= doc["stats"]["macs"] <= 1.1 * exact.macs


def test_a_torchscript_file_is_measured_and_the_runtime_must_fit_the_file(files, tmp_path, live_rapl):
    folder, model = files
    profile = rapl_profile(tmp_path / "board.yaml")  # runtime torch
    ts = str(folder / "model.torchscript.pt")
    result = nas("measure", "--model", ts, "--profile", str(profile), "--input-shape", "1,8,8", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["record"]["runtime"]["name"] == "torchscript" and doc["record"]["method"] == "measured:rapl"
    assert doc["stats"]["macs"] == model_stats(model, SHAPE).macs  # FlopCounterMode, as the search counts

    refused = nas("measure", "--model", str(folder / "model.onnx"), "--profile", str(profile))
    assert refused.exit_code == 2 and "pass --runtime onnxruntime" in refused.output
    again = nas("measure", "--model", str(folder / "model.onnx"), "--profile", str(profile), "--runtime", "onnxruntime")
    assert again.exit_code == 0, again.output
    assert "in onnxruntime on" in again.output and "measured:rapl (measured)" in again.output


def test_without_a_sensor_the_file_is_estimated_and_says_so(files):
    folder, _ = files
    result = nas(
        "measure", "--model", str(folder / "model.torchscript.pt"), "--profile", "cpu-host", "--input-shape", "1x8x8"
    )
    assert result.exit_code == 0, result.output
    assert "estimated:analytical (ESTIMATED, not measured)" in result.output
    assert (
        "energy per inference: " in result.output and "0 J" not in result.output.split("energy per inference: ")[1][:3]
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "{folder}/model.torchscript.pt", "--profile", "cpu-host"], "--input-shape is required"),
        (
            ["--model", "{folder}/weights.pt", "--profile", "cpu-host", "--input-shape", "1,8,8"],
            "not a TorchScript archive",
        ),
        (["--model", "{folder}/missing.onnx", "--profile", "cpu-host"], "file not found"),
        (["--model", "{folder}/model.onnx"], "--model needs --profile"),
        (
            ["--model", "{folder}/model.torchscript.pt", "--profile", "cpu-host", "--input-shape", "1,-8"],
            "--input-shape",
        ),
        (
            ["--model", "{folder}/model.onnx", "--profile", "cpu-host", "--runtime", "tflite"],
            "--runtime: expected one of",
        ),
        (["somerun", "--model", "{folder}/model.onnx", "--profile", "cpu-host"], "not both"),
        (["somerun"], "give RUN --trial N"),
    ],
)
def test_bad_input_is_one_line(files, args, needle):
    folder, _ = files
    result = nas("measure", *[a.format(folder=folder) for a in args])
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("nas: error: ") and needle in lines[0], result.output


def test_an_onnx_file_is_estimated_from_its_counts(files):
    """An ONNX session has no PyTorch operators to record: the estimate uses onnx-tool's counts."""
    folder, model = files
    result = nas("measure", "--model", str(folder / "model.onnx"), "--profile", "cpu-host", "--runtime", "onnxruntime")
    assert result.exit_code == 0, result.output
    assert "estimated:analytical (ESTIMATED, not measured)" in result.output and "Traceback" not in result.output
    refused = nas(
        "measure", "--model", str(folder / "model.onnx"), "--profile", "cpu-host", "--runtime", "onnxruntime",
        "--input-shape", "1,28,28",
    )  # fmt: skip
    assert refused.exit_code != 0 and refused.output.count("\n") == 1, refused.output
    assert "does not match the file's input 'input'" in refused.output and "pass 1,8,8" in refused.output


def test_an_exported_torchscript_file_takes_the_shape_its_export_recorded(files, tmp_path):
    """nas export writes the input shape beside model.torchscript.pt: it is the default, and another
    shape (a convolutional network runs at any size) is refused instead of measured silently."""
    folder, _ = files
    export = tmp_path / "exported"
    export.mkdir()
    (export / "model.torchscript.pt").write_bytes((folder / "model.torchscript.pt").read_bytes())
    arch = {"family": "mlp", "params": {"activation": "relu", "dropout": 0.0}, "units": [{"width": 8}]}
    (export / "architecture.json").write_text(json.dumps({**arch, "input_shape": list(SHAPE), "num_classes": 10}))
    ts = str(export / "model.torchscript.pt")
    result = nas("measure", "--model", ts, "--profile", "cpu-host", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["input_shape"] == list(SHAPE)
    refused = nas("measure", "--model", ts, "--profile", "cpu-host", "--input-shape", "1,28,28")
    lines = [ln for ln in refused.output.splitlines() if ln.strip()]
    assert refused.exit_code != 0 and len(lines) == 1 and lines[0].startswith("nas: error: "), refused.output
    assert "does not match the input shape 1,8,8" in lines[0] and "architecture.json" in lines[0]
    # the same archive elsewhere, without its export's record, still needs the flag
    alone = nas("measure", "--model", str(folder / "model.torchscript.pt"), "--profile", "cpu-host")
    assert alone.exit_code != 0 and "--input-shape is required" in alone.output
