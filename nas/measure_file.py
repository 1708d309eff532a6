"""Measuring a model that left the tool: `nas measure --model FILE --profile P [--input-shape ...]`.

FILE is an ONNX model (`.onnx`: run by an onnxruntime.InferenceSession on the profile's execution
provider) or a TorchScript archive (`.pt`/`.pth`, as `nas export` writes model.torchscript.pt and
torch.jit.save writes any; run by torch.jit). The runtime is the profile's (or `--runtime`); a file
the runtime cannot load is refused in one line. The inputs are a seeded standard-normal batch at the
profile's batch size: a dense network's inference energy does not depend on input values.

A TorchScript archive does not record its input shape, but `nas export` writes one beside it
(`architecture.json`): for the archive an export wrote there, that shape is the default, and a
different `--input-shape` is refused (a convolutional network runs at any image size, so it would
be measured silently on a workload it was not built for).

Where the profile's sensor is absent, `allow_estimate` estimates from the file's counts (labelled
`estimated:`): ONNX files are counted by onnx-tool (MACs of its Conv, ConvTranspose, Gemm and MatMul
nodes; activations as the elements every node writes), TorchScript ones by PyTorch's
FlopCounterMode (MACs, as for the search's own models) and a dispatch mode summing each operator's
output elements.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nas.config import load_profile
from nas.deploy import Deployment, measure
from nas.energy import EnergyRecord, create_meter
from nas.errors import ConfigError
from nas.exporters import ARCHITECTURE_JSON, EXPORTERS, load_architecture
from nas.hardware import EXECUTION_PROVIDERS, RUNTIME_NAMES, HardwareProfile, Runtime
from nas.models import ModelStats
from nas.runtimes import DeployedModel, onnx_session

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # the ops whose MACs ModelStats counts
INPUT_SEED = 0


@dataclass(frozen=True)
class FileMeasurement:
    """A model file measured (or estimated) on a profile: what ran, on what, and the record."""

    model: str
    format: str  # "onnx" | "torchscript"
    input_shape: tuple[int, ...]  # one sample, without the batch axis
    precision: str
    profile: str
    meter: str
    stats: ModelStats
    record: EnergyRecord

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, the record and the counts as mappings."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("record", "stats")}
        d["input_shape"] = list(self.input_shape)
        d["stats"] = asdict(self.stats)
        d["record"] = self.record.to_dict()
        return d


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """`1,8,8` or `1x8x8` -> (1, 8, 8): one sample's shape, without the batch axis."""
    if text is None:
        return None
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(
            f"--input-shape: expected positive integers like 1,8,8 (one sample, no batch axis), got {text!r}"
        )
    return shape


