"""NVIDIA GPUs through NVML (the `nvidia-ml-py` package, module `pynvml`).

Volta and newer: the cumulative energy counter `nvmlDeviceGetTotalEnergyConsumption` (millijoules
since the driver loaded); window energy = counter(end) - counter(start). Older GPUs, or any GPU whose
counter reports NOT_SUPPORTED: `nvmlDeviceGetPowerUsage` (milliwatts) sampled by a background thread
and integrated with the trapezoid rule, each window edge taking a fresh sample.

The measured GPU is the profile's CUDA device index (`device.index`, as PyTorch numbers devices).
NVML numbers all GPUs of the machine, so the CUDA index is mapped to NVML by the GPU's UUID when
PyTorch can tell it, else through `CUDA_VISIBLE_DEVICES` (integer entries and `GPU-<uuid>` prefixes).

Importing this module never touches NVML: `pynvml` is imported on first use, and `probe` is cached.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

from nas.energy.base import Probe
from nas.energy.guards import Clock, Sleep, stuck
from nas.energy.protocol import Sensor
from nas.energy.sampling import POWER_SAMPLE_S, PowerIntegrator
from nas.energy.sensor_meter import SensorMeter
from nas.errors import MeterUnavailable
from nas.hardware import HardwareProfile


def _pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise MeterUnavailable("the NVML bindings are not installed (pip install nvidia-ml-py)") from None
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def translate(nv: ModuleType, e: Exception, doing: str) -> MeterUnavailable:
    """A vendor error as our error, with the reason and what to do."""
    if isinstance(e, nv.NVMLError_LibraryNotFound):
        why = "the NVML library (libnvidia-ml.so.1) is not installed: no NVIDIA driver on this machine"
    elif isinstance(e, nv.NVMLError_DriverNotLoaded):
        why = "the NVIDIA driver is not loaded (nvidia-smi should work first)"
    elif isinstance(e, nv.NVMLError_NoPermission):
        why = f"no permission for {doing} (NVML: Insufficient Permissions); run as a user allowed to read the GPU"
    elif isinstance(e, nv.NVMLError_NotSupported):
        why = f"{doing} is not supported on this GPU (NVML: Not Supported)"
    else:
        why = f"NVML error during {doing}: {e}"
    return MeterUnavailable(f"NVML: {why}")


# ----------------------------------------------------------------------------- device mapping
def visible_devices(value: str) -> list[str]:
    """The entries of a CUDA_VISIBLE_DEVICES value, as CUDA reads them: up to the first invalid one."""
    out = []
    for entry in value.split(","):
        entry = entry.strip()
        if re.fullmatch(r"\d+", entry) or entry.startswith(("GPU-", "MIG-")):
            out.append(entry)
        else:
            break  # CUDA ignores this entry and every one after it (e.g. "-1" hides all GPUs)
    return out


def _torch_uuid(cuda_index: int) -> str | None:
    """The UUID PyTorch reports for CUDA device `cuda_index`, or None when it cannot tell."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return str(torch.cuda.get_device_properties(cuda_index).uuid)
    except Exception:  # a CPU build, an old torch without .uuid, an index out of range
        return None


def _norm_uuid(uuid: str) -> str:
    return uuid.lower().removeprefix("gpu-")


def nvml_handle(nv: ModuleType, cuda_index: int) -> tuple[Any, int]:
    """(NVML handle, NVML index) of CUDA device `cuda_index`."""
    count = nv.nvmlDeviceGetCount()
    uuids = [_text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]

    def by_uuid(prefix: str, what: str) -> int:
        hits = [i for i, u in enumerate(uuids) if _norm_uuid(u).startswith(_norm_uuid(prefix))]
        if len(hits) != 1:
            raise MeterUnavailable(
                f"NVML: {what} {prefix!r} matches {len(hits)} of the {count} GPUs NVML sees "
                f"({', '.join(uuids) or 'none'})"
            )
        return hits[0]

    torch_uuid = _torch_uuid(cuda_index)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if torch_uuid:
        index = by_uuid(torch_uuid, f"PyTorch's cuda:{cuda_index} UUID")
    elif visible is None:
        index = cuda_index
    else:
        entries = visible_devices(visible)
        if cuda_index >= len(entries):
            raise MeterUnavailable(
                f"NVML: CUDA device {cuda_index} is not visible: CUDA_VISIBLE_DEVICES={visible!r} "
                f"makes {len(entries)} GPU(s) visible; set device.index in the profile or CUDA_VISIBLE_DEVICES"
            )
        entry = entries[cuda_index]
        if entry.startswith("MIG-"):
            raise MeterUnavailable(
                f"NVML: CUDA device {cuda_index} is the MIG instance {entry}; NVML has no energy counter "
                f"per MIG instance, only for the whole GPU; measure on a whole GPU"
            )
        index = by_uuid(entry, "CUDA_VISIBLE_DEVICES entry") if entry.startswith("GPU-") else int(entry)
    if not 0 <= index < count:
        raise MeterUnavailable(f"NVML: GPU index {index} does not exist (NVML sees {count} GPU(s))")
    return nv.nvmlDeviceGetHandleByIndex(index), index


