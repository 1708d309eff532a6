"""Deployed runtimes: a model run the way it ships, so that inference is measured there.

A hardware profile names its runtime (`nas.config.Runtime`); `deploy_in_runtime` turns a float
model (already pruned, in eval mode) into a `DeployedModel` for that runtime at a precision:

  torch        eager PyTorch: `nas.compress.to_precision` (int8: FX static PTQ, x86 kernels)
  torchscript  the same model traced with torch.jit.trace, saved and loaded back, as
               `nas export` writes model.torchscript.pt
  onnxruntime  torch.onnx.export as `nas export` writes model.onnx (dynamic batch axis), run by an
               onnxruntime.InferenceSession on the profile's execution provider with the
               runtime's threads; int8 is the float ONNX graph quantized statically in QDQ format
               (onnxruntime.quantization.quantize_static) and calibrated on the calibration inputs

A DeployedModel is called like a module (`deployed(batch) -> logits`), so the measurement protocol
runs it unchanged; `deployed.info` says what ran (runtime, provider, threads, format, version) and
goes into every energy record. The PyTorch runtimes also put `torch_threads` there: torch's
intra-op threads are process-wide, so nas.deploy.measure sets them around the measurement, while an
ONNX Runtime session carries its own. Each runtime is one entry of RUNTIMES (register_runtime); nothing
else switches on a runtime's name.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.compress import CastInput, low_precision_dtype, to_precision
from nas.errors import ConfigError, ExportError, RuntimeUnavailable
from nas.hardware import RUNTIME_NAMES, Runtime, runtime_precisions


@dataclass
class DeployedModel:
    """A model ready to run in its runtime: `deployed(batch)` returns the logits.

    `batch`: a float32 tensor of shape (N, *input_shape) on the measured device. The result is a
    tensor (torch runtimes) or a NumPy array (ONNX Runtime) of shape (N, classes).
    `info`: what runs, for records: name, execution_provider, threads, format, version.
    """

    run: Callable[[torch.Tensor], Any]
    info: dict[str, Any] = field(default_factory=dict)

    def __call__(self, batch: torch.Tensor) -> Any:
        return self.run(batch)

    def eval(self) -> DeployedModel:
        """No-op, so code that puts modules in eval mode accepts a deployed model too."""
        return self

    def predict(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted classes (argmax of the logits) of `x`, shape (N,), int64, on the CPU."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                logits = self.run(x[start : start + batch_size])
                logits = torch.as_tensor(logits).float().cpu()
                out.append(logits.argmax(dim=1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


Preparer = Callable[[nn.Module, str, torch.Tensor, torch.Tensor, Runtime, int, torch.device], DeployedModel]
RUNTIMES: dict[str, Preparer] = {}


def register_runtime(name: str) -> Callable[[Preparer], Preparer]:
    """Register `prepare(model, precision, example, calibration, runtime, threads, device)` as
    runtime `name` (one of nas.config.RUNTIME_NAMES, which profiles may name). A duplicate raises."""

    def add(fn: Preparer) -> Preparer:
        if name in RUNTIMES:
            raise ValueError(f"runtime {name!r} is registered twice")
        if name not in RUNTIME_NAMES:
            raise ValueError(f"runtime {name!r} is not in nas.config.RUNTIME_NAMES, so no profile can name it")
        RUNTIMES[name] = fn
        return fn

    return add


def deploy_in_runtime(
    model: nn.Module,
    precision: str,
    example: torch.Tensor,
    calibration: torch.Tensor,
    runtime: Runtime,
    threads: int = 1,
    device: torch.device | str = "cpu",
) -> DeployedModel:
    """`model` (float32, pruned, eval) deployed in `runtime` at `precision`.

    `example`: one input batch (N, *input_shape) used to trace or export; `calibration`: float
    inputs (M, *input_shape) that calibrate int8 activation ranges. `threads`: intra-op threads
    where the runtime does not set its own. int8 runs on CPU kernels (torch) or the runtime's
    provider (ONNX Runtime QDQ). Raises ConfigError for a runtime or precision that cannot be
    deployed, RuntimeUnavailable when the runtime or its provider is not installed here, and
    ExportError when the export itself fails.
    """
    if runtime.name not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime.name!r} (valid: {', '.join(sorted(RUNTIMES))})")
    if precision not in runtime_precisions(runtime.name):
        raise ConfigError(
            f"precision {precision!r} does not run in runtime {runtime.name!r} "
            f"(it runs {', '.join(runtime_precisions(runtime.name))})"
        )
    device = torch.device(device)
    return RUNTIMES[runtime.name](
        model.eval(), precision, example, calibration, runtime, runtime.threads or threads, device
    )


# ------------------------------------------------------------------------------------ file formats
def write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.jit.trace `model` on `example` (N, *input_shape) and save it to `path`: the export's
    model.torchscript.pt, and what the torchscript runtime loads."""
    # TorchScript is deprecated in recent PyTorch but still the format many C++ and mobile
    # runtimes load; the deprecation warning is not the user's concern here.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(path))


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.onnx.export `model` to `path` (input `input`, output `logits`, dynamic batch axis, one
    self-contained file): the export's model.onnx, and what the onnxruntime runtime loads.
    ExportError when the exporter fails."""
    with _quiet():
        try:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                verbose=False,
                external_data=False,  # one self-contained file; our models are far below protobuf's 2 GB
            )
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else ""
            raise ExportError(f"{path}: torch.onnx.export failed ({e.__class__.__name__}: {msg})") from e


# ------------------------------------------------------------------------------------ torch
def _torch_module(model: nn.Module, precision: str, calibration: torch.Tensor, device: torch.device) -> nn.Module:
    deployed = to_precision(model, precision, calibration)
    return deployed.to("cpu" if precision == "int8" else device).eval()


@register_runtime("torch")
def _prepare_torch(model, precision, example, calibration, runtime, threads, device) -> DeployedModel:
    module = _torch_module(model, precision, calibration, device)
    return DeployedModel(
        module,
        {
            "name": "torch",
            "execution_provider": None,
            "threads": threads,
            "torch_threads": threads,
            "format": "eager PyTorch module",
            "version": torch.__version__,
        },
    )


@register_runtime("torchscript")
def _prepare_torchscript(model, precision, example, calibration, runtime, threads, device) -> DeployedModel:
    module = _torch_module(model, precision, calibration, device)
    example = example.to(next(iter(module.parameters()), example).device) if precision != "int8" else example.cpu()
    with tempfile.TemporaryDirectory(prefix="nas-ts-") as tmp:
        path = Path(tmp) / "model.torchscript.pt"
        write_torchscript(module, example, path)  # as `nas export` writes it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(str(path), map_location=example.device)
    return DeployedModel(
        loaded.eval(),
        {
            "name": "torchscript",
            "execution_provider": None,
            "threads": threads,
            "torch_threads": threads,
            "format": "torch.jit.trace (saved and loaded)",
            "version": torch.__version__,
        },
    )


# ------------------------------------------------------------------------------------ onnxruntime
class _Calibration:
    """onnxruntime.quantization.CalibrationDataReader over calibration inputs, in batches."""

    def __init__(self, input_name: str, x: np.ndarray, batch_size: int = 64) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [{input_name: x[i : i + batch_size]} for i in range(0, len(x), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_qdq(float_onnx: Path, out: Path, calibration: torch.Tensor) -> Path:
    """Statically quantize `float_onnx` to int8 in QDQ format (QuantizeLinear/DequantizeLinear
    pairs), activation ranges calibrated (min-max) on `calibration` (M, *input_shape) float32.

    Settings follow the x86 FX PTQ the torch runtime uses, so both int8 models approximate the
    float model alike: unsigned 8-bit activations, signed 8-bit per-channel weights
    (torch.ao get_default_qconfig("x86"): quint8 activations, per-channel qint8 weights).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Calibration, CalibrationDataReader):
        pass

    name = onnx.load(str(float_onnx), load_external_data=False).graph.input[0].name
    pre = out.with_name(out.stem + ".pre.onnx")
    with _quiet():
        quant_pre_process(str(float_onnx), str(pre), skip_symbolic_shape=True)  # shape inference + folding
        quantize_static(
            str(pre),
            str(out),
            Reader(name, calibration.detach().cpu().float().numpy()),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' and quantizer's notes (e.g. "torchvision is not installed")."""
    import io
    import logging

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "root", "onnxruntime")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def onnx_session(path: Path | str, provider: str, threads: int) -> Any:
    """An onnxruntime.InferenceSession on `provider` with `threads` intra-op threads (one
    inter-op thread: our graphs are chains). RuntimeUnavailable when the provider is not here."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeUnavailable(
            "runtime onnxruntime: the onnxruntime package is not installed (pip install 'energy-nas[export]')"
        ) from None
    available = ort.get_available_providers()
    if provider not in available:
        hint = (
            " (install onnxruntime-gpu and run on a machine with an NVIDIA GPU)"
            if provider == "CUDAExecutionProvider"
            else ""
        )
        raise RuntimeUnavailable(
            f"runtime onnxruntime: {provider} is not available here (available: {', '.join(available)}){hint}"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=[provider])
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        raise ExportError(
            f"{Path(path).name}: ONNX Runtime cannot load the model ({e.__class__.__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from e


class _OrtRunner:
    """Calls an InferenceSession with a torch batch; the batch's NumPy copy is kept while the
    same tensor comes back (the protocol runs one batch many times), so a window times ONNX
    Runtime, not a host copy per call."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name
        self._last: torch.Tensor | None = None
        self._array: np.ndarray | None = None

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        if batch is not self._last:
            self._array = np.ascontiguousarray(batch.detach().cpu().float().numpy())
            self._last = batch
        return self.session.run(None, {self.input: self._array})[0]


@register_runtime("onnxruntime")
def _prepare_onnxruntime(model, precision, example, calibration, runtime, threads, device) -> DeployedModel:
    import onnxruntime as ort

    provider = runtime.execution_provider or "CPUExecutionProvider"
    example = example.detach().cpu().float()
    float_model = copy.deepcopy(model).cpu().eval()  # the caller's model stays where and as it is
    exported = (
        CastInput(float_model, low_precision_dtype(precision)).eval() if precision in ("fp16", "bf16") else float_model
    )
    with tempfile.TemporaryDirectory(prefix="nas-ort-") as tmp:
        path = Path(tmp) / "model.onnx"
        write_onnx(exported, example, path)  # as `nas export` writes it
        fmt = "torch.onnx.export"
        if precision == "int8":
            path = quantize_qdq(path, Path(tmp) / "model.int8.onnx", calibration)
            fmt = "torch.onnx.export + onnxruntime.quantization.quantize_static (QDQ, per-channel int8 weights, uint8 activations)"
        session = onnx_session(path, provider, threads)
    return DeployedModel(
        _OrtRunner(session),
        {
            "name": "onnxruntime",
            "execution_provider": provider,
            "threads": threads,
            "format": fmt,
            "version": ort.__version__,
        },
    )


__all__ = [
    "RUNTIMES",
    "DeployedModel",
    "deploy_in_runtime",
    "onnx_session",
    "quantize_qdq",
    "register_runtime",
    "write_onnx",
    "write_torchscript",
]
