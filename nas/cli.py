"""The `nas` command line: parse, call one library function, print.

Library errors (NasError) become one line on stderr and a non-zero exit code, here and nowhere
else; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from nas import cli_options as opt
from nas.cli_commands import bench, estimate, profiles, spaces
from nas.cli_values import FiniteFloat, NasGroup, echo_json, given_options
from nas.search.settings import SearchSettings, WorkerSettings

_Group = NasGroup  # every user error, click's usage errors included, is one `nas: error:` line (nas.cli_values)


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
@click.option(
    "--html",
    "html_path",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also write one self-contained HTML report (plots embedded, no network needed).",
)
@opt.grid_intensity
@opt.region
@opt.json_output
def report(
    run: str,
    storage: str | None,
    pick: str | None,
    html_path: str | None,
    grid_intensity: float | None,
    region: str | None,
    as_json: bool,
) -> None:
    """Print a run's Pareto front, search cost, carbon and hypervolume."""
    from nas.html_report import write_html_report
    from nas.report import build_report, format_table, report_dict

    options = {"pick": pick, "grid_intensity": grid_intensity, "region": region}
    if html_path:
        rep = write_html_report(run, html_path, storage=storage, **options)
    else:
        rep = build_report(run, storage, **options)
    echo_json({**report_dict(rep), "html": html_path}) if as_json else click.echo(format_table(rep))
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
@click.option(
    "--prune",
    "prune_ratio",
    type=FiniteFloat(positive=True),
    cls=opt.LazyDefault,
    show_default=True,
    default=opt.library_default("nas.variants:compare_variants", "prune_ratio"),
    help="Pruning ratio of the pruned variants.",
)
@opt.storage
@opt.json_output
def variants(run: str, trial: int, prune_ratio: float, storage: str | None, as_json: bool) -> None:
    """One architecture as fp32, at lower precisions and pruned: accuracy and energy side by side."""
    from nas.variants import compare_variants, format_variants

    arch, results = compare_variants(run, trial, storage, prune_ratio)
    if as_json:
        echo_json({"trial": trial, "architecture": arch, "variants": [r.to_dict() for r in results]})
    else:
        click.echo(format_variants(arch, results))


# ----------------------------------------------------------------------------- export / rerank
@main.command()
@opt.run_argument
@opt.trial(required=False, help="Export trial number N.")
@opt.pick
@opt.output("Folder to write (must be empty or new, unless --force).", folder=True, required=True, metavar="DIR")
@click.option(
    "--retrain-epochs",
    type=int,
    default=None,
    metavar="E",
    help="Retrain the architecture for E epochs on train + validation data before export.",
)
@click.option("--force", is_flag=True, help="Overwrite the export files in a non-empty DIR.")
@opt.storage
@opt.json_output
def export(
    run: str,
    trial: int | None,
    pick: str | None,
    output: str,
    retrain_epochs: int | None,
    force: bool,
    storage: str | None,
    as_json: bool,
) -> None:
    """Export one trial: architecture, weights, TorchScript, ONNX (checked) and a report card."""
    from nas.export import export_run, format_export

    result = export_run(
        run, output, trial=trial, pick=pick, retrain_epochs=retrain_epochs, force=force, storage=storage
    )
    echo_json(result.to_dict()) if as_json else click.echo(format_export(result))


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
    echo_json(result.to_dict()) if as_json else click.echo(format_rerank(result))


# ----------------------------------------------------------------------------- measure
@main.command()
@click.argument("run", type=click.Path(), required=False)
@opt.trial(required=False, help="The trial of RUN to re-measure.")
@click.option(
    "--model",
    "model_file",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Measure this exported or third-party model instead (.onnx, or TorchScript .pt); needs --profile.",
)
@click.option(
    "--input-shape",
    default=None,
    metavar="SHAPE",
    help="With --model: one sample's shape, e.g. 1,8,8 (needed for symbolic ONNX inputs and TorchScript files "
    "that nas export did not write; refused when it contradicts the file or its export).",
)
@click.option(
    "--runtime",
    default=None,
    metavar="NAME",
    help="With --model: run in this runtime (torch, torchscript, onnxruntime) instead of the profile's.",
)
@opt.profile("Measure on this profile instead of the run's (a shipped name or a YAML path).")
@click.option("--repeats", default=None, type=int, metavar="R", help="Measurement windows (default: the profile's).")
@opt.allow_estimate
@opt.storage
@opt.json_output
def measure(
    run: str | None,
    trial: int | None,
    model_file: str | None,
    input_shape: str | None,
    runtime: str | None,
    profile: str | None,
    repeats: int | None,
    allow_estimate: bool,
    storage: str | None,
    as_json: bool,
) -> None:
    """Re-measure one trial (RUN --trial N), or a model file (--model FILE --profile P); print the full record."""
    from nas.errors import ConfigError

    if model_file is not None:
        if run is not None or trial is not None:
            raise ConfigError("give either RUN --trial N or --model FILE, not both")
        if profile is None:
            raise ConfigError("--model needs --profile: the device and runtime to measure it on")
        from nas.measure_file import format_file_measurement, measure_file, parse_input_shape

        f = measure_file(
            model_file,
            profile,
            parse_input_shape(input_shape),
            runtime=runtime,
            repeats=repeats,
            allow_estimate=allow_estimate,
        )
        echo_json(f.to_dict()) if as_json else click.echo(format_file_measurement(f))
        return
    if run is None or trial is None:
        raise ConfigError("give RUN --trial N (a trial of a run) or --model FILE --profile P (a model file)")
    for flag, value in (("--input-shape", input_shape), ("--runtime", runtime)):
        if value is not None:
            raise ConfigError(f"{flag} only applies to --model")
    from nas.measure import format_remeasurement, measure_trial

    m = measure_trial(run, trial, profile=profile, repeats=repeats, allow_estimate=allow_estimate, storage=storage)
    echo_json(m.to_dict()) if as_json else click.echo(format_remeasurement(m))


# ----------------------------------------------------------------------------- groups
for _command in (bench, spaces, profiles, estimate):  # nas.cli_commands: tables, spaces, profiles, estimates
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
