"""Energy meters: one backend per module, this factory is the only place that lists them."""

from __future__ import annotations

import importlib

from nas.energy.base import EnergyRecord, Meter, Probe, Reading, WindowWork, Workload
from nas.errors import ConfigError, MeterUnavailable
from nas.hardware import HardwareProfile
from nas.plugins import METERS_GROUP, load_group
from nas.registry import lookup

__all__ = [
    "EnergyRecord",
    "Meter",
    "Probe",
    "Reading",
    "WindowWork",
    "Workload",
    "create_meter",
    "meter_class",
    "meter_names",
]

_BACKENDS = {
    "estimate": "nas.energy.estimate:EstimateMeter",
    "jetson": "nas.energy.jetson:JetsonMeter",
    "nvml": "nas.energy.nvml:NvmlMeter",
    "pi5": "nas.energy.pi5:Pi5Meter",
    "rapl": "nas.energy.rapl:RaplMeter",
}


def _register_entry_point(name: str, obj: object) -> None:
    """A meter entry point names its Meter subclass ("pkg.module:MyMeter")."""
    if not (isinstance(obj, type) and issubclass(obj, Meter)):
        raise ConfigError(f"entry point energy_nas.meters:{name} is {obj!r}, not a nas.energy.Meter subclass")
    _BACKENDS.setdefault(name, f"{obj.__module__}:{obj.__qualname__}")


def _load_plugins() -> None:
    load_group(METERS_GROUP, _register_entry_point)


def meter_names() -> tuple[str, ...]:
    """Every meter backend, those of installed packages (`energy_nas.meters`) included."""
    _load_plugins()
    return tuple(sorted(_BACKENDS))


def meter_class(name: str) -> type[Meter]:
    """The backend class for `name`; importing it never touches hardware."""
    if name not in _BACKENDS:
        _load_plugins()
    module, attr = lookup(_BACKENDS, "meter", name).split(":")
    return getattr(importlib.import_module(module), attr)


def create_meter(profile: HardwareProfile, allow_estimate: bool = False) -> Meter:
    """The meter the profile names, or its estimate when the sensor is absent and that is allowed.

    Without `allow_estimate`, an unusable sensor raises MeterUnavailable saying which sensor, why
    and what to do.
    """
    cls = meter_class(profile.meter)
    probe = cls.probe(profile)
    if probe.usable:
        return cls(profile)
    if allow_estimate:
        return meter_class("estimate")(profile)
    raise MeterUnavailable(
        f"profile {profile.name!r} measures with {profile.meter.upper()}, which is unavailable here: "
        f"{probe.reason}. Run on the device it describes, or pass --allow-estimate to use the "
        f"profile's analytical estimate (labelled 'estimated')."
    )
