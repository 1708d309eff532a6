"""YAML at the edge: search spaces and hardware profiles become frozen dataclasses here.

All validation happens in this module. Errors name the file, the field and what was expected;
past the loaders no code sees a raw dict.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from nas.errors import ConfigError

# Numeric formats a model can run in (nas.models re-exports it). Defined here, not beside the
# models, so that reading a profile never imports torch: `nas report` and `nas plot` parse the
# stored profile, and importing torch was most of their run time (docs/benchmarks.md, "Scale").
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# Runtimes a deployed model can ship in (nas.runtimes holds their implementations; kept here for
# the same reason as PRECISIONS). ONNX Runtime's execution providers are named as ONNX Runtime
# names them (onnxruntime.get_available_providers()).
RUNTIME_NAMES = ("torch", "torchscript", "onnxruntime")
EXECUTION_PROVIDERS = {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider"}  # device.kind -> provider
# ONNX Runtime has no bfloat16 Conv/Gemm kernels on its CPU and CUDA providers: a session refuses
# the exported graph ("Type 'tensor(bfloat16)' of input parameter ... of operator (Conv) ... is invalid",
# onnxruntime 1.32, tried here); fp16 runs (CPU: through ONNX Runtime's own casts).
_RUNTIME_CANNOT = {"onnxruntime": ("bf16",)}


def runtime_precisions(runtime: str) -> tuple[str, ...]:
    """The precisions (of PRECISIONS) a model can be deployed at in `runtime`."""
    return tuple(p for p in PRECISIONS if p not in _RUNTIME_CANNOT.get(runtime, ()))

ROOT = Path(__file__).resolve().parent.parent
SPACES_DIR = ROOT / "search_spaces"
PROFILES_DIR = ROOT / "hardware_profiles"


# --------------------------------------------------------------------------- reading helpers
def read_yaml(path: Path) -> Any:
    """Parse a YAML file with `safe_load`, turning every failure into a one-line ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read file ({e.__class__.__name__}: {e})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:
        # PyYAML's constructors raise these for values it cannot build: `!!float x`,
        # `2020-13-45` as a date, an integer beyond Python's digit limit
        problem = (str(e).splitlines() or [""])[0][:120]
        raise ConfigError(f"{path}: malformed YAML: a value cannot be read ({e.__class__.__name__}: {problem})") from None


MAX_INT = 2**31 - 1  # counts, sizes and indexes beyond this are typos, and overflow downstream


def _finite(value: Any) -> float | None:
    """`value` as a finite float, or None when it is not a number or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    return f if math.isfinite(f) else None


def _show(value: Any) -> str:
    """A short, one-line repr for error messages, whatever the value (huge, nested, aliased)."""
    import reprlib

    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    short = reprlib.Repr()  # keyword arguments only from Python 3.12
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple, short.maxset = 2, 4, 4, 4, 4
    short.maxstring, short.maxother, short.maxlong = 60, 60, 40
    try:
        text = short.repr(value)
    except Exception:  # a value whose repr itself fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _name(key: Any) -> str:
    """A field name fit for a one-line message: control characters escaped, long names cut."""
    text = str(key)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 40 else text[:37] + "..."


_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def _yaml11_float(value: Any) -> Any:
    """YAML 1.1 reads `1e-12` (no dot) as a string; take it as the number the author meant."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    return value


