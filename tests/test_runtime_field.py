"""The hardware profile's `runtime` field: default, both spellings, validation in one line naming
file and field, and where it shows (run.json, `nas profiles show`, `nas profiles list`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nas.cli import main
from nas.config import RUNTIME_NAMES, Runtime, list_profiles, load_profile
from nas.errors import ConfigError

CPU_HOST = Path(load_profile("cpu-host").source)
H100 = Path(load_profile("nvidia-h100").source)


def _profile(tmp_path: Path, runtime, base: Path = CPU_HOST, **inference) -> Path:
    doc = yaml.safe_load(base.read_text())
    doc["name"] = "custom"
    if runtime is not ...:
        doc["runtime"] = runtime
    doc["inference"].update(inference)
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_profile_without_the_field_ships_in_eager_torch():
    for path in list_profiles():
        if "runtime" not in yaml.safe_load(path.read_text()):
            assert load_profile(path).runtime == Runtime("torch", None, None)


@pytest.mark.parametrize(
    "runtime,expected",
    [
        ("torchscript", Runtime("torchscript")),
        ("onnxruntime", Runtime("onnxruntime", "CPUExecutionProvider")),
        ({"name": "onnxruntime", "threads": 2}, Runtime("onnxruntime", "CPUExecutionProvider", 2)),
        (
            {"name": "onnxruntime", "execution_provider": "CPUExecutionProvider"},
            Runtime("onnxruntime", "CPUExecutionProvider"),
        ),
        ({"name": "torch", "threads": 4}, Runtime("torch", None, 4)),
    ],
)
def test_runtime_spellings(tmp_path, runtime, expected):
    assert load_profile(_profile(tmp_path, runtime)).runtime == expected


def test_a_gpu_profile_gets_the_cuda_provider(tmp_path):
    assert (
        load_profile(_profile(tmp_path, "onnxruntime", base=H100, precision="fp16")).runtime.execution_provider
        == "CUDAExecutionProvider"
    )


@pytest.mark.parametrize(
    "runtime,base,inference,field,needle",
    [
        ("tflite", CPU_HOST, {}, "'runtime'", "expected one of torch, torchscript, onnxruntime"),
        (3, CPU_HOST, {}, "'runtime'", "or a mapping"),
        ({"name": "tvm"}, CPU_HOST, {}, "'runtime.name'", "expected one of"),
        ({"name": "onnxruntime", "provider": "x"}, CPU_HOST, {}, "'runtime.provider'", "unknown field"),
        (
            {"name": "torch", "execution_provider": "CPUExecutionProvider"},
            CPU_HOST,
            {},
            "'runtime.execution_provider'",
            "only the onnxruntime runtime",
        ),
        (
            {"name": "onnxruntime", "execution_provider": "TensorrtExecutionProvider"},
            CPU_HOST,
            {},
            "'runtime.execution_provider'",
            "CUDAExecutionProvider",
        ),
        (
            {"name": "onnxruntime", "execution_provider": "CUDAExecutionProvider"},
            CPU_HOST,
            {},
            "'runtime.execution_provider'",
            "device.kind is 'cpu'",
        ),
        (
            {"name": "onnxruntime", "execution_provider": "CPUExecutionProvider"},
            H100,
            {"precision": "fp16"},
            "'runtime.execution_provider'",
            "device.kind is 'gpu'",
        ),
        ({"name": "onnxruntime", "threads": 0}, CPU_HOST, {}, "'runtime.threads'", ">= 1"),
        (
            "onnxruntime",
            CPU_HOST,
            {"precision": "bf16"},
            "'inference.precision'",
            "does not run in runtime 'onnxruntime'",
        ),
    ],
)
def test_bad_runtime_is_one_line_naming_file_and_field(tmp_path, runtime, base, inference, field, needle):
    path = _profile(tmp_path, runtime, base, **inference)
    with pytest.raises(ConfigError) as e:
        load_profile(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and f"field {field}" in msg and needle in msg, msg


def test_the_cli_refuses_a_bad_runtime_in_one_line(tmp_path):
    path = _profile(tmp_path, "tflite")
    result = CliRunner().invoke(main, ["profiles", "show", str(path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"nas: error: {path}: field 'runtime': expected one of {', '.join(RUNTIME_NAMES)}, got 'tflite'"
    ]


def test_profiles_show_and_list_name_the_runtime(tmp_path):
    path = _profile(tmp_path, {"name": "onnxruntime", "threads": 2})
    text = CliRunner().invoke(main, ["profiles", "show", str(path)], catch_exceptions=False).output
    assert text.rstrip().endswith("# resolved runtime: onnxruntime (CPUExecutionProvider, 2 threads)")
    doc = json.loads(CliRunner().invoke(main, ["profiles", "show", str(path), "--json"], catch_exceptions=False).output)
    assert doc["runtime"] == {"name": "onnxruntime", "execution_provider": "CPUExecutionProvider", "threads": 2}
    default = CliRunner().invoke(main, ["profiles", "show", "cpu-host"], catch_exceptions=False).output
    assert default.rstrip().endswith("# resolved runtime: torch")
    rows = json.loads(CliRunner().invoke(main, ["profiles", "list", "--json"], catch_exceptions=False).output)
    assert all(r["runtime"]["name"] in RUNTIME_NAMES for r in rows)


def test_run_json_and_the_study_store_the_runtime(tmp_path):
    path = _profile(tmp_path, "torchscript")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "search",
            "--space",
            "mlp",
            "--profile",
            str(path),
            "--trials",
            "1",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "run.json").read_text())
    assert meta["runtime"] == {"name": "torchscript", "execution_provider": None, "threads": None}
    assert meta["settings"]["runtime"]["name"] == "torchscript"


def test_a_space_sampling_a_precision_the_runtime_cannot_run_is_refused(tmp_path):
    path = _profile(tmp_path, "onnxruntime")  # cpu-host lists bf16, which ONNX Runtime cannot run
    space = tmp_path / "space.yaml"
    space.write_text(
        "name: s\nfamily: mlp\nparams:\n  activation: {choices: [relu]}\n  dropout: {choices: [0.0]}\n  precision: {choices: [fp32, bf16]}\n"
        "layers:\n  count: {low: 1, high: 1}\n  params:\n    width: {choices: [8]}\n"
    )
    result = CliRunner().invoke(
        main,
        [
            "search",
            "--space",
            str(space),
            "--profile",
            str(path),
            "--trials",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and str(space) in line and "'params.precision'" in line and "'bf16'" in line, line
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
