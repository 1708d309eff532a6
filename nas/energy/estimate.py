"""The analytical estimate: energy from counts and the profile's coefficients, never from a sensor.

energy per inference = MACs x energy per MAC (by precision)
                     + bytes moved x energy per byte (cache or DRAM, by working set)
                     + static power x roofline latency
The roofline latency is the larger of compute time (MACs / peak MAC/s) and DRAM time
(DRAM bytes / bandwidth); it is modelled, not timed, so the estimate is deterministic. Weights are
read once per batch (their cost is divided by the batch size); activations move per inference.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from nas.energy.base import BYTES_PER_ELEM, EnergyRecord, Meter, Reading, WindowWork, Workload
from nas.errors import ConfigError
from nas.hardware import HardwareProfile
from nas.models import ModelStats

METHOD = "estimated:analytical"


def inference_terms(stats: ModelStats, profile: HardwareProfile, precision: str, batch_size: int) -> dict[str, float]:
    """The estimate's terms for one inference at `batch_size`, in joules and seconds."""
    bpe = BYTES_PER_ELEM[precision]
    e_mac = _coef(profile.energy_per_mac_j, precision, profile)
    peak = _coef(profile.peak_macs_per_s, precision, profile)
    cache = profile.cache_bytes.value
    weight_bytes = stats.weights_read * bpe  # a mixture of experts reads only its active experts
    # each activation is written once and read once by the next layer
    act_bytes = 2 * (stats.activation_elems + stats.input_elems) * bpe
    weights_in_cache = weight_bytes <= cache
    acts_in_cache = weight_bytes + batch_size * act_bytes <= cache
    e_cache, e_dram = profile.energy_per_byte_cache_j.value, profile.energy_per_byte_dram_j.value
    weight_j = weight_bytes / batch_size * (e_cache if weights_in_cache else e_dram)
    act_j = act_bytes * (e_cache if acts_in_cache else e_dram)
    dram_bytes_batch = (0 if weights_in_cache else weight_bytes) + (0 if acts_in_cache else batch_size * act_bytes)
    compute_s = batch_size * stats.macs / peak
    memory_s = dram_bytes_batch / profile.memory_bandwidth_bytes_per_s.value
    latency_batch_s = max(compute_s, memory_s)
    compute_j = stats.macs * e_mac
    static_j = profile.static_power_w.value * latency_batch_s / batch_size
    return {
        "compute_j": compute_j,
        "weights_j": weight_j,
        "activations_j": act_j,
        "static_j": static_j,
        "total_j": compute_j + weight_j + act_j + static_j,
        "latency_batch_s": latency_batch_s,
        "bound": "compute" if compute_s >= memory_s else "memory",
    }


def _coef(table: Any, precision: str, profile: HardwareProfile) -> float:
    if precision not in table:
        raise ConfigError(
            f"{profile.source}: profile has no coefficient for precision {precision!r} "
            f"(has: {', '.join(sorted(table))})"
        )
    return table[precision].value


def coefficient_table(profile: HardwareProfile, precision: str) -> dict[str, dict[str, Any]]:
    """Every coefficient the estimate used, with its source."""
    used = {
        f"energy_per_mac_j[{precision}]": profile.energy_per_mac_j[precision],
        f"peak_macs_per_s[{precision}]": profile.peak_macs_per_s[precision],
        "energy_per_byte_cache_j": profile.energy_per_byte_cache_j,
        "energy_per_byte_dram_j": profile.energy_per_byte_dram_j,
        "cache_bytes": profile.cache_bytes,
        "memory_bandwidth_bytes_per_s": profile.memory_bandwidth_bytes_per_s,
        "static_power_w": profile.static_power_w,
    }
    return {k: {"value": v.value, "source": v.source} for k, v in used.items()}


class EstimateMeter(Meter):
    """Deterministic analytical estimate from the hardware profile; labelled `estimated:analytical`."""

    name = "estimate"
    runs_workload = False

    def __init__(self, profile: HardwareProfile) -> None:
        super().__init__(profile)
        self._t0: float | None = None

    def estimate(self, stats: ModelStats, precision: str, batch_size: int) -> EnergyRecord:
        """The analytical energy record of one inference batch of a model with `stats` at `precision`
        (energy per inference in J, latency per batch in s; method `estimated:analytical`).
        """
        terms = inference_terms(stats, self.profile, precision, batch_size)
        total = terms["total_j"]
        return EnergyRecord(
            method=METHOD,
            api="analytical model (MACs, bytes moved, static power x roofline latency)",
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
            latency_s=terms["latency_batch_s"],
            latency_method="estimated:roofline",
            coefficients={
                "profile": self.profile.name,
                "terms": {k: v for k, v in terms.items() if k != "latency_batch_s"},
                "coefficients": coefficient_table(self.profile, precision),
            },
        )

    def measure_inference(self, workload: Workload) -> EnergyRecord:
        """Estimate `workload` (its model's stats, precision and batch size); runs no inference."""
        return self.estimate(workload.stats, workload.precision, workload.batch_size)

    def begin_window(self) -> None:
        """Start a window (only its duration is timed; nothing is read)."""
        self._t0 = time.perf_counter()

    def end_window(self, work: WindowWork | None = None) -> Reading:
        """End the window and estimate the energy of `work`, the inferences run in it.

        Raises ValueError without `work`: an estimate needs to know what ran.
        """
        duration = time.perf_counter() - (self._t0 or time.perf_counter())
        self._t0 = None
        if work is None:
            raise ValueError("the estimate meter needs the window's work (WindowWork) to estimate it")
        return replace(self.estimate_work(work), duration_s=duration)

    def estimate_work(self, work: WindowWork) -> Reading:
        """Energy of `work` (e.g. a training run that was never run): arithmetic, DRAM traffic and
        static power over the roofline time."""
        p = self.profile
        e_mac = _coef(p.energy_per_mac_j, work.precision, p)
        peak = _coef(p.peak_macs_per_s, work.precision, p)
        modelled_s = max(work.macs / peak, work.bytes_moved / p.memory_bandwidth_bytes_per_s.value)
        energy = work.macs * e_mac + work.bytes_moved * p.energy_per_byte_dram_j.value + p.static_power_w.value * modelled_s
        return Reading(energy_j=energy, duration_s=0.0, method=METHOD)
