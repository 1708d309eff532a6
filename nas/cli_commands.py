"""The `nas` subcommands that inspect and tabulate: `bench`, `spaces`, `profiles`, `estimate`.

`nas.cli` adds them to the `nas` group; like every command they parse, call one library function
and print.
"""

from __future__ import annotations

from typing import Any

import click

from nas import cli_options as opt
from nas.cli_values import echo_json
from nas.search.settings import SearchSettings
from nas.tabular import BENCH_OBJECTIVES, BENCH_SPACE

# ----------------------------------------------------------------------------- bench
IMPORT = "nas.table_import:import_table"


@click.group()
def bench() -> None:
    """Tabular benchmarking: evaluate a small discrete space once, replay it in searches."""


@bench.command("build")
@opt.search_setting("space", default=BENCH_SPACE, help="A fully discrete search space.")
@opt.search_setting("profile")
@opt.search_setting("dataset")
@opt.search_setting("epochs")
@opt.search_setting("batch_size")
@opt.search_setting("lr")
@opt.search_setting("split_seed")
@opt.search_setting("seed")
@opt.search_setting("objectives", default=BENCH_OBJECTIVES)
@opt.allow_estimate
@opt.output("Table file (JSON).", required=True)
def bench_build(output: str, **kw: Any) -> None:
    """Evaluate every architecture of SPACE once and store the results as a table."""
    from nas.search.bench import build_table

    table = build_table(SearchSettings(progress=True, **kw), output)
    click.echo(f"{len(table.rows)} architectures evaluated in {table.build_s:.1f} s -> {output}")


@bench.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@click.option("--space", required=True, help="The search space of the table's architectures (e.g. nb201).")
@opt.search_setting("profile", help="The hardware profile the energies were measured on (recorded with the table).")
@click.option(
    "--arch-column",
    cls=opt.LazyDefault,
    show_default=True,
    default=opt.library_default(IMPORT, "arch_column"),
    help="Architecture: a family notation (nb201 cell string) or a JSON genotype.",
)
@click.option(
    "--accuracy-column",
    cls=opt.LazyDefault,
    show_default=True,
    default=opt.library_default(IMPORT, "accuracy_column"),
    help="Accuracy: a fraction, or percent when the name ends in _pct.",
)
@click.option(
    "--energy-column",
    cls=opt.LazyDefault,
    show_default=True,
    default=opt.library_default(IMPORT, "energy_column"),
    help="Energy per inference, J.",
)
@click.option("--latency-column", default=None, help="Latency per inference, s  [default: latency_s if present]")
@opt.output("Table file (JSON).", required=True)
def bench_import(csv_file: str, space: str, profile: str, output: str, **columns: Any) -> None:
    """Turn a CSV of architectures and their metrics into a table `nas search --table` replays."""
    from nas.table_import import import_table

    table = import_table(csv_file, SearchSettings(space=space, profile=profile), output, **columns)
    click.echo(f"{len(table.rows)} architectures imported from {csv_file} -> {output}")


# ----------------------------------------------------------------------------- spaces
@click.group()
def spaces() -> None:
    """Search spaces shipped with the package (nas/resources/search_spaces/)."""


@spaces.command("list")
@opt.json_output
def spaces_list(as_json: bool) -> None:
    """Every shipped search space: name, family and description."""
    from nas.config import list_spaces, load_space

    loaded = [load_space(p) for p in list_spaces()]
    if as_json:
        echo_json(
            [{"name": s.name, "family": s.family, "description": s.description, "file": s.source} for s in loaded]
        )
        return
    for s in loaded:
        click.echo(f"{s.name:<16} {s.family:<11} {s.description}")


@spaces.command("show")
@click.argument("name")
@opt.json_output
def spaces_show(name: str, as_json: bool) -> None:
    """One search space: its parameters, repeated units and conditions (or JSON)."""
    from nas.config import load_space

    s = load_space(name)
    if as_json:
        echo_json(s.to_dict())
        return
    click.echo(f"{s.name} ({s.family}) from {s.source}\n  {s.description}")
    for alt in s.alternatives():
        indent = "  "
        if s.families:
            click.echo(f"  family {alt.family} (when family is {alt.family}):")
            indent = "    "
        for p in alt.params:
            click.echo(f"{indent}{p.name:<18} {p.describe()}")
        _echo_group(alt.repeated, indent)


def _echo_group(group, indent: str) -> None:
    """A repeated group's count and per-unit parameters, nested groups indented below."""
    click.echo(f"{indent}{group.name}.count{'':<{max(0, 12 - len(group.name))}} {group.count.describe()}")
    click.echo(f"{indent}per {group.name[:-1]} (exists only when the {group.name[:-1]} does):")
    for p in group.params:
        click.echo(f"{indent}  {p.name:<16} {p.describe()}")
    for g in group.groups:
        _echo_group(g, indent + "  ")


