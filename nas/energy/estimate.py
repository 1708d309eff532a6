"""The analytical estimate: energy from the operators a network runs and the profile's coefficients.

Deterministic (nothing is timed), labelled `estimated:analytical`, and a model of the hardware: every
operator that runs at inference (nas.energy.opgraph: recorded at PyTorch's dispatcher) is charged
for what it does on the device, in the deployed runtime. Per forward call of a batch of B inputs:

    energy = sum over operators of
               e_mac[precision] x MACs                            arithmetic of conv / matmul
             + e_element x element operations x (bytes/elem / 4)   pooling, batch-norm, activations,
                                                                   residual adds, ... (SIMD lanes
                                                                   scale with the element width)
             + e_cache x bytes from cache + e_dram x bytes from DRAM
             + e_call                                              dispatch overhead per operator
           + e_inference                                           fixed cost per forward call
           + static power x modelled compute/memory time
    energy per inference = energy / B

The dispatch time of each call is charged once, by e_call (the runtime's seconds per call x the
profile's active power), so the static term covers the operators' compute or DRAM time only.

Memory traffic: an operator reads its inputs and weights and writes its output. Its activations (B x
inputs + outputs) stay in the cache when its working set (activations + weights) fits, and the part
of the working set beyond the cache goes to DRAM (a smooth spill, so a bigger layer never costs less:
no cache cliff). Weights are read once per batch; they come from the cache only if all the network's
weights fit in it (otherwise every batch streams them from DRAM), with the same smooth spill.

The runtime (`torch`, `torchscript`, `onnxruntime`) decides which operators run: ONNX Runtime folds a
batch-norm into the convolution before it (ORT's Conv+BatchNormalization fusion, basic graph
optimisations) and fuses a following ReLU/Clip/Sigmoid/Tanh/LeakyRelu into the Conv or Gemm (ORT's
Conv/Gemm activation fusions, extended optimisations, both on by default); eager PyTorch and a traced
(not frozen) TorchScript module run batch-norm and activations as their own operators. Eval-time
no-ops (dropout, identity) dispatch nothing and views (flatten, reshape of contiguous data,
transpose) move nothing, so they cost nothing.

The modelled latency of a batch is, per operator, the larger of its compute time (MACs / peak MAC/s)
and its DRAM time (DRAM bytes / bandwidth), plus the runtime's time per operator call (static power
multiplies the first part only: see above).

Every coefficient comes from the profile (`estimate:` section; `estimate.runtimes.RUNTIME` overrides
any of them for one runtime; calibration writes there) or, for the dispatch overheads the profile
does not give, from RUNTIME_DEFAULTS below; each keeps its source.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from nas.energy.base import BYTES_PER_ELEM, EnergyRecord, Meter, Reading, WindowWork, Workload
from nas.energy.coefficients import (  # noqa: F401 (re-exported: the estimate's public names)
    _OVERHEAD_SOURCE,
    ELEMENT_OP_PER_MAC,
    FEATURE_UNITS,
    FITTED,
    RUNTIME_DEFAULTS,
    TERM_NAMES,
    Coefficients,
    RuntimeDefaults,
    coefficients,
    runtime_of,
)
from nas.energy.opgraph import OperatorGraph, operator_graph, summary_graph
from nas.hardware import HardwareProfile

METHOD = "estimated:analytical"
TRAINING_METHOD = "estimated:wall-time x active power"


# ----------------------------------------------------------------------------------- the model
def _spill(working_set: float, cache: float) -> float:
    """Share of a working set that does not fit in the cache (0 when it fits)."""
    return max(0.0, working_set - cache) / working_set if working_set > 0 else 0.0


def features(graph: OperatorGraph, coefs: Coefficients, batch_size: int) -> dict[str, float]:
    """Per inference, the quantity each FITTED coefficient multiplies (energy = sum of coef x feature).

    `graph` is the network's own (float) operator graph for one sample; the runtime's folding and
    fusion are applied here. Units: FEATURE_UNITS.
    """
    b = int(batch_size)
    bpe = BYTES_PER_ELEM[coefs.precision]
    cache = coefs.value("cache_bytes")
    peak = coefs.value("peak_macs_per_s")
    bandwidth = coefs.value("memory_bandwidth_bytes_per_s")
    ops = graph.deployed(coefs.folds_batch_norm, coefs.fuses_activation).operators
    weights_total = graph.weight_elems_total * bpe
    weight_spill = _spill(weights_total, cache)
    weights = coefs.call_weights
    calls = sum(weights[op.name].value if op.name in weights else 1.0 for op in ops)
    macs = elems = cache_bytes = dram_bytes = latency = 0.0
    for op in ops:
        act = op.activation_elems * bpe * b
        w = op.weight_elems * bpe
        spill = _spill(act + w, cache)
        op_dram = act * spill + w * weight_spill
        macs += op.macs * b
        elems += op.element_ops * b
        dram_bytes += op_dram
        cache_bytes += act + w - op_dram
        latency += max(op.macs * b / peak, op_dram / bandwidth)
    return {
        "energy_per_mac_j": macs / b,
        "energy_per_element_op_j": elems * bpe / 4 / b,
        "energy_per_byte_cache_j": cache_bytes / b,
        "energy_per_byte_dram_j": dram_bytes / b,
        "energy_per_call_j": calls / b,
        "energy_per_inference_j": 1 / b,
        "static_power_w": latency / b,
    }


def inference_terms(graph: OperatorGraph, coefs: Coefficients, batch_size: int) -> dict[str, float]:
    """The estimate's terms for one inference at `batch_size`: each in joules (`compute_j`,
    `elementwise_j`, `cache_j`, `dram_j`, `calls_j`, `inference_j`, `static_j`), their sum
    `total_j`, the modelled `latency_batch_s` (seconds per batch) and `operator_calls` (per batch,
    weighted by the runtime's `call_weights`)."""
    f = features(graph, coefs, batch_size)
    terms = {TERM_NAMES[k]: coefs.value(k) * f[k] for k in FITTED}
    terms["total_j"] = sum(terms[TERM_NAMES[k]] for k in FITTED)
    calls = f["energy_per_call_j"] * batch_size
    terms["latency_batch_s"] = f["static_power_w"] * batch_size + calls * coefs.value("seconds_per_call")
    terms["operator_calls"] = calls
    return terms


def predict(feature_row: Mapping[str, float], values: Mapping[str, float]) -> float:
    """Energy per inference (J) from a `features` row and coefficient values."""
    return sum(feature_row[k] * values[k] for k in FITTED)


# ----------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Estimate:
    """The estimate of one network: energy per inference (J) with its terms, MACs and parameters
    per sample, the modelled latency of a batch (s), and the coefficients used (with sources)."""

    energy_per_inference_j: float
    terms: Mapping[str, float]
    macs: int
    params: int
    latency_s: float
    batch_size: int
    coefficients: Coefficients

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {
            "energy_per_inference_j": self.energy_per_inference_j,
            "method": METHOD,
            "macs": self.macs,
            "params": self.params,
            "latency_s": self.latency_s,
            "batch_size": self.batch_size,
            "precision": self.coefficients.precision,
            "runtime": self.coefficients.runtime,
            "profile": self.coefficients.profile,
            "terms": dict(self.terms),
        }


def estimate_graph(graph: OperatorGraph, params: int, coefs: Coefficients, batch_size: int) -> Estimate:
    """The estimate of a recorded operator graph (see `estimate_module` for a module)."""
    terms = inference_terms(graph, coefs, batch_size)
    return Estimate(
        terms["total_j"],
        {k: v for k, v in terms.items() if k.endswith("_j") or k == "operator_calls"},
        graph.macs,
        params,
        terms["latency_batch_s"],
        batch_size,
        coefs,
    )


def estimate_module(
    module: Any,
    input_shape: Any,
    profile: HardwareProfile | str,
    *,
    batch_size: int | None = None,
    precision: str | None = None,
    runtime: str | None = None,
) -> Estimate:
    """Energy per inference of any `nn.Module` on `profile` (a HardwareProfile, a shipped profile's
    name or a YAML path), for inputs of `input_shape` (one sample, no batch dimension, e.g.
    (3, 32, 32)), at the profile's batch size, precision and runtime unless given.

    Returns an Estimate (joules, MACs, parameters, terms, coefficients with sources). The module is
    not changed. Raises ConfigError for an unknown profile, precision or runtime.
    """
    from nas.config import load_profile

    prof = profile if isinstance(profile, HardwareProfile) else load_profile(profile)
    graph = operator_graph(module, tuple(input_shape))
    params = sum(int(p.numel()) for p in module.parameters())
    coefs = coefficients(prof, precision, runtime)
    return estimate_graph(graph, params, coefs, batch_size or prof.batch_size)


class EstimateMeter(Meter):
    """Deterministic analytical estimate from the hardware profile; labelled `estimated:analytical`."""

    name = "estimate"
    runs_workload = False

    def __init__(self, profile: HardwareProfile) -> None:
        super().__init__(profile)
        self._t0: float | None = None

    def estimate(self, stats: Any, precision: str, batch_size: int, graph: OperatorGraph | None = None) -> EnergyRecord:
        """The record for a network whose ModelStats are `stats` (its `operators` graph is used, or
        `graph` when given) at `precision` and `batch_size`."""
        graph = graph or stats.operators
        if graph is None:  # counts recorded without a graph: one operator doing all the work
            graph = summary_graph(
                getattr(stats, "weights_read", stats.params), stats.macs, stats.activation_elems, stats.input_elems
            )
        coefs = coefficients(self.profile, precision)
        result = estimate_graph(graph, stats.params, coefs, batch_size)
        total = result.energy_per_inference_j
        return EnergyRecord(
            method=METHOD,
            api=f"analytical operator-level model ({coefs.runtime} runtime: per-operator MACs, element "
            f"operations, bytes from cache/DRAM, calls; per forward call; static power x modelled latency)",
            scope="model",
            device_name=f"{self.profile.name} (modelled)",
            driver_version=None,
            batch_size=batch_size,
            precision=precision,
            energy_per_inference_j=total,
            gross_energy_per_inference_j=total,
            net_energy_per_inference_j=None,
            objective_uses="estimate",
            spread_j=0.0,
            repeats=1,
            window_s=None,
            inferences_per_window=None,
            idle_power_w=None,
            idle_subtracted=False,
            latency_s=result.latency_s,
            latency_method="estimated:operator roofline + dispatch",
            coefficients={
                "profile": self.profile.name,
                "runtime": coefs.runtime,
                "terms": dict(result.terms),
                "coefficients": coefs.table(),
            },
        )

    def measure_inference(self, workload: Workload) -> EnergyRecord:
        """The estimate of `workload`'s network (its recorded operator graph); runs no inference. A
        network that is not a PyTorch module (an ONNX Runtime session, `nas measure --model FILE.onnx`)
        has no operator graph to record: its counts (`workload.stats`) are estimated as one operator."""
        graph = workload.stats.operators
        if graph is None and isinstance(workload.model, torch.nn.Module):
            graph = operator_graph(workload.model, tuple(workload.batch.shape[1:]))
        return self.estimate(workload.stats, workload.precision, workload.batch_size, graph)

    def begin_window(self) -> None:
        """Start timing a window of work (training) on this host."""
        self._t0 = time.perf_counter()

    def end_window(self, work: WindowWork | None = None) -> Reading:
        """The window's energy: its measured wall time on this host x the profile's active power
        (peak_w - idle_w), labelled `estimated:wall-time x active power`. `work` is not needed."""
        duration = time.perf_counter() - (self._t0 or time.perf_counter())
        self._t0 = None
        return Reading(energy_j=duration * self.active_power_w(), duration_s=duration, method=TRAINING_METHOD)

    def active_power_w(self) -> float:
        """The power the profile's device draws while busy above idle (peak_w - idle_w), W."""
        return max(self.profile.peak_power_w.value - self.profile.idle_power_w.value, 0.0)

    def estimate_work(self, work: WindowWork, duration_s: float | None = None) -> Reading:
        """Energy of `work` that never ran (e.g. training skipped by a budget): its expected time
        `duration_s` x active power when known, else arithmetic, DRAM traffic and static power over
        the roofline time (a lower bound)."""
        p = self.profile
        if duration_s is not None:
            return Reading(energy_j=duration_s * self.active_power_w(), duration_s=0.0, method=TRAINING_METHOD)
        coefs = coefficients(p, work.precision)
        peak = coefs.value("peak_macs_per_s")
        modelled_s = max(work.macs / peak, work.bytes_moved / coefs.value("memory_bandwidth_bytes_per_s"))
        energy = (
            work.macs * coefs.value("energy_per_mac_j")
            + work.bytes_moved * coefs.value("energy_per_byte_dram_j")
            + coefs.value("static_power_w") * modelled_s
        )
        return Reading(energy_j=energy, duration_s=0.0, method=METHOD)


__all__ = [
    "FITTED",
    "METHOD",
    "RUNTIME_DEFAULTS",
    "Coefficients",
    "Estimate",
    "EstimateMeter",
    "coefficients",
    "estimate_graph",
    "estimate_module",
    "features",
    "inference_terms",
    "predict",
    "runtime_of",
]
