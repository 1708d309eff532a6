"""YAML at the edge: search spaces and hardware profiles are loaded and validated here.

All validation happens in this module; it returns the frozen dataclasses of `nas.searchspace` and
`nas.hardware` (re-exported here). Errors name the file, the field and what was expected; past the
loaders no code sees a raw dict.
"""

from __future__ import annotations

import math
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
    Sourced,
    runtime_precisions,
)
from nas.searchspace import Param, Repeated, SearchSpace
from nas.yamldoc import MAX_INT, Doc, field_name, read_yaml, show_value

# The shipped spaces and profiles are package data (nas/resources/), found through the import system:
# the same folders from a checkout, an editable install or an installed wheel.
RESOURCES_DIR = Path(str(files("nas").joinpath("resources")))
SPACES_DIR = RESOURCES_DIR / "search_spaces"
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


_PARAM_KEYS = {"choices", "type", "low", "high", "step", "log", "when"}


def _param(doc: Doc, name: str, registry_choices: tuple[str, ...] | None) -> Param:
    doc.check_keys(_PARAM_KEYS)
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    if doc.has("when"):
        w = doc.sub("when")
        if not w.data:
            raise w.error("expected at least one condition")
        conds = []
        for key, allowed in w.data.items():
            values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
            if not values:
                raise w.error("expected a value or a non-empty list of values", allowed, str(key))
            conds.append((str(key), values))
        when = tuple(conds)
    if doc.has("choices"):
        if doc.has("low") or doc.has("high"):
            raise doc.error("give either 'choices' or 'low'/'high', not both")
        choices = doc.raw("choices")
        if not isinstance(choices, list) or not choices:
            raise doc.error("expected a non-empty list", choices, "choices")
        for c in choices:
            if not isinstance(c, (str, int, float, bool)) or isinstance(c, float) and not math.isfinite(c):
                raise doc.error("expected scalar values (string, number, bool)", c, "choices")
            if isinstance(c, int) and not isinstance(c, bool) and abs(c) > MAX_INT:
                raise doc.error(f"expected integers of at most {MAX_INT}", c, "choices")
        if len(set(map(repr, choices))) != len(choices):
            raise doc.error("values must be distinct", choices, "choices")
        if registry_choices is not None:
            for c in choices:
                if c not in registry_choices:
                    raise doc.error(
                        f"unknown {name} {show_value(c)} (valid: {', '.join(registry_choices)})", key="choices"
                    )
        return Param(name, "choice", choices=tuple(choices), when=when)
    kind = doc.raw("type", None)
    low, high = doc.raw("low"), doc.raw("high")
    if kind is None:
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if kind not in ("int", "float"):
        raise doc.error("expected 'int' or 'float'", kind, "type")
    if kind == "int":
        lo, hi = doc.int("low"), doc.int("high")
        step = doc.int("step", 1, low=1)
    else:
        lo, hi = doc.real("low"), doc.real("high")
        step = doc.number("step", None, positive=True) if doc.has("step") else None
    if lo > hi:
        raise doc.error(f"low ({lo}) is above high ({hi})", key="low")
    log = doc.raw("log", False)
    if not isinstance(log, bool):
        raise doc.error("expected true or false", log, "log")
    if log and (lo <= 0 or step not in (None, 1)):
        raise doc.error("a log range needs low > 0 and no step", key="log")
    return Param(name, kind, low=lo, high=hi, step=step, log=log, when=when)