# ----------------------------------------------------------------------------- the sensor
@dataclass(frozen=True)
class GpuInfo:
    """What the probe found: which GPU, and which energy API it supports."""

    nvml_index: int
    name: str
    uuid: str
    driver_version: str
    mode: str  # "counter" | "power"


def inspect_gpu(nv: ModuleType, profile: HardwareProfile) -> GpuInfo:
    """Find the profile's GPU and its energy API (NVML must be initialised)."""
    doing = "finding the GPU"
    try:
        handle, index = nvml_handle(nv, profile.device_index)
        doing = "reading the GPU name"
        name = _text(nv.nvmlDeviceGetName(handle))
        uuid = _text(nv.nvmlDeviceGetUUID(handle))
        driver = _text(nv.nvmlSystemGetDriverVersion())
    except nv.NVMLError as e:
        raise translate(nv, e, doing) from e
    if profile.device_match and not re.search(profile.device_match, name):
        raise MeterUnavailable(
            f"NVML: CUDA device {profile.device_index} is {name!r}, but profile {profile.name!r} describes "
            f"a device matching {profile.device_match!r}; use the profile of this GPU (nas profiles list) "
            f"or set device.index"
        )
    return GpuInfo(index, name, uuid, driver, energy_mode(nv, handle, name))


def energy_mode(nv: ModuleType, handle: Any, name: str) -> str:
    """ "counter" on Volta and newer when the counter answers, else "power" when power answers."""
    try:
        arch = nv.nvmlDeviceGetArchitecture(handle)
    except nv.NVMLError:
        arch = None  # an old driver: let the counter call decide
    if arch is None or arch >= nv.NVML_DEVICE_ARCH_VOLTA:
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            return "counter"
        except nv.NVMLError_NotSupported:
            pass
        except nv.NVMLError as e:
            raise translate(nv, e, "reading the energy counter") from e
    try:
        nv.nvmlDeviceGetPowerUsage(handle)
        return "power"
    except nv.NVMLError_NotSupported:
        raise MeterUnavailable(
            f"NVML: {name} supports neither the energy counter nor power readings (NVML: Not Supported)"
        ) from None
    except nv.NVMLError as e:
        raise translate(nv, e, "reading the power draw") from e


class NvmlSensor(Sensor):
    """One GPU's energy through NVML (counter or integrated power)."""

    scope = "device (the whole GPU: every process on it counts)"
    nominal_update_period_s = 0.1  # counter / power refresh: 20-100 ms (MEASURING.md)

    def __init__(self, nv: ModuleType, info: GpuInfo, clock: Clock, sample_s: float = POWER_SAMPLE_S) -> None:
        self._nv = nv
        self.info = info
        self.device_name = info.name
        self.driver_version = info.driver_version
        self.lock_key = f"nvml-{info.uuid}"
        self._handle = nv.nvmlDeviceGetHandleByIndex(info.nvml_index)
        self._integrator: PowerIntegrator | None = None
        if info.mode == "counter":
            self.method = "measured:nvml-counter"
            self.api = "nvmlDeviceGetTotalEnergyConsumption (mJ, cumulative)"
            self.counts_updates = True
        else:
            self.method = "measured:nvml-power"
            self.api = f"nvmlDeviceGetPowerUsage (mW) sampled every {sample_s * 1000:g} ms, trapezoid-integrated"
            self.counts_updates = False
            self._integrator = PowerIntegrator(self._power_sample, clock, sample_s, name="nas-nvml-power")

    def _power_sample(self) -> tuple[float, int]:
        mw = self._nv.nvmlDeviceGetPowerUsage(self._handle)
        return mw / 1000.0, mw

    def raw(self) -> int:
        """The sensor's raw reading now: the counter (mJ) or the power (mW)."""
        if self._integrator is not None:
            return self._nv.nvmlDeviceGetPowerUsage(self._handle)
        return self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def change_count(self) -> int | None:
        """Power mode: how often the raw mW reading changed; counter mode: None (the counter shows it)."""
        # integrated power moves with time even when the power reading is frozen: judge the raw mW
        return self._integrator.changes if self._integrator is not None else None

    def read_j(self) -> float:
        """The device's energy counter in J (integrated power on GPUs without the counter).

        Raises MeterUnavailable (translated from NVMLError) when the read fails.
        """
        try:
            if self._integrator is not None:
                return self._integrator.energy_j()
            return self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0
        except self._nv.NVMLError as e:
            raise translate(self._nv, e, f"reading {self.device_name}") from e

    def close(self) -> None:
        """Stop the integrator, if any, and shut NVML down."""
        if self._integrator is not None:
            self._integrator.close()
            self._integrator = None
        if self._nv is not None:
            try:
                self._nv.nvmlShutdown()
            except self._nv.NVMLError:
                pass
            self._nv = None  # idempotent


