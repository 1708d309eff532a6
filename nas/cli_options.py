"""The options of the `nas` commands, each defined once (the habit of pip-tools' `options.py`).

Settings options are read from their dataclass: `settings_options(SearchSettings)` gives
`nas search` one option per field that carries a flag (`nas.flags.option`), with that field's
flag, default and help, so a default lives only in the dataclass and a new setting is one field.
Options that several commands share (`--storage`, `--json`, `--pick`, `--trial`...) are module
attributes here, applied as decorators; a command that needs a variant calls the factory
(`trial(required=True)`, `output(...)`) instead of declaring the option inline.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from typing import Any, TypeVar

import click

from nas.cli_values import ENERGY, LATENCY, SECONDS, FiniteFloat
from nas.hardware import PRECISIONS
from nas.search.settings import TRAIN_DEVICES, SearchSettings, WorkerSettings

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]


class CommaList(click.ParamType):
    """A comma-separated list on the command line; a tuple of its non-empty items in Python."""

    name = "LIST"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        """'a,b' -> ('a', 'b'); a tuple or list passes through as a tuple."""
        if isinstance(value, (tuple, list)):
            return tuple(value)
        return tuple(item.strip() for item in str(value).split(",") if item.strip())


COMMA_LIST = CommaList()


def _click_type(annotation: Any) -> Any:
    """The click type of a dataclass field annotation (Optional unwrapped)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        return COMMA_LIST
    return {int: click.INT, float: click.FLOAT, str: click.STRING, bool: click.BOOL}[annotation]


def field_option(cls: type, name: str, *decls: str, **overrides: Any) -> Decorator:
    """The click option of field `name` of settings dataclass `cls`.

    Flag, help and default come from the field (`nas.search.option` metadata; a field without a
    default becomes a required option); `decls` replaces the flag (e.g. `"-o", "--output"`) and
    `overrides` any click keyword (`default`, `help`, `required`, `envvar`...). Raises KeyError
    for a field `cls` does not have.
    """
    f: Field = {f.name: f for f in fields(cls)}[name]
    hint = typing.get_type_hints(cls)[name]
    kw: dict[str, Any] = {"help": f.metadata.get("help")}
    if f.default is not MISSING:
        kw["default"] = f.default
    elif f.default_factory is not MISSING:
        kw["default"] = f.default_factory()
    else:
        kw["required"] = True
    kw.update(overrides)
    if kw.get("required"):  # a required option has no default (click 8.5 would never report it missing)
        kw.pop("default", None)
    flag = decls or (f.metadata.get("flag") or "--" + name.replace("_", "-"),)
    if hint is bool:
        return click.option(*flag, name, is_flag=True, **kw)
    kw.setdefault("type", _click_type(hint))
    if isinstance(kw.get("default"), tuple):
        kw["default"] = ",".join(kw["default"])
    kw.setdefault("show_default", kw.get("default") is not None)
    return click.option(*flag, name, **kw)


def settings_options(cls: type, *, skip: tuple[str, ...] = (), **overrides: dict[str, Any]) -> Decorator:
    """Every field of `cls` that has a flag (or is named in `overrides`), as options, in field order.

    `overrides[name]` holds click keywords for that field's option; `skip` leaves fields out.
    """
    chosen = [f.name for f in fields(cls) if f.name not in skip and ("flag" in f.metadata or f.name in overrides)]
    options = [field_option(cls, name, **overrides.get(name, {})) for name in chosen]

    def apply(func: F) -> F:
        for option in reversed(options):  # click lists options in decorator order, top first
            func = option(func)
        return func

    return apply


def signature_default(func: Callable[..., Any], name: str) -> Any:
    """The default of parameter `name` of library function `func` (so the CLI never repeats it)."""
    return inspect.signature(func).parameters[name].default


class LazyDefault(click.Option):
    """An option whose default is a callable resolved when needed, for `--help` too (shown as its
    value, where click would print "(dynamic)"), so importing the CLI never imports the library."""

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        """The default value, the callable called."""
        return super().get_default(ctx, call=True)


def library_default(target: str, param: str) -> Callable[[], Any]:
    """A lazy default: parameter `param` of the library function `target` ("module:function"),
    read from its signature when the option needs it (use with `cls=LazyDefault`)."""

    def default() -> Any:
        module, name = target.split(":")
        return signature_default(getattr(importlib.import_module(module), name), param)

    return default


def search_setting(name: str, *decls: str, **overrides: Any) -> Decorator:
    """The `nas search` option of `SearchSettings.<name>`, for another command that takes it."""
    return field_option(SearchSettings, name, *decls, **overrides)


