"""The deployed network: rebuild, prune, convert precision, choose the device, measure.

Every command that measures a network or evaluates it as deployed goes through here: the search's
trial objective, `nas measure`, `nas rerank`, `nas variants` (through the objective), `nas profiles
calibrate` and `nas export --retrain-epochs`. The steps, in order:

1. `rebuild`: the float network of an architecture, pruned to the shapes a trial of it ends with.
2. `deploy`: prune (if asked), count (`ModelStats` of the deployed shapes), choose the device
   (`inference_device`: int8 means CPU for PyTorch's kernels), and deploy in the profile's runtime at
   the precision (`nas.runtimes`: eager PyTorch, TorchScript, ONNX Runtime; int8 there is a QDQ
   graph) -> a `Deployment`.
3. `measure`: energy per inference of a Deployment at the profile's batch size, under the device
   lock; the record names the host and the runtime (with the meter's device and sensor).

`measure_candidate` runs steps 1-3 for a candidate named by its genotype and build seed (what a
trial measures, here or on the target device through `nas worker --measure-only`).

`deployable` says why a precision cannot run on a profile and device (or None), for callers that
refuse (search, measure, calibrate) and callers that skip (rerank, variants).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nas.architecture import Architecture
from nas.compress import prune, to_precision
from nas.data import Dataset
from nas.energy import EnergyRecord, Meter, Workload
from nas.hardware import HardwareProfile, Runtime
from nas.models import ModelStats, build_model, model_stats
from nas.runtimes import RUNTIMES, DeployedModel, deploy_in_runtime

CALIBRATION_SAMPLES = 256  # training inputs that calibrate int8 activation ranges


# ------------------------------------------------------------------------------------ device
def inference_device(precision: str, device: str | torch.device) -> torch.device:
    """The device a network at `precision` runs on when the target is `device`.

    int8 networks are PyTorch FX quantized modules, which run on CPU quantized kernels (fbgemm/x86)
    only; every other precision runs on `device`.
    """
    return torch.device("cpu") if precision == "int8" else torch.device(device)


def deployable(precision: str, profile: HardwareProfile, device: str | torch.device) -> str | None:
    """Why a network at `precision` cannot be deployed on `profile` measured on `device`; None if it can."""
    if precision not in profile.precisions:
        return (
            f"precision {precision} does not run on profile {profile.name} "
            f"(device.precisions: {', '.join(profile.precisions)})"
        )
    if inference_device(precision, device).type != torch.device(device).type:
        return (
            f"{precision} candidates run on CPU quantized kernels; profile {profile.name} "
            f"measures a {torch.device(device).type} device"
        )
    return None


# ------------------------------------------------------------------------------------ build
def rebuild(arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """An untrained float network with the structure a trial of `arch` ends with (pruned if it says so).

    A `prune_ratio` removes a fixed number of channels per layer, so pruning a freshly built network
    gives the same shapes as pruning the trained one (which channels go differs, but stored weights
    replace them all). Shapes: inputs (N, *input_shape), logits (N, num_classes).
    """
    model = build_model(arch, input_shape, num_classes)
    ratio = prune_ratio_of(arch)
    return prune(model, arch.family, ratio) if ratio else model


def prune_ratio_of(arch: Architecture) -> float:
    """The architecture's `prune_ratio` parameter (0.0 when it has none)."""
    return float(arch.params.get("prune_ratio", 0.0) or 0.0)


@dataclass(frozen=True)
class Deployment:
    """A network in the form it runs on the target: pruned, at its precision, on its device.

    `stats` counts the deployed (pruned) shapes for one sample; `runtime` names the nas.runtimes
    entry that prepared `model` (an nn.Module for the PyTorch runtimes, a DeployedModel for ONNX
    Runtime; both are called with a batch); `runtime_info` is what goes into energy records.
    """

    model: nn.Module | DeployedModel
    stats: ModelStats
    precision: str
    device: torch.device
    runtime: str = "torch"
    runtime_info: Mapping[str, Any] = field(default_factory=dict)


def deploy(
    model: nn.Module,
    precision: str,
    calibration: torch.Tensor,
    target: str | torch.device,
    *,
    input_shape: tuple[int, ...],
    family: str | None = None,
    prune_ratio: float = 0.0,
    stats: ModelStats | None = None,
    runtime: Runtime | str = "torch",
    threads: int | None = None,
    example: torch.Tensor | None = None,
    run_in_runtime: bool = True,
) -> Deployment:
    """The deployed form of a float `model` (which is left unchanged).

    Prunes `prune_ratio` of its channels (a `family` is then required), counts the result (or takes
    `stats` when the caller already has them), and deploys it in `runtime` (a profile's Runtime or a
    runtime name) at `precision` on `inference_device(precision, target)`: int8 is static PTQ
    calibrated on `calibration`, shape (N, *input_shape). `example` (default: one calibration
    input) is the batch traced or exported; `threads` the runtime's intra-op threads where the
    Runtime names none (default: torch's current setting). With `run_in_runtime` False (meters that
    estimate from counts) nothing is exported: the PyTorch model stands in, and `runtime_info` says
    it did not run. Raises ConfigError for an unknown precision, family or runtime, and what
    nas.runtimes.deploy_in_runtime raises.
    """
    if prune_ratio:
        model = prune(model, family or "", prune_ratio)
    stats = stats or model_stats(model, input_shape)
    device = inference_device(precision, target)
    spec = runtime if isinstance(runtime, Runtime) else Runtime(runtime)
    threads = spec.threads or threads or torch.get_num_threads()
    if not run_in_runtime:
        converted = to_precision(model, precision, calibration).to(device).eval()
        info = {**spec.to_dict(), "threads": threads, "format": "not run (the meter estimates from counts)"}
        return Deployment(converted, stats, precision, device, spec.name, info)
    example = example if example is not None else calibration[:1]
    deployed = deploy_in_runtime(model, precision, example, calibration, spec, threads, device)
    runnable = deployed.run if isinstance(deployed.run, nn.Module) else deployed
    return Deployment(runnable, stats, precision, device, spec.name, deployed.info)


