"""The `nas` command line: parse, call one library function, print.

Library errors (NasError) become one line on stderr and a non-zero exit code, here and nowhere
else; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from nas import cli_options as opt
from nas.cli_values import FiniteFloat, NasGroup
from nas.search.settings import SearchSettings, WorkerSettings
from nas.tabular import BENCH_OBJECTIVES, BENCH_SPACE

_Group = NasGroup  # every user error, click's usage errors included, is one `nas: error:` line (nas.cli_values)


def given_options() -> set[str]:
    """Names of the current command's options given on the command line or by environment variable."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return {name for name in ctx.params
            if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}


def _echo_json(doc: Any) -> None:
    from nas.atomic import dumps_json

    click.echo(dumps_json(doc))  # strict JSON: NaN and infinities become null




@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="energy-nas")
def main() -> None:
    """energy-nas: energy-aware neural architecture search."""


# ----------------------------------------------------------------------------- search
@main.command()
@opt.search_options
@opt.quiet("No progress bar.")
def search(quiet: bool, **kw: Any) -> None:
    """Run (or continue) a multi-objective search and write the run folder."""
    from nas.resume import resume_settings
    from nas.search.run import format_search, run_search

    # `--out RUN` alone resumes RUN with its own settings (those not given come from RUN/run.json)
    result = run_search(resume_settings(SearchSettings(progress=not quiet, **kw), given_options()))
    click.echo(format_search(result, kw["storage"]))
    if result.interrupted:
        sys.exit(130)


# ----------------------------------------------------------------------------- worker
@main.command()
@opt.worker_options
@opt.quiet("Print nothing when done.")
def worker(quiet: bool, **kw: Any) -> None:
    """Join an existing study and run trials until it holds its target; settings come from the study.

    With --measure-only, train nothing: measure the candidates trainers elsewhere queue."""
    from nas.workers import format_worker, run_worker

    ws = WorkerSettings(**kw)
    if ws.measure_only:
        from nas.measurer import format_measurer, run_measurer

        m = run_measurer(ws)
        if not quiet:
            click.echo(format_measurer(m))
        if m.interrupted:
            sys.exit(130)
        return
    r = run_worker(ws)
    if r.complete is None:
        click.echo("worker interrupted before it joined the study", err=True)
    elif not quiet:
        click.echo(format_worker(r))
    if r.interrupted:
        sys.exit(130)


