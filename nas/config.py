"""YAML at the edge: search spaces and hardware profiles are loaded and validated here.

Hardware profiles are validated in this module, search spaces in `nas.spaces` (re-exported here);
they return the frozen dataclasses of `nas.hardware` and `nas.searchspace` (re-exported here). Errors name the file, the field and what was expected; past the
loaders no code sees a raw dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from nas.energy import meter_names
from nas.errors import ConfigError
from nas.hardware import (
    EXECUTION_PROVIDERS,
    PRECISIONS,
    RUNTIME_COEFFICIENTS,
    RUNTIME_NAMES,
    HardwareProfile,
    Protocol,
    Runtime,
    RuntimeEstimate,
    SensorSettings,
    Sourced,
    runtime_precisions,
)
from nas.searchspace import Param, Repeated, SearchSpace
from nas.spaces import SPACES_DIR, list_spaces, load_space, parse_space, resolve_space
from nas.yamldoc import Doc, read_yaml

# The shipped spaces and profiles are package data (nas/resources/), found through the import system:
# the same folders from a checkout, an editable install or an installed wheel.
RESOURCES_DIR = Path(str(files("nas").joinpath("resources")))
PROFILES_DIR = RESOURCES_DIR / "hardware_profiles"


def resolve_named(name_or_path: str | Path, directory: Path, kind: str) -> Path:
    """A name from `directory` (`mlp` -> nas/resources/search_spaces/mlp.yaml) or a path to a YAML file."""
    text = str(name_or_path)
    candidate = Path(text)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists() or "/" in text:
        return candidate
    path = directory / f"{text}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in directory.glob("*.yaml"))) or "none"
        raise ConfigError(f"unknown {kind} {text!r} (valid: {names}; or give a path to a .yaml file)")
    return path


def _sourced(doc: Doc, key: str, positive: bool = True) -> Sourced:
    sub = doc.sub(key)
    sub.check_keys({"value", "source"})
    return Sourced(sub.number("value", positive=positive), sub.str("source"))


def _per_precision(doc: Doc, key: str, precisions: tuple[str, ...]) -> dict[str, Sourced]:
    sub = doc.sub(key)
    sub.check_keys(set(PRECISIONS))
    out = {str(k): _sourced(sub, str(k)) for k in sub.data}
    for p in precisions:
        if p not in out:
            raise sub.error(f"missing precision {p!r} (listed in device.precisions)", key=p)
    return out


def _runtime(doc: Doc, device_kind: str) -> Runtime:
    """The profile's `runtime`: a name (`runtime: onnxruntime`) or a mapping
    (`runtime: {name: onnxruntime, execution_provider: CPUExecutionProvider, threads: 2}`)."""
    if not doc.has("runtime"):
        return Runtime()
    raw = doc.raw("runtime")
    valid = f"expected one of {', '.join(RUNTIME_NAMES)}"
    if isinstance(raw, str):
        name, provider, threads, where = raw, None, None, doc
        if name not in RUNTIME_NAMES:
            raise doc.error(valid, raw, "runtime")
    elif not isinstance(raw, Mapping):
        raise doc.error(f"{valid}, or a mapping with name, execution_provider, threads", raw, "runtime")
    else:
        where = doc.sub("runtime")
        where.check_keys({"name", "execution_provider", "threads"})
        name = where.str("name", "torch")
        if name not in RUNTIME_NAMES:
            raise where.error(valid, name, "name")
        provider = where.str("execution_provider", None) if where.has("execution_provider") else None
        threads = where.int("threads", low=1) if where.has("threads") else None
    wanted = EXECUTION_PROVIDERS[device_kind]
    if name != "onnxruntime":
        if provider is not None:
            raise where.error(
                f"only the onnxruntime runtime has an execution provider (runtime is {name!r})",
                provider,
                "execution_provider",
            )
        return Runtime(name, None, threads)
    if provider is None:
        return Runtime(name, wanted, threads)
    if provider not in EXECUTION_PROVIDERS.values():
        raise where.error(f"expected one of {', '.join(EXECUTION_PROVIDERS.values())}", provider, "execution_provider")
    if provider != wanted:
        raise where.error(
            f"device.kind is {device_kind!r}, whose ONNX Runtime provider is {wanted}", provider, "execution_provider"
        )
    return Runtime(name, provider, threads)


def _runtime_estimates(est: Doc) -> dict[str, RuntimeEstimate]:
    """`estimate.runtimes`: per runtime, coefficients overriding the general ones (see RuntimeEstimate)."""
    doc, out = est.sub("runtimes"), {}
    doc.check_keys(set(RUNTIME_NAMES))
    for name in doc.data:
        sub = doc.sub(str(name))
        sub.check_keys({*RUNTIME_COEFFICIENTS, "folds_batch_norm", "fuses_activation", "calibration"})
        values: dict[str, Sourced | Mapping[str, Sourced]] = {
            k: _sourced(sub, k, positive=False) for k in RUNTIME_COEFFICIENTS if sub.has(k) and k != "energy_per_mac_j"
        }
        if sub.has("energy_per_mac_j"):
            per = sub.sub("energy_per_mac_j")
            per.check_keys(set(PRECISIONS))
            values["energy_per_mac_j"] = {str(p): _sourced(per, str(p), positive=False) for p in per.data}
        flags = [sub.raw(flag, None) for flag in ("folds_batch_norm", "fuses_activation")]
        for flag, value in zip(("folds_batch_norm", "fuses_activation"), flags, strict=True):
            if value is not None and not isinstance(value, bool):
                raise sub.error("expected true or false", value, flag)
        calibration = sub.raw("calibration", None)
        if calibration is not None and not isinstance(calibration, Mapping):
            raise sub.error("expected a mapping (written by nas profiles calibrate)", calibration, "calibration")
        out[str(name)] = RuntimeEstimate(values, *flags, dict(calibration) if calibration is not None else None)
    return out


def _bounded_int(doc: Doc, key: str, high: int) -> int:
    value = doc.int(key, low=1)
    if value > high:
        raise doc.error(f"expected an integer in [1, {high}]", value, key)
    return value


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load and validate a hardware profile by name (`nas/resources/hardware_profiles/NAME.yaml`) or path."""
    path = resolve_named(name_or_path, PROFILES_DIR, "hardware profile")
    return parse_profile(read_yaml(path), str(path), path.stem)