def _check_conditions(params: tuple[Param, ...], known: dict[str, Param], doc: Doc) -> None:
    for p in params:
        for key, values in p.when:
            target = known.get(key)
            if target is None or target is p:
                raise doc.error(
                    f"'when' refers to {show_value(key)}, which is not a parameter declared before it",
                    key=f"{p.name}.when",
                )
            if target.kind == "choice":
                bad = [v for v in values if v not in target.choices]
                if bad:
                    raise doc.error(
                        f"'when' value {show_value(bad[0])} is not one of {field_name(key)}'s choices {show_value(list(target.choices))}",
                        key=f"{p.name}.when",
                    )


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load and validate a search space by name (`nas/resources/search_spaces/NAME.yaml`) or path."""
    path = resolve_named(name_or_path, SPACES_DIR, "search space")
    return parse_space(read_yaml(path), str(path), path.stem)


def parse_space(data: Any, file: str, default_name: str = "space") -> SearchSpace:
    """Validate a search-space document (as read from YAML) that came from `file`."""
    # imported here, not at the top: the family registry fills as the families' modules import
    # torch (seconds), which reading a hardware profile (`nas report`, `nas plot`) must not pay
    from nas.models import FAMILIES, valid_choices

    doc = Doc(data, file)
    family = doc.str("family")
    if family not in FAMILIES:
        raise doc.error(f"unknown family (valid: {', '.join(sorted(FAMILIES))})", family, "family")
    schema = FAMILIES[family]
    doc.check_keys({"name", "family", "description", "params", schema.unit})
    name = doc.str("name", default_name)
    description = doc.raw("description", "")
    if not isinstance(description, str):
        raise doc.error("expected a string", description, "description")

    pdoc = doc.sub("params")
    pdoc.check_keys(schema.required | schema.optional)
    for req in sorted(schema.required):
        pdoc.raw(req)
    params = tuple(_param(pdoc.sub(k), str(k), valid_choices(str(k))) for k in pdoc.data)

    udoc = doc.sub(schema.unit)
    udoc.check_keys({"count", "params"})
    count = _param(udoc.sub("count"), "count", None)
    if count.kind != "int" or count.low < 1 or count.when:
        raise udoc.error("expected an integer range with low >= 1 (and no 'when')", key="count")
    updoc = udoc.sub("params")
    updoc.check_keys(schema.unit_required | schema.unit_optional)
    for req in sorted(schema.unit_required):
        updoc.raw(req)
    unit_params = tuple(_param(updoc.sub(k), str(k), valid_choices(str(k))) for k in updoc.data)
    for p in unit_params:
        if p.name in ("channels", "width", "kernel", "repeats", "stride", "expansion"):
            values = p.choices if p.kind == "choice" else (p.low, p.high)
            if p.kind == "float" or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values
            ):
                raise updoc.error("expected positive integers", list(values), f"{p.name}")
    for p in params:
        if p.name in ("dropout", "prune_ratio"):
            values = p.choices if p.kind == "choice" else (p.low, p.high)
            if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < 1 for v in values):
                raise pdoc.error("expected values in [0, 1)", list(values), p.name)
        if p.name == "width_multiplier":
            values = p.choices if p.kind == "choice" else (p.low, p.high)
            if any(not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 for v in values):
                raise pdoc.error("expected values > 0", list(values), p.name)

    for i, p in enumerate(params):
        _check_conditions((p,), {q.name: q for q in params[:i]}, pdoc)
    for i, p in enumerate(unit_params):
        _check_conditions((p,), {q.name: q for q in params + unit_params[:i]}, updoc)
    return SearchSpace(
        name=name,
        family=family,
        description=description,
        params=params,
        repeated=Repeated(schema.unit, count, unit_params),
        source=file,
    )


def list_spaces() -> list[Path]:
    """The shipped search space files (*.yaml), sorted by name."""
    return sorted(SPACES_DIR.glob("*.yaml"))


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
            raise where.error(f"only the onnxruntime runtime has an execution provider (runtime is {name!r})",
                              provider, "execution_provider")
        return Runtime(name, None, threads)
    if provider is None:
        return Runtime(name, wanted, threads)
    if provider not in EXECUTION_PROVIDERS.values():
        raise where.error(f"expected one of {', '.join(EXECUTION_PROVIDERS.values())}", provider, "execution_provider")
    if provider != wanted:
        raise where.error(f"device.kind is {device_kind!r}, whose ONNX Runtime provider is {wanted}", provider,
                          "execution_provider")
    return Runtime(name, provider, threads)


def _runtime_estimates(est: Doc) -> dict[str, RuntimeEstimate]:
    """`estimate.runtimes`: per runtime, coefficients overriding the general ones (see RuntimeEstimate)."""
    doc, out = est.sub("runtimes"), {}
    doc.check_keys(set(RUNTIME_NAMES))
    for name in doc.data:
        sub = doc.sub(str(name))
        sub.check_keys({*RUNTIME_COEFFICIENTS, "folds_batch_norm", "fuses_activation", "calibration"})
        values: dict[str, Sourced | Mapping[str, Sourced]] = {
            k: _sourced(sub, k, positive=False) for k in RUNTIME_COEFFICIENTS if sub.has(k) and k != "energy_per_mac_j"}
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


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load and validate a hardware profile by name (`nas/resources/hardware_profiles/NAME.yaml`) or path."""
    path = resolve_named(name_or_path, PROFILES_DIR, "hardware profile")
    return parse_profile(read_yaml(path), str(path), path.stem)