# ----------------------------------------------------------------------------- profiles
@click.group()
def profiles() -> None:
    """Hardware profiles shipped with the package (nas/resources/hardware_profiles/)."""


@profiles.command("list")
@opt.json_output
def profiles_list(as_json: bool) -> None:
    """Every shipped profile, its meter, and whether that meter's sensor works here."""
    from nas.profiles import format_summaries, profile_summaries

    rows = profile_summaries()
    echo_json(rows) if as_json else click.echo(format_summaries(rows))


@profiles.command("show")
@click.argument("name")
@opt.json_output
def profiles_show(name: str, as_json: bool) -> None:
    """One profile: every number with its source (the YAML file, or all fields as JSON)."""
    from nas.profiles import format_details, profile_details

    doc = profile_details(name)
    echo_json(doc) if as_json else click.echo(format_details(doc))


@profiles.command("calibrate")
@click.argument("name")
@opt.from_csv(
    "Fit to the energies measured in this CSV (architecture, energy_j, ...) instead of "
    "measuring reference networks with the profile's sensor."
)
@opt.output("Calibrated profile to write (default: NAME-calibrated.yaml here).", metavar="FILE")
@opt.measurement_options
@opt.json_output
def profiles_calibrate(
    name: str, from_csv: str | None, output: str | None, as_json: bool, input_shape: str | None, **kw: Any
) -> None:
    """Fit the profile's estimate coefficients to measurements: from a CSV (--from), or by measuring
    reference networks with the profile's sensor on this device."""
    from nas.calibrate import calibrate_from_csv, calibrate_profile, format_calibration

    assumed: list[str] = []
    if from_csv is not None:
        result = calibrate_from_csv(name, from_csv, output, **opt.measurement_kwargs(input_shape, **kw))
        assumed = _assumed(from_csv, input_shape, kw, result.runtime)
    else:
        result = calibrate_profile(name, output)
    if as_json:
        echo_json({**result.to_dict(), "assumed": assumed} if from_csv is not None else result.to_dict())
        return
    for line in assumed:
        click.echo(line, err=True)
    click.echo(format_calibration(result))


def _assumed(csv_path: str, input_shape: str | None, kw: dict[str, Any], runtime: str) -> list[str]:
    """One line per value a calibration took for every row of `csv_path` because the file has no
    such column and no flag gave it (so a user sees, e.g., that ONNX Runtime data were fitted as torch)."""
    import csv

    from nas.measurements import INPUT_SHAPE, NUM_CLASSES

    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        header = {c.strip() for c in next(csv.reader(f), [])}
    defaults = {
        "input_shape": ("--input-shape", "x".join(map(str, INPUT_SHAPE)), input_shape),
        "num_classes": ("--num-classes", NUM_CLASSES, kw.get("num_classes")),
        "batch_size": ("--batch-size", 1, kw.get("batch_size")),
        "precision": ("--precision", "fp32", kw.get("precision")),
    }
    out = [
        f"assumed for every row (no '{col}' column): {col} {value} (set with {flag})"
        for col, (flag, value, given) in defaults.items()
        if col not in header and given is None
    ]
    if kw.get("runtime") is None:
        out.append(f"assumed: the networks ran in {runtime}, the profile's runtime (set with --runtime)")
    return out


@click.command()
@click.option(
    "--profile", "profile", required=True, metavar="NAME|PATH", help="Hardware profile (a name or a YAML path)."
)
@opt.from_csv("Networks to estimate, one per row (architecture, optional energy_j, input_shape, ...).")
@click.option(
    "--arch",
    "arch",
    default=None,
    metavar="JSON|CELL",
    help="One network: a JSON genotype or a NAS-Bench-201 cell string.",
)
@opt.measurement_options
@opt.json_output
def estimate(
    profile: str, from_csv: str | None, arch: str | None, as_json: bool, input_shape: str | None, **kw: Any
) -> None:
    """Energy per inference, MACs, parameters and the estimate's terms of networks, without searching."""
    from nas.measurements import estimate_networks, format_estimates

    if (from_csv is None) == (arch is None):
        raise click.UsageError("give exactly one of --from FILE.csv and --arch JSON")
    rows = estimate_networks(profile, csv_path=from_csv, architecture=arch, **opt.measurement_kwargs(input_shape, **kw))
    echo_json([r.to_dict() for r in rows]) if as_json else click.echo(format_estimates(rows))