class _Doc:
    """A mapping read from one file, with typed getters whose errors name file and field."""

    def __init__(self, data: Any, file: str, path: str = "") -> None:
        self.file, self.path = file, path
        if not isinstance(data, Mapping):
            raise self.error("expected a mapping", data)
        self.data = data

    def field(self, key: str) -> str:
        return f"{self.path}.{_name(key)}" if self.path else _name(key)

    def error(self, expected: str, got: Any = None, key: str | None = None) -> ConfigError:
        where = self.field(key) if key is not None else (self.path or "(top level)")
        shown = f", got {_show(got)}" if got is not None else ""
        return ConfigError(f"{self.file}: field '{where}': {expected}{shown}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.error("is required", key=key)
            return default
        return self.data[key]

    def sub(self, key: str, default: Any = ...) -> _Doc:
        value = self.raw(key, default)
        return _Doc(value, self.file, self.field(key))

    def str(self, key: str, default: Any = ...) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value.strip():
            if value is default and default is None:
                return value
            raise self.error("expected a non-empty string", value, key)
        return value

    def int(self, key: str, default: Any = ..., low: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error("expected an integer", value, key)
        if low is not None and value < low:
            raise self.error(f"expected an integer >= {low}", value, key)
        if abs(value) > MAX_INT:
            raise self.error(f"expected an integer of at most {MAX_INT}", value, key)
        return value

    def number(self, key: str, default: Any = ..., positive: bool = False) -> float:
        value = _finite(_yaml11_float(self.raw(key, default)))
        if value is None:
            raise self.error("expected a finite number", self.raw(key, default), key)
        if positive and value <= 0:
            raise self.error("expected a number > 0", value, key)
        if value < 0:
            raise self.error("expected a number >= 0", value, key)
        return float(value)

    def real(self, key: str) -> float:
        """Any finite number, negative included."""
        value = _finite(_yaml11_float(self.raw(key)))
        if value is None:
            raise self.error("expected a finite number", self.raw(key), key)
        return value

    def check_keys(self, allowed: set[str] | frozenset[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.error(f"unknown field (valid: {', '.join(sorted(allowed))})", key=str(key))


def resolve_named(name_or_path: str | Path, directory: Path, kind: str) -> Path:
    """A name from `directory` (`mlp` -> search_spaces/mlp.yaml) or a path to a YAML file."""
    text = str(name_or_path)
    candidate = Path(text)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists() or "/" in text:
        return candidate
    path = directory / f"{text}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in directory.glob("*.yaml"))) or "none"
        raise ConfigError(f"unknown {kind} {text!r} (valid: {names}; or give a path to a .yaml file)")
    return path


# --------------------------------------------------------------------------- search spaces
@dataclass(frozen=True)
class Param:
    """One searchable parameter: categorical (`choices`) or a numeric range (`low`/`high`)."""

    name: str
    kind: str  # "choice" | "int" | "float"
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (param, allowed values) that must all hold

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.kind == "choice":
            d["choices"] = list(self.choices)
        else:
            d.update(type=self.kind, low=self.low, high=self.high)
            if self.step is not None:
                d["step"] = self.step
            if self.log:
                d["log"] = True
        if self.when:
            d["when"] = {k: list(v) for k, v in self.when}
        return d

    def describe(self) -> str:
        if self.kind == "choice":
            text = "{" + ", ".join(map(str, self.choices)) + "}"
        else:
            step = f" step {self.step:g}" if self.step else ""
            text = f"[{self.low:g}, {self.high:g}]{step}{' log' if self.log else ''} ({self.kind})"
        if self.when:
            text += "  when " + ", ".join(f"{k} in {list(v)}" for k, v in self.when)
        return text


@dataclass(frozen=True)
class Repeated:
    """A group of parameters sampled once per unit; `count` is itself searched."""

    name: str
    count: Param
    params: tuple[Param, ...]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    family: str
    description: str
    params: tuple[Param, ...]
    repeated: Repeated
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "params": {p.name: p.to_dict() for p in self.params},
            self.repeated.name: {
                "count": self.repeated.count.to_dict(),
                "params": {p.name: p.to_dict() for p in self.repeated.params},
            },
        }

    def has(self, name: str) -> bool:
        return any(p.name == name for p in self.params)


_PARAM_KEYS = {"choices", "type", "low", "high", "step", "log", "when"}


def _param(doc: _Doc, name: str, registry_choices: tuple[str, ...] | None) -> Param:
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
                        f"unknown {name} {_show(c)} (valid: {', '.join(registry_choices)})", key="choices"
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


def _check_conditions(params: tuple[Param, ...], known: dict[str, Param], doc: _Doc) -> None:
    for p in params:
        for key, values in p.when:
            target = known.get(key)
            if target is None or target is p:
                raise doc.error(
                    f"'when' refers to {_show(key)}, which is not a parameter declared before it",
                    key=f"{p.name}.when",
                )
            if target.kind == "choice":
                bad = [v for v in values if v not in target.choices]
                if bad:
                    raise doc.error(
                        f"'when' value {_show(bad[0])} is not one of {_name(key)}'s choices {_show(list(target.choices))}",
                        key=f"{p.name}.when",
                    )


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load and validate a search space by name (`search_spaces/NAME.yaml`) or path."""
    path = resolve_named(name_or_path, SPACES_DIR, "search space")
    return parse_space(read_yaml(path), str(path), path.stem)


def parse_space(data: Any, file: str, default_name: str = "space") -> SearchSpace:
    """Validate a search-space document (as read from YAML) that came from `file`."""
    from nas.models import FAMILIES, valid_choices

    doc = _Doc(data, file)
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
    return sorted(SPACES_DIR.glob("*.yaml"))


# --------------------------------------------------------------------------- hardware profiles
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
        return asdict(self)


@dataclass(frozen=True)
class HardwareProfile:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sourced(doc: _Doc, key: str, positive: bool = True) -> Sourced:
    sub = doc.sub(key)
    sub.check_keys({"value", "source"})
    return Sourced(sub.number("value", positive=positive), sub.str("source"))


def _per_precision(doc: _Doc, key: str, precisions: tuple[str, ...]) -> dict[str, Sourced]:
    sub = doc.sub(key)
    sub.check_keys(set(PRECISIONS))
    out = {str(k): _sourced(sub, str(k)) for k in sub.data}
    for p in precisions:
        if p not in out:
            raise sub.error(f"missing precision {p!r} (listed in device.precisions)", key=p)
    return out


def _runtime(doc: _Doc, device_kind: str) -> Runtime:
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


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load and validate a hardware profile by name (`hardware_profiles/NAME.yaml`) or path."""
    path = resolve_named(name_or_path, PROFILES_DIR, "hardware profile")
    return parse_profile(read_yaml(path), str(path), path.stem)


def parse_profile(data: Any, file: str, default_name: str = "profile") -> HardwareProfile:
    """Validate a hardware-profile document (as read from YAML) that came from `file`."""
    from nas.energy import meter_names

    doc = _Doc(data, file)
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
    est.check_keys({"energy_per_mac_j", "energy_per_byte_dram_j", "energy_per_byte_cache_j", "static_power_w"})
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
    )


def list_profiles() -> list[Path]:
    return sorted(PROFILES_DIR.glob("*.yaml"))