def parse_profile(data: Any, file: str, default_name: str = "profile") -> HardwareProfile:
    """Validate a hardware-profile document (as read from YAML) that came from `file`."""
    doc = Doc(data, file)
    doc.check_keys(
        {"name", "description", "meter", "device", "inference", "power", "throughput", "memory",
         "estimate", "carbon", "measurement", "runtime"}
    )
    meter = doc.str("meter")
    if meter not in meter_names():
        raise doc.error(f"unknown meter (valid: {', '.join(meter_names())})", meter, "meter")

    dev = doc.sub("device")
    dev.check_keys({"kind", "match", "index", "precisions", "model"})
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
    est.check_keys({"energy_per_mac_j", "energy_per_byte_dram_j", "energy_per_byte_cache_j", "static_power_w",
                    "energy_per_element_op_j", "runtimes"})
    throughput = doc.sub("throughput")
    throughput.check_keys({"peak_macs_per_s"})
    carbon = doc.sub("carbon")
    carbon.check_keys({"grid_intensity_g_per_kwh"})

    proto = Protocol()
    if doc.has("measurement"):
        m = doc.sub("measurement")
        m.check_keys({"warmup_batches", "min_window_s", "min_inferences", "repeats", "idle_window_s", "subtract_idle"})
        subtract = m.raw("subtract_idle", False)
        if not isinstance(subtract, bool):
            raise m.error("expected true or false", subtract, "subtract_idle")
        proto = Protocol(
            warmup_batches=m.int("warmup_batches", proto.warmup_batches, low=0),
            min_window_s=m.number("min_window_s", proto.min_window_s, positive=True),
            min_inferences=m.int("min_inferences", proto.min_inferences, low=1),
            repeats=m.int("repeats", proto.repeats, low=1),
            idle_window_s=m.number("idle_window_s", proto.idle_window_s, positive=True),
            subtract_idle=subtract,
        )

    prec = tuple(precisions)
    runtime = _runtime(doc, kind)
    if precision not in runtime_precisions(runtime.name):
        raise inf.error(f"does not run in runtime {runtime.name!r} (it runs {', '.join(runtime_precisions(runtime.name))})",
                        precision, "precision")
    return HardwareProfile(
        name=doc.str("name", default_name),
        description=doc.str("description", "") if doc.has("description") else "",
        meter=meter,
        device_kind=kind,
        device_match=match,
        device_index=dev.int("index", 0, low=0),
        batch_size=inf.int("batch_size", low=1),
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
        energy_per_element_op_j=_sourced(est, "energy_per_element_op_j") if est.has("energy_per_element_op_j") else None,
        estimate_runtimes=_runtime_estimates(est) if est.has("runtimes") else {},
    )


def list_profiles() -> list[Path]:
    """The shipped hardware profile files (*.yaml), sorted by name."""
    return sorted(PROFILES_DIR.glob("*.yaml"))


__all__ = [
    "EXECUTION_PROVIDERS", "PRECISIONS", "PROFILES_DIR", "RESOURCES_DIR", "RUNTIME_NAMES", "SPACES_DIR", "HardwareProfile",
    "Param", "Protocol", "Repeated", "Runtime", "SearchSpace", "Sourced", "runtime_precisions", "list_profiles", "list_spaces", "load_profile", "load_space",
    "parse_profile", "parse_space", "read_yaml", "resolve_named",
]