# ------------------------------------------------------------------------------ settings options
# Click keywords that a field's annotation and metadata cannot say (a path type, an envvar, a
# custom value parser): field name -> keywords. The flag, default and help stay in the dataclass.
SEARCH_OVERRIDES: dict[str, dict[str, Any]] = {
    "out": {"type": click.Path(file_okay=False)},
    "storage": {"metavar": "URL"},
    "table": {"type": click.Path(dir_okay=False)},
    "train_device": {"type": click.Choice(TRAIN_DEVICES)},
    "measure_timeout_s": {"metavar": "S"},
    # units and finite values (nas.cli_values): --energy-budget 50uJ, --latency-budget 5ms; no nan/inf
    "timeout_s": {"type": SECONDS},
    "energy_budget_j": {"type": ENERGY},
    "latency_budget_s": {"type": LATENCY},
}
WORKER_OVERRIDES: dict[str, dict[str, Any]] = {
    "timeout_s": {"type": SECONDS},
    "storage": {"envvar": "NAS_STORAGE", "metavar": "URL"},
    "worker_index": {"hidden": True},
    "artifact_dir": {"type": click.Path(file_okay=False)},
    "train_device": {"type": click.Choice(TRAIN_DEVICES)},
    "claim_grace_s": {"metavar": "S"},
}
search_options = settings_options(SearchSettings, **SEARCH_OVERRIDES)  # every `nas search` setting
worker_options = settings_options(WorkerSettings, **WORKER_OVERRIDES)  # every `nas worker` setting


# ------------------------------------------------------------------------------ shared options
run_argument = click.argument("run", type=click.Path())
json_output = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
storage = search_setting("storage", **SEARCH_OVERRIDES["storage"])
allow_estimate = search_setting("allow_estimate")
pick = click.option(
    "--pick",
    default=None,
    metavar="RULE",
    help="Select a trial: N | knee | max-accuracy:energy<=E[,latency<=T] | min-energy:accuracy>=A[,latency<=T] "
    "(E like 200nJ, T like 5ms, A like 0.95 or 95%).",
)
grid_intensity = click.option(
    "--grid-intensity",
    default=None,
    type=FiniteFloat(positive=False),
    metavar="G",
    help="Grid carbon intensity in gCO2e/kWh (default: the hardware profile's).",
)
region = click.option(
    "--region",
    default=None,
    metavar="CODE",
    help="Country code (FR, US, DE... or WORLD, EU) for the shipped grid intensities (Ember 2024).",
)


def quiet(help: str) -> Decorator:
    """`--quiet`: print less (what exactly, `help` says)."""
    return click.option("--quiet", is_flag=True, help=help)


def trial(required: bool, help: str = "The trial's number.") -> Decorator:
    """`--trial N`: one trial of the run, by number."""
    extra: dict[str, Any] = {} if required else {"default": None}  # see `output`
    return click.option("--trial", type=int, required=required, metavar="N", help=help, **extra)


def profile(help: str, **kw: Any) -> Decorator:
    """`--profile NAME|PATH` for a command that measures on a profile other than the run's."""
    if not kw.get("required"):  # see `output`: an explicit default makes click skip the required check
        kw.setdefault("default", None)
    return search_setting("profile", show_default=False, help=help, **kw)


def output(help: str, *, folder: bool = False, required: bool = False, metavar: str | None = None) -> Decorator:
    """`-o/--output`: the file (or, with `folder`, the folder) a command writes."""
    kind = click.Path(file_okay=False) if folder else click.Path(dir_okay=False)
    # no explicit default when required: click 8.5 takes an explicit `default=None` as a value and
    # never reports the option missing (`nas export RUN --trial 1` then failed with a traceback)
    extra: dict[str, Any] = {} if required else {"default": None}
    return click.option("-o", "--output", type=kind, required=required, metavar=metavar, help=help, **extra)


def from_csv(help: str) -> Decorator:
    """`--from FILE.csv`: a measurements file (nas.measurements.read_measurements) to read rows from."""
    return click.option(
        "--from", "from_csv", default=None, type=click.Path(dir_okay=False), metavar="FILE.csv", help=help
    )


def measurement_options(fn: F) -> F:
    """Options for the optional columns of a measurements CSV (and for `nas estimate --arch`):
    --input-shape, --num-classes, --batch-size, --precision, --runtime; unset ones take the
    library's defaults (nas.measurements). Turn them into keyword arguments with `measurement_kwargs`."""
    fn = click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default=None,
        metavar="P",
        help="Precision of rows without a 'precision' column (default: fp32 for calibrate, "
        "the profile's for estimate).",
    )(fn)
    fn = click.option(
        "--batch-size",
        type=click.IntRange(min=1, max=65536),
        default=None,
        metavar="N",
        help="Batch size of rows without a 'batch_size' column (default: 1 for calibrate, the profile's for estimate).",
    )(fn)
    fn = click.option(
        "--num-classes",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="Classes of rows without a 'num_classes' column (default: 10).",
    )(fn)
    fn = click.option(
        "--input-shape",
        default=None,
        metavar="CxHxW",
        help="Input shape of rows without an 'input_shape' column (default: 3x32x32).",
    )(fn)
    fn = click.option(
        "--runtime",
        default=None,
        metavar="NAME",
        help="Runtime the networks ran in: torch, torchscript, onnxruntime (default: the profile's).",
    )(fn)
    return fn


def measurement_kwargs(input_shape: str | None, **kw: Any) -> dict[str, Any]:
    """The `measurement_options` given, as library keyword arguments (`--input-shape 3x32x32` ->
    input_shape=(3, 32, 32)); options left unset are omitted. Raises click.BadParameter on a bad shape."""
    from nas.measurements import parse_input_shape  # at command time: it imports torch

    out = {k: v for k, v in kw.items() if v is not None}
    if input_shape is not None:
        try:
            out["input_shape"] = parse_input_shape(input_shape)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--input-shape'") from None
    return out