# ----------------------------------------------------------------------------- report / plot
@main.command()
@opt.run_argument
@opt.storage
@opt.pick
@click.option("--html", "html_path", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write one self-contained HTML report (plots embedded, no network needed).")
@opt.grid_intensity
@opt.region
@opt.json_output
def report(run: str, storage: str | None, pick: str | None, html_path: str | None,
           grid_intensity: float | None, region: str | None, as_json: bool) -> None:
    """Print a run's Pareto front, search cost, carbon and hypervolume."""
    from nas.html_report import write_html_report
    from nas.report import build_report, format_table, report_dict

    options = {"pick": pick, "grid_intensity": grid_intensity, "region": region}
    if html_path:
        rep = write_html_report(run, html_path, storage=storage, **options)
    else:
        rep = build_report(run, storage, **options)
    _echo_json({**report_dict(rep), "html": html_path}) if as_json else click.echo(format_table(rep))
    if html_path and not as_json:
        click.echo(f"HTML report: {html_path}")


@main.command()
@opt.run_argument
@opt.output("PNG or SVG file (default: RUN/pareto.png).")
@opt.storage
def plot(run: str, output: str | None, storage: str | None) -> None:
    """Draw all trials and the Pareto front."""
    from nas.report import plot_run

    click.echo(str(plot_run(run, output, storage)))


@main.command()
@opt.run_argument
@opt.trial(required=True, help="The trial whose architecture to compare.")
@click.option("--prune", "prune_ratio", type=FiniteFloat(positive=True), cls=opt.LazyDefault, show_default=True,
              default=opt.library_default("nas.variants:compare_variants", "prune_ratio"),
              help="Pruning ratio of the pruned variants.")
@opt.storage
@opt.json_output
def variants(run: str, trial: int, prune_ratio: float, storage: str | None, as_json: bool) -> None:
    """One architecture as fp32, at lower precisions and pruned: accuracy and energy side by side."""
    from nas.variants import compare_variants, format_variants

    arch, results = compare_variants(run, trial, storage, prune_ratio)
    if as_json:
        _echo_json({"trial": trial, "architecture": arch, "variants": [r.to_dict() for r in results]})
    else:
        click.echo(format_variants(arch, results))


# ----------------------------------------------------------------------------- export / rerank
@main.command()
@opt.run_argument
@opt.trial(required=False, help="Export trial number N.")
@opt.pick
@opt.output("Folder to write (must be empty or new, unless --force).", folder=True, required=True, metavar="DIR")
@click.option("--retrain-epochs", type=int, default=None, metavar="E",
              help="Retrain the architecture for E epochs on train + validation data before export.")
@click.option("--force", is_flag=True, help="Overwrite the export files in a non-empty DIR.")
@opt.storage
@opt.json_output
def export(run: str, trial: int | None, pick: str | None, output: str, retrain_epochs: int | None, force: bool,
           storage: str | None, as_json: bool) -> None:
    """Export one trial: architecture, weights, TorchScript, ONNX (checked) and a report card."""
    from nas.export import export_run, format_export

    result = export_run(run, output, trial=trial, pick=pick, retrain_epochs=retrain_epochs, force=force, storage=storage)
    _echo_json(result.to_dict()) if as_json else click.echo(format_export(result))


@main.command()
@opt.run_argument
@opt.profile("The other hardware profile: a shipped name or a YAML path.", required=True)
@click.option("--all", "all_trials", is_flag=True, help="Re-measure every complete trial, not only the front.")
@opt.allow_estimate
@opt.storage
@opt.json_output
def rerank(run: str, profile: str, all_trials: bool, allow_estimate: bool, storage: str | None, as_json: bool) -> None:
    """Re-measure a run's front (or all trials) on another profile; writes RUN/rerank-PROFILE.json."""
    from nas.reranking import format_rerank
    from nas.reranking import rerank as do_rerank

    result = do_rerank(run, profile, all_trials=all_trials, allow_estimate=allow_estimate, storage=storage)
    _echo_json(result.to_dict()) if as_json else click.echo(format_rerank(result))


# ----------------------------------------------------------------------------- measure
@main.command()
@click.argument("run", type=click.Path(), required=False)
@opt.trial(required=False, help="The trial of RUN to re-measure.")
@click.option("--model", "model_file", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Measure this exported or third-party model instead (.onnx, or TorchScript .pt); needs --profile.")
@click.option("--input-shape", default=None, metavar="SHAPE",
              help="With --model: one sample's shape, e.g. 1,8,8 (required for TorchScript and symbolic ONNX inputs).")
@click.option("--runtime", default=None, metavar="NAME",
              help="With --model: run in this runtime (torch, torchscript, onnxruntime) instead of the profile's.")
@opt.profile("Measure on this profile instead of the run's (a shipped name or a YAML path).")
@click.option("--repeats", default=None, type=int, metavar="R", help="Measurement windows (default: the profile's).")
@opt.allow_estimate
@opt.storage
@opt.json_output
def measure(run: str | None, trial: int | None, model_file: str | None, input_shape: str | None, runtime: str | None,
            profile: str | None, repeats: int | None, allow_estimate: bool, storage: str | None, as_json: bool) -> None:
    """Re-measure one trial (RUN --trial N), or a model file (--model FILE --profile P); print the full record."""
    from nas.errors import ConfigError

    if model_file is not None:
        if run is not None or trial is not None:
            raise ConfigError("give either RUN --trial N or --model FILE, not both")
        if profile is None:
            raise ConfigError("--model needs --profile: the device and runtime to measure it on")
        from nas.measure_file import format_file_measurement, measure_file, parse_input_shape

        f = measure_file(model_file, profile, parse_input_shape(input_shape), runtime=runtime, repeats=repeats,
                         allow_estimate=allow_estimate)
        _echo_json(f.to_dict()) if as_json else click.echo(format_file_measurement(f))
        return
    if run is None or trial is None:
        raise ConfigError("give RUN --trial N (a trial of a run) or --model FILE --profile P (a model file)")
    for flag, value in (("--input-shape", input_shape), ("--runtime", runtime)):
        if value is not None:
            raise ConfigError(f"{flag} only applies to --model")
    from nas.measure import format_remeasurement, measure_trial

    m = measure_trial(run, trial, profile=profile, repeats=repeats, allow_estimate=allow_estimate, storage=storage)
    _echo_json(m.to_dict()) if as_json else click.echo(format_remeasurement(m))


# ----------------------------------------------------------------------------- bench
IMPORT = "nas.table_import:import_table"


@main.group()
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
@click.option("--arch-column", cls=opt.LazyDefault, show_default=True,
              default=opt.library_default(IMPORT, "arch_column"),
              help="Architecture: a family notation (nb201 cell string) or a JSON genotype.")
@click.option("--accuracy-column", cls=opt.LazyDefault, show_default=True,
              default=opt.library_default(IMPORT, "accuracy_column"),
              help="Accuracy: a fraction, or percent when the name ends in _pct.")
@click.option("--energy-column", cls=opt.LazyDefault, show_default=True,
              default=opt.library_default(IMPORT, "energy_column"), help="Energy per inference, J.")
@click.option("--latency-column", default=None, help="Latency per inference, s  [default: latency_s if present]")
@opt.output("Table file (JSON).", required=True)
def bench_import(csv_file: str, space: str, profile: str, output: str, **columns: Any) -> None:
    """Turn a CSV of architectures and their metrics into a table `nas search --table` replays."""
    from nas.table_import import import_table

    table = import_table(csv_file, SearchSettings(space=space, profile=profile), output, **columns)
    click.echo(f"{len(table.rows)} architectures imported from {csv_file} -> {output}")


# ----------------------------------------------------------------------------- spaces
@main.group()
def spaces() -> None:
    """Search spaces shipped with the package (nas/resources/search_spaces/)."""


@spaces.command("list")
@opt.json_output
def spaces_list(as_json: bool) -> None:
    """Every shipped search space: name, family and description."""
    from nas.config import list_spaces, load_space

    loaded = [load_space(p) for p in list_spaces()]
    if as_json:
        _echo_json([{"name": s.name, "family": s.family, "description": s.description, "file": s.source} for s in loaded])
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
        _echo_json(s.to_dict())
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
@main.group()
def profiles() -> None:
    """Hardware profiles shipped with the package (nas/resources/hardware_profiles/)."""


@profiles.command("list")
@opt.json_output
def profiles_list(as_json: bool) -> None:
    """Every shipped profile, its meter, and whether that meter's sensor works here."""
    from nas.profiles import format_summaries, profile_summaries

    rows = profile_summaries()
    _echo_json(rows) if as_json else click.echo(format_summaries(rows))


@profiles.command("show")
@click.argument("name")
@opt.json_output
def profiles_show(name: str, as_json: bool) -> None:
    """One profile: every number with its source (the YAML file, or all fields as JSON)."""
    from nas.profiles import format_details, profile_details

    doc = profile_details(name)
    _echo_json(doc) if as_json else click.echo(format_details(doc))


@profiles.command("calibrate")
@click.argument("name")
@opt.from_csv(
    "Fit to the energies measured in this CSV (architecture, energy_j, ...) instead of "
    "measuring reference networks with the profile's sensor."
)
@opt.output("Calibrated profile to write (default: NAME-calibrated.yaml here).", metavar="FILE")
@opt.measurement_options
@opt.json_output
def profiles_calibrate(name: str, from_csv: str | None, output: str | None, as_json: bool, input_shape: str | None,
                       **kw: Any) -> None:
    """Fit the profile's estimate coefficients to measurements: from a CSV (--from), or by measuring
    reference networks with the profile's sensor on this device."""
    from nas.calibrate import calibrate_from_csv, calibrate_profile, format_calibration

    if from_csv is not None:
        result = calibrate_from_csv(name, from_csv, output, **opt.measurement_kwargs(input_shape, **kw))
    else:
        result = calibrate_profile(name, output)
    _echo_json(result.to_dict()) if as_json else click.echo(format_calibration(result))


@main.command()
@click.option("--profile", "profile", required=True, metavar="NAME|PATH", help="Hardware profile (a name or a YAML path).")
@opt.from_csv("Networks to estimate, one per row (architecture, optional energy_j, input_shape, ...).")
@click.option("--arch", "arch", default=None, metavar="JSON|CELL",
              help="One network: a JSON genotype or a NAS-Bench-201 cell string.")
@opt.measurement_options
@opt.json_output
def estimate(profile: str, from_csv: str | None, arch: str | None, as_json: bool, input_shape: str | None,
             **kw: Any) -> None:
    """Energy per inference, MACs, parameters and the estimate's terms of networks, without searching."""
    from nas.measurements import estimate_networks, format_estimates

    if (from_csv is None) == (arch is None):
        raise click.UsageError("give exactly one of --from FILE.csv and --arch JSON")
    rows = estimate_networks(profile, csv_path=from_csv, architecture=arch, **opt.measurement_kwargs(input_shape, **kw))
    _echo_json([r.to_dict() for r in rows]) if as_json else click.echo(format_estimates(rows))


if __name__ == "__main__":  # pragma: no cover
    main()