def parse_profile(data: Any, file: str, default_name: str = "profile") -> HardwareProfile:
    """Validate a hardware-profile document (as read from YAML) that came from `file`."""
    doc = Doc(data, file)
    doc.check_keys(
        {
            "name",
            "description",
            "meter",
            "device",
            "inference",
            "power",
            "throughput",
            "memory",
            "estimate",
            "carbon",
            "measurement",
            "runtime",
            "sensor",
        }
    )
    meter = doc.str("meter")
    if meter not in meter_names():
        raise doc.error(f"unknown meter (valid: {', '.join(meter_names())})", meter, "meter")

    dev = doc.sub("device")
    dev.check_keys({"kind", "match", "index", "precisions", "model"})
    dev.text("model")  # free text, not used by the meters
    kind = dev.str("kind")
    if kind not in ("cpu", "gpu"):
        raise dev.error("expected 'cpu' or 'gpu'", kind, "kind")
    match = dev.raw("match", None)
    if match is not None:
        if not isinstance(match, str):
            raise dev.error("expected a regular expression string", match, "match")
        try:
            re.compile(match)
        except (re.error, OverflowError, RecursionError) as e:  # `a{99999999999}`, `((((...`
            raise dev.error(f"invalid regular expression ({e.__class__.__name__}: {e})", match, "match") from None
    precisions = dev.raw("precisions", ["fp32"])
    if not isinstance(precisions, list) or not precisions or any(p not in PRECISIONS for p in precisions):
        raise dev.error(f"expected a list of precisions from {list(PRECISIONS)}", precisions, "precisions")

    inf = doc.sub("inference")
    inf.check_keys({"batch_size", "precision"})
    precision = inf.str("precision", "fp32")
    if precision not in precisions:
        raise inf.error(f"expected one of device.precisions {precisions}", precision, "precision")

    power = doc.sub("power")
    power.check_keys({"idle_w", "peak_w"})
    mem = doc.sub("memory")
    mem.check_keys({"bandwidth_bytes_per_s", "cache_bytes"})
    est = doc.sub("estimate")
    est.check_keys(
        {
            "energy_per_mac_j",
            "energy_per_byte_dram_j",
            "energy_per_byte_cache_j",
            "static_power_w",
            "energy_per_element_op_j",
            "runtimes",
        }
    )
    throughput = doc.sub("throughput")
    throughput.check_keys({"peak_macs_per_s"})
    carbon = doc.sub("carbon")
    carbon.check_keys({"grid_intensity_g_per_kwh"})

    proto = Protocol()
    if doc.has("measurement"):
        m = doc.sub("measurement")
        m.check_keys(
            {
                "warmup_batches",
                "min_window_s",
                "min_inferences",
                "repeats",
                "idle_window_s",
                "subtract_idle",
                "min_net_fraction",
                "idle_refresh_s",
            }
        )
        subtract = m.raw("subtract_idle", False)
        if not isinstance(subtract, bool):
            raise m.error("expected true or false", subtract, "subtract_idle")
        for key in ("min_window_s", "idle_window_s"):  # a window of hours would stall every trial
            if m.has(key) and m.number(key, positive=True) > 600:
                raise m.error("expected seconds in (0, 600]", m.raw(key), key)
        for key, high in (("warmup_batches", 10_000), ("min_inferences", 10_000_000), ("repeats", 1000)):
            if m.has(key) and m.int(key, low=0) > high:
                raise m.error(f"expected an integer of at most {high}", m.raw(key), key)
        proto = Protocol(
            warmup_batches=m.int("warmup_batches", proto.warmup_batches, low=0),
            min_window_s=m.number("min_window_s", proto.min_window_s, positive=True),
            min_inferences=m.int("min_inferences", proto.min_inferences, low=1),
            repeats=m.int("repeats", proto.repeats, low=1),
            idle_window_s=m.number("idle_window_s", proto.idle_window_s, positive=True),
            subtract_idle=subtract,
            min_net_fraction=m.number("min_net_fraction", proto.min_net_fraction),
            idle_refresh_s=m.number("idle_refresh_s", proto.idle_refresh_s, positive=True),
        )
        if proto.min_net_fraction >= 1:
            raise m.error("expected a fraction of gross energy below 1", proto.min_net_fraction, "min_net_fraction")
    sensor = SensorSettings()
    if doc.has("sensor"):
        sd = doc.sub("sensor")
        sd.check_keys({"rails", "sample_interval_s"})
        rails = sd.raw("rails", [])
        if not isinstance(rails, list) or any(not isinstance(r, str) or not r.strip() for r in rails):
            raise sd.error("expected a list of rail names", rails, "rails")
        sensor = SensorSettings(
            rails=tuple(rails),
            sample_interval_s=sd.number("sample_interval_s", sensor.sample_interval_s, positive=True),
        )

    prec = tuple(precisions)
    runtime = _runtime(doc, kind)
    if precision not in runtime_precisions(runtime.name):
        raise inf.error(
            f"does not run in runtime {runtime.name!r} (it runs {', '.join(runtime_precisions(runtime.name))})",
            precision,
            "precision",
        )
    return HardwareProfile(
        name=doc.str("name", default_name),
        description=doc.text("description"),
        meter=meter,
        device_kind=kind,
        device_match=match,
        device_index=dev.int("index", 0, low=0),
        batch_size=_bounded_int(inf, "batch_size", 65536),  # a batch of 2**31 fails every trial
        precision=precision,
        precisions=prec,
        idle_power_w=_sourced(power, "idle_w", positive=False),
        peak_power_w=_sourced(power, "peak_w"),
        peak_macs_per_s=_per_precision(throughput, "peak_macs_per_s", prec),
        memory_bandwidth_bytes_per_s=_sourced(mem, "bandwidth_bytes_per_s"),
        cache_bytes=_sourced(mem, "cache_bytes"),
        energy_per_mac_j=_per_precision(est, "energy_per_mac_j", prec),
        energy_per_byte_dram_j=_sourced(est, "energy_per_byte_dram_j"),
        energy_per_byte_cache_j=_sourced(est, "energy_per_byte_cache_j"),
        static_power_w=_sourced(est, "static_power_w", positive=False),
        grid_intensity_g_per_kwh=_sourced(carbon, "grid_intensity_g_per_kwh", positive=False),
        protocol=proto,
        source=file,
        runtime=runtime,
        energy_per_element_op_j=_sourced(est, "energy_per_element_op_j")
        if est.has("energy_per_element_op_j")
        else None,
        estimate_runtimes=_runtime_estimates(est) if est.has("runtimes") else {},
        sensor=sensor,
    )


def list_profiles() -> list[Path]:
    """The shipped hardware profile files (*.yaml), sorted by name."""
    return sorted(PROFILES_DIR.glob("*.yaml"))


__all__ = [
    "EXECUTION_PROVIDERS",
    "PRECISIONS",
    "PROFILES_DIR",
    "RESOURCES_DIR",
    "RUNTIME_NAMES",
    "SPACES_DIR",
    "HardwareProfile",
    "Param",
    "Protocol",
    "Repeated",
    "Runtime",
    "SearchSpace",
    "SensorSettings",
    "Sourced",
    "runtime_precisions",
    "list_profiles",
    "list_spaces",
    "load_profile",
    "load_space",
    "parse_profile",
    "parse_space",
    "read_yaml",
    "resolve_named",
    "resolve_space",
]