class NvmlMeter(SensorMeter):
    """Energy of one NVIDIA GPU: `measured:nvml-counter`, or `measured:nvml-power` before Volta."""

    name = "nvml"
    torch_device: ClassVar[str] = "cuda"
    _probes: ClassVar[dict[tuple[Any, ...], Probe]] = {}

    def __init__(
        self,
        profile: HardwareProfile,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        sample_s: float = POWER_SAMPLE_S,
    ) -> None:
        super().__init__(profile, clock=clock, sleep=sleep)
        self.torch_device = f"cuda:{profile.device_index}"  # type: ignore[misc]  # this meter's GPU
        self.sample_s = sample_s

    @classmethod
    def _probe_key(cls, profile: HardwareProfile) -> tuple[Any, ...]:
        return (
            profile.device_index,
            profile.device_match,
            os.environ.get("CUDA_VISIBLE_DEVICES"),
            id(sys.modules.get("pynvml")),
        )

    @classmethod
    def probe(cls, profile: HardwareProfile) -> Probe:
        """Whether NVML can measure the profile's GPU here (cached per GPU and environment)."""
        key = cls._probe_key(profile)
        if key not in cls._probes:
            cls._probes[key] = cls._probe(profile)
        return cls._probes[key]

    @classmethod
    def clear_probe_cache(cls) -> None:
        """Forget cached probe results (tests, or after a driver change)."""
        cls._probes.clear()

    @classmethod
    def _probe(cls, profile: HardwareProfile) -> Probe:
        try:
            nv = _pynvml()
            _init(nv)
            try:
                info = inspect_gpu(nv, profile)
                check_moves(nv, info, cls.watch)
            finally:
                nv.nvmlShutdown()
        except MeterUnavailable as e:
            return Probe(False, str(e))
        import torch

        if not torch.cuda.is_available():
            return Probe(
                False,
                f"NVML sees the GPU but PyTorch {torch.__version__} has no CUDA here; "
                f"install a CUDA build of torch to run models on it",
            )
        return Probe(True)

    def open_sensor(self) -> Sensor:
        """Initialise NVML and open the profile's GPU; raises MeterUnavailable if it cannot."""
        nv = _pynvml()
        _init(nv)
        try:
            info = inspect_gpu(nv, self.profile)
            return NvmlSensor(nv, info, self.clock, self.sample_s)
        except BaseException:
            nv.nvmlShutdown()
            raise


def check_moves(
    nv: ModuleType, info: GpuInfo, watch: Callable[[Callable[[], object]], tuple[bool, int, float]]
) -> None:
    """MeterUnavailable unless the GPU's counter (or power reading) changes while `watch` polls it."""
    handle = nv.nvmlDeviceGetHandleByIndex(info.nvml_index)
    name = "nvmlDeviceGetTotalEnergyConsumption" if info.mode == "counter" else "nvmlDeviceGetPowerUsage"
    call = getattr(nv, name)
    try:
        moved, reads, watched = watch(lambda: call(handle))
    except nv.NVMLError as e:
        raise translate(nv, e, f"reading {info.name}") from e
    if not moved:
        method = "measured:nvml-counter" if info.mode == "counter" else "measured:nvml-power"
        raise stuck(method, info.name, name, "the probe", watched, reads)


def _init(nv: ModuleType) -> None:
    try:
        nv.nvmlInit()
    except nv.NVMLError as e:
        raise translate(nv, e, "starting NVML (nvmlInit)") from e


__all__ = ["NvmlMeter", "NvmlSensor", "PowerIntegrator", "nvml_handle", "visible_devices"]
