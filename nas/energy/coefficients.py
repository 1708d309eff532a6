"""The estimate's coefficients: what a calibration fits, per-runtime defaults with their sources,
and how a profile's values, runtime and precision resolve to one `Coefficients` (see
`nas.energy.estimate` for the model they feed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nas.errors import ConfigError
from nas.hardware import HardwareProfile, Sourced

# The coefficients a calibration fits; the estimate is linear in them (`features`).
FITTED = (
    "energy_per_mac_j",
    "energy_per_element_op_j",
    "energy_per_byte_cache_j",
    "energy_per_byte_dram_j",
    "energy_per_call_j",
    "energy_per_inference_j",
    "static_power_w",
)
# What each fitted coefficient multiplies, per inference (the keys of `features`).
FEATURE_UNITS = {
    "energy_per_mac_j": "MACs",
    "energy_per_element_op_j": "element operations (fp32-equivalent)",
    "energy_per_byte_cache_j": "bytes from cache",
    "energy_per_byte_dram_j": "bytes from DRAM",
    "energy_per_call_j": "operator calls",
    "energy_per_inference_j": "forward calls",
    "static_power_w": "modelled seconds",
}
TERM_NAMES = {
    "energy_per_mac_j": "compute_j",
    "energy_per_element_op_j": "elementwise_j",
    "energy_per_byte_cache_j": "cache_j",
    "energy_per_byte_dram_j": "dram_j",
    "energy_per_call_j": "calls_j",
    "energy_per_inference_j": "inference_j",
    "static_power_w": "static_j",
}


@dataclass(frozen=True)
class RuntimeDefaults:
    """What a runtime does to the operator graph, and its dispatch overheads when the profile is silent."""

    folds_batch_norm: bool
    fuses_activation: bool
    seconds_per_call: Sourced
    seconds_per_inference: Sourced
    # operators (ATen names) whose kernel has a fixed cost of several ordinary calls: name -> calls
    call_weights: Mapping[str, Sourced] = field(default_factory=dict)


# Dispatch overheads of each runtime on the development host (2-vCPU Xeon slice at 2.6 GHz, one
# thread, torch 2.13, onnxruntime 1.2x), from `python benchmarks/estimate_check.py --overheads` (a
# chain of 64 tiny Linear+ReLU layers against a chain of 1, this thread's CPU time, so other jobs on
# the shared host do not count): two runs on 2026-12-01 (load ~5) gave 3.75 / 3.67 us per eager
# operator call, 1.24 / 1.30 us per TorchScript operator, 0.38 / 0.44 us per ONNX Runtime node, and
# 1.5 / 1.6, 5.6 / 5.8, 5.1 / 4.9 us per forward call. A slower core pays more per call, which is
# what calibrating `energy_per_call_j` on the device is for.
_OVERHEAD_SOURCE = "benchmarks/estimate_check.py --overheads on the development host, one thread (2026-12-01)"
# PyTorch's exact GELU kernel on CPU costs about 2.5 ordinary operator calls at the search's sizes
# (9.2-9.3 us per call on 32x32 fp32, against 0.8 us for torch.relu and 3.7 us per operator call on
# average; the same `--overheads` run); TorchScript runs the same kernel
_GELU = {
    "gelu": Sourced(
        2.5,
        f"exact GELU (erf) on CPU, 32x32 fp32: 9.2 us per call, 2.5 x the 3.7 us per operator call: {_OVERHEAD_SOURCE}",
    )
}
RUNTIME_DEFAULTS: dict[str, RuntimeDefaults] = {
    "torch": RuntimeDefaults(
        False,
        False,
        Sourced(3.7e-6, f"eager PyTorch per operator call: {_OVERHEAD_SOURCE}"),
        Sourced(1.6e-6, f"eager PyTorch per forward call: {_OVERHEAD_SOURCE}"),
        _GELU,
    ),
    "torchscript": RuntimeDefaults(
        False,
        False,
        Sourced(1.3e-6, f"traced TorchScript per operator: {_OVERHEAD_SOURCE}"),
        Sourced(5.7e-6, f"traced TorchScript per forward call: {_OVERHEAD_SOURCE}"),
        _GELU,
    ),
    "onnxruntime": RuntimeDefaults(
        True,
        True,
        Sourced(4.0e-7, f"ONNX Runtime CPU, one thread, per node: {_OVERHEAD_SOURCE}"),
        Sourced(5.0e-6, f"ONNX Runtime InferenceSession.run: {_OVERHEAD_SOURCE}"),
    ),
}

ELEMENT_OP_PER_MAC = 0.2  # Horowitz ISSCC 2014 (45 nm): fp32 add 0.9 pJ vs fp32 multiply-add 4.6 pJ


@dataclass(frozen=True)
class Coefficients:
    """Every number the estimate uses for one profile, runtime and precision, each with its source.

    `values` holds the FITTED coefficients (J per MAC / element operation / byte / call / forward
    call, W) and the constants `seconds_per_call`, `peak_macs_per_s`, `memory_bandwidth_bytes_per_s`,
    `cache_bytes`. `folds_batch_norm` / `fuses_activation` say what the runtime does to the graph;
    `call_weights` how many ordinary operator calls one call of an operator (ATen name) costs (1 when
    absent).
    """

    profile: str
    runtime: str
    precision: str
    values: Mapping[str, Sourced]
    folds_batch_norm: bool
    fuses_activation: bool
    call_weights: Mapping[str, Sourced] = field(default_factory=dict)

    def value(self, name: str) -> float:
        """The value of coefficient or constant `name`."""
        return self.values[name].value

    def with_values(self, new: Mapping[str, float], source: str) -> Coefficients:
        """A copy with `new` values (all labelled `source`)."""
        values = dict(self.values)
        values.update({k: Sourced(float(v), source) for k, v in new.items()})
        return replace(self, values=values)

    def table(self) -> dict[str, dict[str, Any]]:
        """{name: {value, source}} for records and reports."""
        out: dict[str, dict[str, Any]] = {k: {"value": v.value, "source": v.source} for k, v in self.values.items()}
        out["folds_batch_norm"] = {"value": self.folds_batch_norm, "source": f"runtime {self.runtime}"}
        out["fuses_activation"] = {"value": self.fuses_activation, "source": f"runtime {self.runtime}"}
        return out


def runtime_of(profile: HardwareProfile) -> str:
    """The runtime the profile's deployed networks run in (the profile's `runtime`, default torch)."""
    return profile.runtime.name


def coefficients(profile: HardwareProfile, precision: str | None = None, runtime: str | None = None) -> Coefficients:
    """The estimate's coefficients for `profile` at `precision` in `runtime` (defaults: the profile's).

    A value in the profile's `estimate.runtimes.RUNTIME` section wins over the profile's general
    `estimate` value, which wins over RUNTIME_DEFAULTS. Raises ConfigError when the profile has no
    energy per MAC or peak throughput for `precision`, or the runtime is unknown.
    """
    precision = precision or profile.precision
    runtime = runtime or runtime_of(profile)
    if runtime not in RUNTIME_DEFAULTS:
        raise ConfigError(
            f"{profile.source}: no estimate for runtime {runtime!r} (valid: {', '.join(RUNTIME_DEFAULTS)})"
        )
    defaults = RUNTIME_DEFAULTS[runtime]
    for table, what in (
        (profile.energy_per_mac_j, "estimate.energy_per_mac_j"),
        (profile.peak_macs_per_s, "throughput.peak_macs_per_s"),
    ):
        if precision not in table:
            raise ConfigError(
                f"{profile.source}: field '{what}': no value for precision {precision!r} "
                f"(has: {', '.join(sorted(table))})"
            )
    active_w = max(profile.peak_power_w.value - profile.idle_power_w.value, 0.0)
    e_mac_fp32 = profile.energy_per_mac_j.get("fp32", profile.energy_per_mac_j[precision])
    values: dict[str, Sourced] = {
        "energy_per_mac_j": profile.energy_per_mac_j[precision],
        "energy_per_element_op_j": Sourced(
            ELEMENT_OP_PER_MAC * e_mac_fp32.value,
            f"{ELEMENT_OP_PER_MAC} x the fp32 energy per MAC (Horowitz ISSCC 2014: fp32 add 0.9 pJ, "
            f"multiply-add 4.6 pJ); fp32 MAC: {e_mac_fp32.source}",
        ),
        "energy_per_byte_cache_j": profile.energy_per_byte_cache_j,
        "energy_per_byte_dram_j": profile.energy_per_byte_dram_j,
        "energy_per_call_j": Sourced(
            defaults.seconds_per_call.value * active_w,
            f"seconds per call x (peak_w - idle_w) = {defaults.seconds_per_call.value:g} s x {active_w:g} W "
            f"(dispatch time at busy power; time: {defaults.seconds_per_call.source})",
        ),
        "energy_per_inference_j": Sourced(
            defaults.seconds_per_inference.value * active_w,
            f"seconds per forward call x (peak_w - idle_w) = {defaults.seconds_per_inference.value:g} s x "
            f"{active_w:g} W (time: {defaults.seconds_per_inference.source})",
        ),
        "static_power_w": profile.static_power_w,
        "seconds_per_call": defaults.seconds_per_call,
        "peak_macs_per_s": profile.peak_macs_per_s[precision],
        "memory_bandwidth_bytes_per_s": profile.memory_bandwidth_bytes_per_s,
        "cache_bytes": profile.cache_bytes,
    }
    if profile.energy_per_element_op_j is not None:
        values["energy_per_element_op_j"] = profile.energy_per_element_op_j
    folds, fuses = defaults.folds_batch_norm, defaults.fuses_activation
    override = profile.estimate_runtimes.get(runtime)
    if override is not None:
        for k, v in override.values.items():
            if isinstance(v, Mapping):  # per precision
                if precision in v:
                    values[k] = v[precision]
            else:
                values[k] = v
        folds = override.folds_batch_norm if override.folds_batch_norm is not None else folds
        fuses = override.fuses_activation if override.fuses_activation is not None else fuses
    return Coefficients(profile.name, runtime, precision, values, folds, fuses, defaults.call_weights)