def exported_input_shape(path: Path, given: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The sample shape for the TorchScript archive `path`: the one `nas export` recorded in the
    architecture.json beside it (when `path` is the archive an export writes), else `given`.
    Raises ConfigError when `given` contradicts the recorded shape."""
    recorded = path.parent / ARCHITECTURE_JSON
    if path.name not in EXPORTERS["torchscript"].files.values() or not recorded.is_file():
        return given
    shape = load_architecture(recorded).input_shape
    if given is not None and tuple(given) != tuple(shape):
        text = ",".join(str(d) for d in shape)
        raise ConfigError(
            f"{path}: --input-shape {','.join(str(d) for d in given)} does not match the input shape {text} that "
            f"nas export recorded in {recorded} (omit --input-shape, or pass {text})"
        )
    return tuple(shape)


def _runtime(profile: HardwareProfile, name: str | None) -> Runtime:
    if name is None:
        return profile.runtime
    if name not in RUNTIME_NAMES:
        raise ConfigError(f"--runtime: expected one of {', '.join(RUNTIME_NAMES)}, got {name!r}")
    provider = EXECUTION_PROVIDERS[profile.device_kind] if name == "onnxruntime" else None
    return Runtime(name, provider, profile.runtime.threads)


# ------------------------------------------------------------------------------------ ONNX
def _onnx_stats(path: Path, sample_shape: tuple[int, ...], input_name: str) -> tuple[ModelStats, str]:
    """(counts for one sample, precision) of an ONNX file, from onnx-tool's shape inference and profile."""
    try:
        import onnx_tool
    except ImportError:
        raise ConfigError("estimating an ONNX model needs onnx-tool: pip install 'energy-nas[export]'") from None
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = onnx_tool.Model(str(path))
        graph = model.graph
        graph.shape_infer({input_name: np.zeros((1, *sample_shape), dtype=np.float32)})
        graph.profile()
    nodes = list(graph.nodemap.values())
    macs = sum(float(n.macs[0]) for n in nodes if n.op_type in LINEAR_OPS)
    written = sum(int(np.prod(graph.tensormap[o].shape)) for n in nodes for o in n.output if o in graph.tensormap)
    quantized = any(n.op_type in ("QuantizeLinear", "QLinearConv", "QLinearMatMul") for n in nodes)
    return ModelStats(
        int(graph.params), int(macs), written, int(np.prod(sample_shape))
    ), "int8" if quantized else "fp32"


def _load_onnx(
    path: Path, runtime: Runtime, threads: int, shape: tuple[int, ...] | None, batch_size: int
) -> tuple[DeployedModel, tuple[int, ...], int, str]:
    from nas.runtimes import _OrtRunner

    session = onnx_session(path, runtime.execution_provider or "CPUExecutionProvider", threads)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ConfigError(f"{path}: the model has {len(inputs)} inputs; only single-input models can be measured")
    first = inputs[0]
    if first.type != "tensor(float)":
        raise ConfigError(f"{path}: input {first.name!r} is {first.type}; only float32 inputs are supported")
    dims = list(first.shape)
    fixed = len(dims) >= 2 and all(isinstance(d, int) and d > 0 for d in dims[1:])
    if shape is None:
        if not fixed:
            raise ConfigError(f"{path}: input {first.name!r} has shape {dims} with symbolic sizes; pass --input-shape")
        shape = tuple(int(d) for d in dims[1:])
    elif fixed and tuple(shape) != tuple(dims[1:]):
        text = ",".join(str(d) for d in dims[1:])
        raise ConfigError(
            f"{path}: --input-shape {','.join(str(d) for d in shape)} does not match the file's input "
            f"{first.name!r} of shape {dims} (omit --input-shape, or pass {text})"
        )
    batch = dims[0] if dims and isinstance(dims[0], int) and dims[0] > 0 else batch_size  # a fixed batch axis wins
    import onnxruntime as ort

    info = {
        "name": "onnxruntime",
        "execution_provider": runtime.execution_provider,
        "threads": threads,
        "format": "ONNX file",
        "version": ort.__version__,
    }
    return DeployedModel(_OrtRunner(session), info), shape, batch, first.name


# ------------------------------------------------------------------------------------ TorchScript
class _OutputElements(TorchDispatchMode):
    """Sums the elements every aten operator writes (views write nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's signature)
        out = func(*args, **(kwargs or {}))
        if not func._schema.is_mutable and not getattr(func, "is_view", False):
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor) and t._base is None:
                    self.elements += t.numel()
        return out


def _torchscript_stats(module: torch.nn.Module, shape: tuple[int, ...], path: Path) -> ModelStats:
    """Counts for one sample: parameters, MACs (PyTorch's FlopCounterMode, FLOPs / 2, as
    nas.models.model_stats counts them) and the elements every operator writes. A model that does
    not run on one sample of `shape` (another input size, or too large for memory) is a ConfigError."""
    from torch.utils.flop_counter import FlopCounterMode

    written = _OutputElements()
    try:
        x = torch.zeros(1, *shape)
        with torch.no_grad():
            module(x)  # plainly first: under the counting modes the interpreter's message loses its cause
    except (RuntimeError, ValueError, MemoryError) as e:  # the interpreter's message ends with the cause
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [e.__class__.__name__]
        cause = next((ln for ln in reversed(lines) if "Error: " in ln), lines[0]).split("Error: ", 1)[-1]
        raise ConfigError(
            f"{path}: does not run on an input of shape {','.join(map(str, shape))} (check --input-shape): "
            f"{cause[:200]}"
        ) from None
    with torch.no_grad(), FlopCounterMode(display=False) as flops, written:
        module(x)
    params = sum(p.numel() for p in module.parameters())
    return ModelStats(int(params), int(flops.get_total_flops() // 2), written.elements, int(x.numel()))


def _load_torchscript(path: Path, device: torch.device) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path), map_location=device).eval()
    except Exception as e:  # torch.jit.load raises RuntimeError or ValueError, with long messages
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise ConfigError(
            f"{path}: not a TorchScript archive (torch.jit.save, or nas export's model.torchscript.pt): {first[:200]}"
        ) from None


# ------------------------------------------------------------------------------------ entry point
def measure_file(
    model: str | Path,
    profile: str,
    input_shape: tuple[int, ...] | None = None,
    runtime: str | None = None,
    repeats: int | None = None,
    allow_estimate: bool = False,
    threads: int = 1,
) -> FileMeasurement:
    """Energy per inference of the model in `model` (ONNX or TorchScript) on `profile`'s device, in
    its runtime (or `runtime`), at the profile's batch size (or the file's fixed batch axis).

    `input_shape`: one sample's shape (required for TorchScript, and for ONNX inputs with symbolic
    sizes). Raises ConfigError for a missing or unreadable file, a format the runtime cannot load, or
    a missing shape; MeterUnavailable when the sensor is absent and `allow_estimate` is False.
    """
    path = Path(model)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    prof = load_profile(profile)
    if repeats is not None:
        if repeats < 1:
            raise ConfigError(f"--repeats: expected an integer >= 1, got {repeats}")
        prof = replace(prof, protocol=replace(prof.protocol, repeats=repeats))
    spec = _runtime(prof, runtime)
    threads = spec.threads or threads
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if spec.name != "onnxruntime":
            raise ConfigError(
                f"{path}: an ONNX model runs in onnxruntime, but profile {prof.name!r} ships in "
                f"{spec.name} (pass --runtime onnxruntime, or a profile with runtime: onnxruntime)"
            )
        fmt = "onnx"
    elif suffix in (".pt", ".pth"):
        if spec.name == "onnxruntime":
            raise ConfigError(
                f"{path}: a TorchScript archive runs in torch or torchscript, but profile "
                f"{prof.name!r} ships in onnxruntime (pass --runtime torchscript, or give the .onnx file)"
            )
        fmt = "torchscript"
        input_shape = exported_input_shape(path, input_shape)
        if input_shape is None:
            raise ConfigError(
                f"{path}: --input-shape is required for a TorchScript model (it does not record its input "
                f"shape, and no {ARCHITECTURE_JSON} from nas export lies beside it)"
            )
    else:
        raise ConfigError(f"{path}: unknown model format {suffix or '(no suffix)'!r} (valid: .onnx, .pt, .pth)")
    meter = create_meter(prof, allow_estimate=allow_estimate)
    try:
        device = torch.device(meter.torch_device)
        if fmt == "onnx":
            runnable, shape, batch_size, name = _load_onnx(path, spec, threads, input_shape, prof.batch_size)
            stats, precision = _onnx_stats(path, shape, name)
            device = torch.device("cpu")  # ONNX Runtime takes host arrays; its provider places the work
            info = runnable.info
        else:
            shape, batch_size = input_shape, prof.batch_size
            runnable = _load_torchscript(path, device)
            first = next(iter(runnable.parameters()), None)
            precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(
                first.dtype if first is not None else None, "fp32"
            )
            stats = _torchscript_stats(_load_torchscript(path, torch.device("cpu")), shape, path)
            info = {
                "name": "torchscript",
                "execution_provider": None,
                "threads": threads,
                "torch_threads": threads,
                "format": "TorchScript file",
                "version": torch.__version__,
            }
        generator = torch.Generator().manual_seed(INPUT_SEED)
        batch = torch.randn(batch_size, *shape, generator=generator)
        deployment = Deployment(runnable, stats, precision, device, info["name"], info)
        record = measure(meter, deployment, batch)
    finally:
        meter.close()
    return FileMeasurement(str(path), fmt, tuple(shape), precision, prof.name, meter.name, stats, record)


def format_file_measurement(m: FileMeasurement) -> str:
    """The text `nas measure --model` prints: what ran where, the figure, then the full record."""
    from nas.measure import format_record

    r = m.record
    label = "ESTIMATED, not measured" if not r.measured else "measured"
    head = [
        f"{m.model} ({m.format}, {m.precision}, input {list(m.input_shape)}, batch {r.batch_size}) "
        f"in {r.runtime.get('name')} on {r.host}",
        f"profile {m.profile}, meter {m.meter}: {r.method} ({label})",
        f"energy per inference: {r.energy_per_inference_j:.6g} J ({r.objective_uses}); latency per batch: {r.latency_s:.6g} s",
        f"counts per sample: {m.stats.params} params, {m.stats.macs} MACs, {m.stats.activation_elems} activation elements",
    ]
    return "\n".join(head + ["record:"] + format_record(r))


__all__ = ["FileMeasurement", "exported_input_shape", "format_file_measurement", "measure_file", "parse_input_shape"]
