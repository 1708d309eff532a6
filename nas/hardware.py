"""Hardware-profile types: what a hardware profile YAML file becomes once `nas.config` has validated it.

A leaf module (no imports from `nas`, no torch): meters, the estimate, reports and the model
registry name these types and the precisions without importing the loaders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# Numeric formats a model can run in (nas.models re-exports it). Defined in this leaf module, not
# beside the models, so that reading a profile never imports torch: `nas report` and `nas plot` parse
# the stored profile, and importing torch was most of their run time (docs/benchmarks.md, "Scale").
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# Runtimes a deployed model can ship in (kept here for the same reason as PRECISIONS). ONNX Runtime's
# execution providers are named as ONNX Runtime names them (onnxruntime.get_available_providers()).
RUNTIME_NAMES = ("torch", "torchscript", "onnxruntime")
EXECUTION_PROVIDERS = {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider"}  # device.kind -> provider
# ONNX Runtime has no bfloat16 Conv/Gemm kernels on its CPU and CUDA providers: a session refuses
# the exported graph ("Type 'tensor(bfloat16)' of input parameter ... of operator (Conv) ... is invalid",
# onnxruntime 1.32, tried here); fp16 runs (CPU: through ONNX Runtime's own casts).
_RUNTIME_CANNOT = {"onnxruntime": ("bf16",)}


def runtime_precisions(runtime: str) -> tuple[str, ...]:
    """The precisions (of PRECISIONS) a model can be deployed at in `runtime`."""
    return tuple(p for p in PRECISIONS if p not in _RUNTIME_CANNOT.get(runtime, ()))


@dataclass(frozen=True)
class Sourced:
    """A number together with where it comes from (datasheet, paper, measurement, assumption)."""

    value: float
    source: str


@dataclass(frozen=True)
class Protocol:
    """How sensor meters measure: warm-up, window length, repeats, idle baseline."""

    warmup_batches: int = 5
    min_window_s: float = 1.0
    min_inferences: int = 64
    repeats: int = 5
    idle_window_s: float = 1.0
    subtract_idle: bool = False  # the objective uses gross energy unless the profile says net
    # net energy below this fraction of gross is implausible (re-baseline, re-measure once, then
    # fail the trial): idle power drifts by a few percent with temperature and other processes
    # (shared/MEASURING.md section 8), so a net under 1% of gross cannot be told from drift
    min_net_fraction: float = 0.01
    # the idle baseline is re-measured when older than this: heatsinks settle over minutes, so a
    # baseline from the start of a long search drifts; 1 s of idle every 10 min costs < 0.2%
    idle_refresh_s: float = 600.0


@dataclass(frozen=True)
class SensorSettings:
    """Which readings of a board's power sensor a meter sums, and how often it samples them.

    `rails`: the rail labels to sum (as the board names them, e.g. Jetson `VDD_IN`, Pi 5
    `VDD_CORE`); empty means the meter's default. `sample_interval_s`: the background sampling
    period of integrating meters (seconds).
    """

    rails: tuple[str, ...] = ()
    sample_interval_s: float = 0.01


@dataclass(frozen=True)
class Runtime:
    """The runtime the deployed model ships in; inference energy and latency are measured in it.

    `name`: `torch` (eager PyTorch), `torchscript` (torch.jit.trace, as `nas export` writes it) or
    `onnxruntime` (torch.onnx.export, run by an onnxruntime.InferenceSession).
    `execution_provider`: ONNX Runtime only, `CPUExecutionProvider` or `CUDAExecutionProvider`
    (default: the one matching `device.kind`); None for the other runtimes.
    `threads`: intra-op threads of the runtime; None uses the search's `--threads`.
    """

    name: str = "torch"
    execution_provider: str | None = None
    threads: int | None = None

    def describe(self) -> str:
        """`onnxruntime (CPUExecutionProvider, 2 threads)`, `torch`."""
        extra = [x for x in (self.execution_provider, f"{self.threads} threads" if self.threads else None) if x]
        return f"{self.name} ({', '.join(extra)})" if extra else self.name

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data (dataclasses.asdict)."""
        return asdict(self)


@dataclass(frozen=True)
class RuntimeEstimate:
    """A profile's estimate coefficients for one runtime (`estimate.runtimes.NAME`), overriding the
    general ones: `values` maps a coefficient name to a Sourced number (energy_per_mac_j: one per
    precision); `folds_batch_norm` / `fuses_activation` override what the runtime is known to do
    (None: as nas.energy.estimate.RUNTIME_DEFAULTS says); `calibration`: the provenance record
    `nas profiles calibrate` wrote (file, sha256, networks, held-out errors), flat scalars and
    mappings of scalars."""

    values: Mapping[str, Sourced | Mapping[str, Sourced]]
    folds_batch_norm: bool | None = None
    fuses_activation: bool | None = None
    calibration: Mapping[str, Any] | None = None


# coefficients an `estimate.runtimes.NAME` section may set (nas.energy.estimate documents them)
RUNTIME_COEFFICIENTS = (
    "energy_per_mac_j",
    "energy_per_element_op_j",
    "energy_per_byte_cache_j",
    "energy_per_byte_dram_j",
    "energy_per_call_j",
    "energy_per_inference_j",
    "static_power_w",
    "seconds_per_call",
)


@dataclass(frozen=True)
class HardwareProfile:
    """A validated hardware profile (from YAML): the meter and device it measures, the batch size
    and precisions of the deployed model, the estimate's coefficients (each a `Sourced` number in SI
    units: W, MAC/s, bytes/s, bytes, J per MAC, J per byte, gCO2e/kWh), and the measurement protocol.
    """

    name: str
    description: str
    meter: str  # "nvml" | "rapl" | "estimate"
    device_kind: str  # "cpu" | "gpu"
    device_match: str | None  # regex the sensor's device name must match
    device_index: int
    batch_size: int
    precision: str
    precisions: tuple[str, ...]  # precisions the device runs natively
    idle_power_w: Sourced
    peak_power_w: Sourced
    peak_macs_per_s: Mapping[str, Sourced]
    memory_bandwidth_bytes_per_s: Sourced
    cache_bytes: Sourced
    energy_per_mac_j: Mapping[str, Sourced]
    energy_per_byte_dram_j: Sourced
    energy_per_byte_cache_j: Sourced
    static_power_w: Sourced
    grid_intensity_g_per_kwh: Sourced
    protocol: Protocol
    source: str
    runtime: Runtime = Runtime()
    # estimate coefficients beyond the core five: a general energy per element operation, and per
    # runtime overrides of any coefficient (written by `nas profiles calibrate`)
    energy_per_element_op_j: Sourced | None = None
    estimate_runtimes: Mapping[str, RuntimeEstimate] = field(default_factory=dict)
    sensor: SensorSettings = SensorSettings()

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data (dataclasses.asdict)."""
        return asdict(self)


__all__ = [
    "EXECUTION_PROVIDERS",
    "PRECISIONS",
    "RUNTIME_COEFFICIENTS",
    "RUNTIME_NAMES",
    "HardwareProfile",
    "Protocol",
    "Runtime",
    "RuntimeEstimate",
    "SensorSettings",
    "Sourced",
    "runtime_precisions",
]
