"""The deployed network: rebuild, prune, convert precision, choose the device, measure.

Every command that measures a network or evaluates it as deployed goes through here: the search's
trial objective, `nas measure`, `nas rerank`, `nas variants` (through the objective), `nas profiles
calibrate` and `nas export --retrain-epochs`. The steps, in order:

1. `rebuild`: the float network of an architecture, pruned to the shapes a trial of it ends with.
2. `deploy`: prune (if asked), count (`ModelStats` of the deployed shapes), convert to the precision,
   choose the device (`inference_device`: int8 means CPU, here and nowhere else), prepare the runtime
   (`RUNTIMES`; PyTorch eager today, one entry per further runtime) -> a `Deployment`.
3. `measure`: energy per inference of a Deployment at the profile's batch size, under the device lock.

`deployable` says why a precision cannot run on a profile and device (or None), for callers that
refuse (search, measure, calibrate) and callers that skip (rerank, variants).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nas.architecture import Architecture
from nas.compress import prune, to_precision
from nas.data import Dataset
from nas.energy import EnergyRecord, Meter, Workload
from nas.hardware import HardwareProfile
from nas.models import ModelStats, build_model, model_stats
from nas.registry import lookup

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


# ------------------------------------------------------------------------------------ runtime
# How a converted network is run for measuring. Each entry takes (network on its device, one example
# batch) and returns the callable module the meter runs. A new runtime (TorchScript, ONNX Runtime) is
# one entry here; `deploy` is the only caller.
RUNTIMES: dict[str, Callable[[nn.Module, torch.Tensor], nn.Module]] = {
    "torch": lambda model, example: model,
}


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

    `stats` counts the deployed (pruned) shapes for one sample; `runtime` names the RUNTIMES entry
    that prepared `model`.
    """

    model: nn.Module
    stats: ModelStats
    precision: str
    device: torch.device
    runtime: str = "torch"


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
    runtime: str = "torch",
) -> Deployment:
    """The deployed form of a float `model` (which is left unchanged).

    Prunes `prune_ratio` of its channels (a `family` is then required), counts the result (or takes
    `stats` when the caller already has them), converts to `precision` (int8: static PTQ calibrated
    on `calibration`, shape (N, *input_shape)), moves it to `inference_device(precision, target)`
    and prepares it for `runtime`. Raises ConfigError for an unknown precision, family or runtime.
    """
    if prune_ratio:
        model = prune(model, family or "", prune_ratio)
    stats = stats or model_stats(model, input_shape)
    device = inference_device(precision, target)
    converted = to_precision(model, precision, calibration).to(device).eval()
    prepare = lookup(RUNTIMES, "runtime", runtime)
    example = calibration[:1].to(device)
    return Deployment(prepare(converted, example), stats, precision, device, runtime)


# ------------------------------------------------------------------------------------ measure
def inference_batch(data: Dataset, batch_size: int, device: torch.device) -> torch.Tensor:
    """`batch_size` real inputs (the training split, repeated if smaller) on `device`: (batch_size, *input_shape)."""
    x = data.x_train
    reps = -(-batch_size // len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch_size].to(device)


def measure(meter: Meter, deployment: Deployment, batch: torch.Tensor) -> EnergyRecord:
    """Energy per inference of `deployment` on `batch` (moved to its device), holding the device lock."""
    work = Workload(deployment.model, batch.to(deployment.device), deployment.stats, deployment.precision)
    with meter.device_lock():
        return meter.measure_inference(work)


def measure_on(meter: Meter, deployment: Deployment, data: Dataset, profile: HardwareProfile) -> EnergyRecord:
    """Energy per inference of `deployment` at the profile's batch size, with real inputs from `data`."""
    return measure(meter, deployment, inference_batch(data, profile.batch_size, deployment.device))


def measure_model(
    meter: Meter, model: nn.Module, stats: ModelStats, data: Dataset, profile: HardwareProfile,
    precision: str | None = None, device: torch.device | None = None,
) -> EnergyRecord:
    """Energy per inference of an already converted `model` at the profile's batch size.

    For callers (benchmarks) holding a ready network; `device` defaults to the meter's.
    """
    precision = precision or profile.precision
    device = device or torch.device(meter.torch_device)
    deployment = Deployment(model.to(device).eval(), stats, precision, device)
    return measure_on(meter, deployment, data, profile)


__all__ = [
    "CALIBRATION_SAMPLES", "RUNTIMES", "Deployment", "deploy", "deployable", "inference_batch",
    "inference_device", "measure", "measure_model", "measure_on", "prune_ratio_of", "rebuild",
]