# ------------------------------------------------------------------------------------ measure
def inference_batch(data: Dataset, batch_size: int, device: torch.device) -> torch.Tensor:
    """`batch_size` real inputs (the training split, repeated if smaller) on `device`: (batch_size, *input_shape)."""
    x = data.x_train
    reps = -(-batch_size // len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch_size].to(device)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside (None: unchanged)."""
    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def measure(meter: Meter, deployment: Deployment, batch: torch.Tensor) -> EnergyRecord:
    """Energy per inference of `deployment` on `batch` (moved to its device), holding the device lock.

    The record names this host and the runtime (`deployment.runtime_info`, or the runtime's name).
    PyTorch runtimes run with the runtime's threads (`torch_threads` in runtime_info)."""
    work = Workload(deployment.model, batch.to(deployment.device), deployment.stats, deployment.precision)
    info = dict(deployment.runtime_info) or {"name": deployment.runtime}
    with meter.device_lock(), _torch_threads(info.get("torch_threads")):
        record = meter.measure_inference(work)
    return dataclasses.replace(record, host=socket.gethostname(), runtime=info)


def measure_on(meter: Meter, deployment: Deployment, data: Dataset, profile: HardwareProfile) -> EnergyRecord:
    """Energy per inference of `deployment` at the profile's batch size, with real inputs from `data`."""
    return measure(meter, deployment, inference_batch(data, profile.batch_size, deployment.device))


def measure_model(
    meter: Meter,
    model: nn.Module,
    stats: ModelStats,
    data: Dataset,
    profile: HardwareProfile,
    precision: str | None = None,
    device: torch.device | None = None,
) -> EnergyRecord:
    """Energy per inference of an already converted `model` at the profile's batch size.

    For callers (benchmarks) holding a ready network; `device` defaults to the meter's.
    """
    precision = precision or profile.precision
    device = device or torch.device(meter.torch_device)
    deployment = Deployment(model.to(device).eval(), stats, precision, device)
    return measure_on(meter, deployment, data, profile)


# ------------------------------------------------------------------------------------ one candidate
def candidate_payload(architecture: Mapping[str, Any], seed: int, precision: str, prune_ratio: float) -> dict[str, Any]:
    """What identifies a candidate's deployed form: genotype (Architecture.to_dict()), build seed,
    precision and pruning ratio (JSON-serialisable; what trainers queue for remote measurers)."""
    return {
        "architecture": dict(architecture),
        "seed": int(seed),
        "precision": precision,
        "prune_ratio": float(prune_ratio),
    }


def measure_candidate(
    meter: Meter, profile: HardwareProfile, data: Dataset, payload: Mapping[str, Any], threads: int = 1
) -> tuple[EnergyRecord, ModelStats]:
    """(energy record, deployed stats) of the candidate `payload` (see candidate_payload), built
    with its seed before any training (a dense model's inference energy does not depend on its
    weights' values), deployed in `profile.runtime` and measured with `meter` on real inputs."""
    arch = Architecture.from_dict(payload["architecture"], "measurement request")
    precision, ratio = str(payload["precision"]), float(payload.get("prune_ratio", 0.0) or 0.0)
    torch.manual_seed(int(payload["seed"]))
    model = build_model(arch, data.input_shape, data.num_classes)
    deployment = deploy(
        model,
        precision,
        data.x_train[:CALIBRATION_SAMPLES],
        meter.torch_device,
        input_shape=data.input_shape,
        family=arch.family,
        prune_ratio=ratio,
        runtime=profile.runtime,
        threads=threads,
        example=inference_batch(data, profile.batch_size, torch.device("cpu")),
        run_in_runtime=meter.runs_workload,
    )
    return measure_on(meter, deployment, data, profile), deployment.stats


__all__ = [
    "CALIBRATION_SAMPLES",
    "RUNTIMES",
    "Deployment",
    "candidate_payload",
    "deploy",
    "deployable",
    "inference_batch",
    "inference_device",
    "measure",
    "measure_candidate",
    "measure_model",
    "measure_on",
    "prune_ratio_of",
    "rebuild",
]
