"""The `nas` command line: parse, call one library function, print.

Library errors (NasError) become one line on stderr and a non-zero exit code, here and nowhere
else; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from nas.errors import NasError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NasError as e:
            click.echo(f"nas: error: {e}", err=True)
            sys.exit(e.exit_code)


def _echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
storage_option = click.option(
    "--storage", default=None, metavar="URL",
    help="Optuna storage URL (default: sqlite:///RUN/study.db). PostgreSQL: postgresql+psycopg://...",
)
pick_option = click.option(
    "--pick", default=None, metavar="RULE",
    help="Select a trial: N | knee | max-accuracy:energy<=E[,latency<=T] | min-energy:accuracy>=A[,latency<=T] "
         "(E like 200nJ, T like 5ms, A like 0.95 or 95%).",
)
grid_intensity_option = click.option(
    "--grid-intensity", default=None, type=float, metavar="G",
    help="Grid carbon intensity in gCO2e/kWh (default: the hardware profile's).",
)
region_option = click.option(
    "--region", default=None, metavar="CODE",
    help="Country code (FR, US, DE... or WORLD, EU) for the shipped grid intensities (Ember 2024).",
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="energy-nas")
def main() -> None:
    """energy-nas: energy-aware neural architecture search."""


# ----------------------------------------------------------------------------- search
@main.command()
@click.option("--space", default="mlp", show_default=True, help="Search space: a name from search_spaces/ or a YAML path.")
@click.option("--profile", default="cpu-host", show_default=True, help="Hardware profile: a name from hardware_profiles/ or a YAML path.")
@click.option("--dataset", default="digits", show_default=True, help="digits, mnist5k, or npz:PATH.")
@click.option("--trials", default=20, show_default=True, type=int, help="Complete trials the study should reach in total.")
@click.option("--timeout", "timeout_s", default=None, type=float, help="Stop after this many seconds.")
@click.option("--epochs", default=3, show_default=True, type=int, help="Training epochs per candidate.")
@click.option("--sampler", default="tpe", show_default=True, help="tpe, nsga2, nsga3, random or gp.")
@click.option("--objectives", default="accuracy,energy", show_default=True, help="Comma list; accuracy and energy always, plus latency and/or params.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", default="runs/default", show_default=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--study", "study_name", default=None, help="Study name (default: the run folder's name).")
@storage_option
@click.option("--threads", default=1, show_default=True, type=int, help="torch CPU threads per worker.")
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes on this machine, sharing the study.")
@click.option("--share-device", is_flag=True, help="Allow more workers than measured devices (their loads then mix in each other's readings).")
@click.option("--allow-estimate", is_flag=True, help="If the profile's sensor is absent, use its analytical estimate (labelled 'estimated').")
@click.option("--energy-budget", "energy_budget_j", default=None, type=float, metavar="J",
              help="Energy per inference limit: candidates over it are measured, marked infeasible, and not trained.")
@click.option("--latency-budget", "latency_budget_s", default=None, type=float, metavar="S",
              help="Latency per batch limit, checked before training like --energy-budget.")
@click.option("--early-stop", is_flag=True, help="Stop training candidates dominated at the same epoch by finished trials.")
@click.option("--early-stop-k", default=3, show_default=True, type=int, help="How many finished trials must dominate to stop.")
@click.option("--table", default=None, type=click.Path(dir_okay=False),
              help="Replay evaluations from a `nas bench build` table (no training; for sampler benchmarks).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def search(quiet: bool, objectives: str, **kw: Any) -> None:
    """Run (or continue) a multi-objective search and write the run folder."""
    from nas.search.run import run_search
    from nas.search.settings import SearchSettings

    settings = SearchSettings(objectives=tuple(o for o in objectives.split(",") if o), progress=not quiet, **kw)
    result = run_search(settings)
    from nas.report import build_report, format_table

    click.echo(format_table(build_report(result.run.path, kw["storage"])))
    state = "interrupted; results of finished trials written" if result.interrupted else "done"
    click.echo(
        f"{state}: {result.new_trials} new trials in {result.wall_s:.1f} s; "
        f"{result.complete} complete in total. Results in {result.run.path}/ "
        f"(pareto.json, pareto.csv, pareto.png, study.db)"
    )
    sv = result.savings
    if sv.get("over_budget_not_trained") or sv.get("stopped_early"):
        click.echo(
            f"saved training energy: {sv['over_budget_not_trained']} over-budget candidates not trained "
            f"(~{sv['training_energy_saved_by_budget_j']:.3g} J), {sv['stopped_early']} stopped early "
            f"(~{sv['training_energy_saved_by_early_stop_j']:.3g} J); spent {sv['training_energy_j']:.3g} J "
            f"on training [{', '.join(sv['methods'])}]"
        )
    if result.interrupted:
        sys.exit(130)


# ----------------------------------------------------------------------------- worker
@main.command()
@click.option("--storage", envvar="NAS_STORAGE", required=True, metavar="URL",
              help="The study's storage URL (or set NAS_STORAGE, which keeps a password off the command line).")
@click.option("--study", "study_name", default=None, help="Study name (needed when the storage holds several).")
@click.option("--threads", default=None, type=int, help="torch CPU threads (default: the study's).")
@click.option("--trials", default=None, type=int, help="Complete trials the study should reach (default: the study's).")
@click.option("--timeout", "timeout_s", default=None, type=float, help="Stop after this many seconds.")
@click.option("--artifact-dir", default=None, type=click.Path(file_okay=False), help="Keep trained weights here.")
@click.option("--worker-index", default=None, type=int, hidden=True)
@click.option("--quiet", is_flag=True, help="Print nothing when done.")
def worker(quiet: bool, **kw: Any) -> None:
    """Join an existing study and run trials until it holds its target; settings come from the study."""
    from nas.workers import WorkerSettings, run_worker

    r = run_worker(WorkerSettings(**kw))
    if r.complete is None:
        click.echo("worker interrupted before it joined the study", err=True)
    elif not quiet:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(r.failed.items())) or "none"
        click.echo(
            f"worker on {r.host} ({r.meter}): {r.new_trials} new trials in {r.wall_s:.1f} s; study "
            f"{r.study_name} has {r.complete} complete; failed: {failed}"
            + ("; interrupted" if r.interrupted else "")
        )
    if r.interrupted:
        sys.exit(130)


# ----------------------------------------------------------------------------- report / plot
@main.command()
@click.argument("run", type=click.Path())
@storage_option
@pick_option
@click.option("--html", "html_path", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write one self-contained HTML report (plots embedded, no network needed).")
@grid_intensity_option
@region_option
@json_option
def report(run: str, storage: str | None, pick: str | None, html_path: str | None,
           grid_intensity: float | None, region: str | None, as_json: bool) -> None:
    """Print a run's Pareto front, search cost, carbon and hypervolume."""
    from nas.report import build_report, format_table, report_dict

    options = {"pick": pick, "grid_intensity": grid_intensity, "region": region}
    if html_path:
        from nas.html_report import write_html_report

        rep = write_html_report(run, html_path, storage=storage, **options)
    else:
        rep = build_report(run, storage, **options)
    _echo_json({**report_dict(rep), "html": html_path}) if as_json else click.echo(format_table(rep))
    if html_path and not as_json:
        click.echo(f"HTML report: {html_path}")


@main.command()
@click.argument("run", type=click.Path())
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="PNG or SVG file (default: RUN/pareto.png).")
@storage_option
def plot(run: str, output: str | None, storage: str | None) -> None:
    """Draw all trials and the Pareto front."""
    from nas.plot import pareto_figure, save_figure
    from nas.report import build_report

    rep = build_report(run, storage)
    path = save_figure(pareto_figure(rep.records, rep.front, title=rep.study_name), output or rep.run.pareto_png)
    click.echo(str(path))


@main.command()
@click.argument("run", type=click.Path())
@click.option("--trial", type=int, required=True, metavar="N", help="The trial whose architecture to compare.")
@click.option("--prune", "prune_ratio", type=float, default=0.5, show_default=True, help="Pruning ratio of the pruned variants.")
@storage_option
@json_option
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
@click.argument("run", type=click.Path())
@click.option("--trial", type=int, default=None, metavar="N", help="Export trial number N.")
@pick_option
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder to write (must be empty or new, unless --force).")
@click.option("--retrain-epochs", type=int, default=None, metavar="E",
              help="Retrain the architecture for E epochs on train + validation data before export.")
@click.option("--force", is_flag=True, help="Overwrite the export files in a non-empty DIR.")
@storage_option
@json_option
def export(run: str, trial: int | None, pick: str | None, out: str, retrain_epochs: int | None, force: bool,
           storage: str | None, as_json: bool) -> None:
    """Export one trial: architecture, weights, TorchScript, ONNX (checked) and a report card."""
    if (trial is None) == (pick is None):
        raise click.UsageError("give exactly one of --trial N or --pick RULE")
    from nas.export import export_run, format_export

    result = export_run(run, out, trial=trial, pick=pick, retrain_epochs=retrain_epochs, force=force, storage=storage)
    _echo_json(result.to_dict()) if as_json else click.echo(format_export(result))


@main.command()
@click.argument("run", type=click.Path())
@click.option("--profile", required=True, help="The other hardware profile: a name from hardware_profiles/ or a YAML path.")
@click.option("--all", "all_trials", is_flag=True, help="Re-measure every complete trial, not only the front.")
@click.option("--allow-estimate", is_flag=True, help="If the profile's sensor is absent, use its analytical estimate (labelled 'estimated').")
@storage_option
@json_option
def rerank(run: str, profile: str, all_trials: bool, allow_estimate: bool, storage: str | None, as_json: bool) -> None:
    """Re-measure a run's front (or all trials) on another profile; writes RUN/rerank-PROFILE.json."""
    from nas.reranking import format_rerank
    from nas.reranking import rerank as do_rerank

    result = do_rerank(run, profile, all_trials=all_trials, allow_estimate=allow_estimate, storage=storage)
    _echo_json(result.to_dict()) if as_json else click.echo(format_rerank(result))


# ----------------------------------------------------------------------------- measure
@main.command()
@click.argument("run", type=click.Path())
@click.option("--trial", required=True, type=int, metavar="N", help="The trial to re-measure.")
@click.option("--profile", default=None, help="Measure on this profile instead of the run's (name or YAML path).")
@click.option("--repeats", default=None, type=int, metavar="R", help="Measurement windows (default: the profile's).")
@click.option("--allow-estimate", is_flag=True, help="If the profile's sensor is absent, use its analytical estimate (labelled 'estimated').")
@storage_option
@json_option
def measure(run: str, trial: int, profile: str | None, repeats: int | None, allow_estimate: bool,
            storage: str | None, as_json: bool) -> None:
    """Re-measure one trial's architecture and print the full energy record."""
    from nas.measure import format_remeasurement, measure_trial

    m = measure_trial(run, trial, profile=profile, repeats=repeats, allow_estimate=allow_estimate, storage=storage)
    _echo_json(m.to_dict()) if as_json else click.echo(format_remeasurement(m))


# ----------------------------------------------------------------------------- bench
@main.group()
def bench() -> None:
    """Tabular benchmarking: evaluate a small discrete space once, replay it in searches."""


@bench.command("build")
@click.option("--space", default="bench-mlp", show_default=True, help="A fully discrete search space.")
@click.option("--profile", default="cpu-host", show_default=True)
@click.option("--dataset", default="digits", show_default=True)
@click.option("--epochs", default=3, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--objectives", default="accuracy,energy,latency,params", show_default=True)
@click.option("--allow-estimate", is_flag=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Table file (JSON).")
def bench_build(output: str, objectives: str, **kw: Any) -> None:
    """Evaluate every architecture of SPACE once and store the results as a table."""
    from nas.search.bench import build_table
    from nas.search.settings import SearchSettings

    table = build_table(SearchSettings(objectives=tuple(objectives.split(",")), **kw), output)
    click.echo(f"{len(table.rows)} architectures evaluated in {table.build_s:.1f} s -> {output}")


# ----------------------------------------------------------------------------- spaces
@main.group()
def spaces() -> None:
    """Search spaces shipped in search_spaces/."""


@spaces.command("list")
@json_option
def spaces_list(as_json: bool) -> None:
    from nas.config import list_spaces, load_space

    loaded = [load_space(p) for p in list_spaces()]
    if as_json:
        _echo_json([{"name": s.name, "family": s.family, "description": s.description, "file": s.source} for s in loaded])
        return
    for s in loaded:
        click.echo(f"{s.name:<16} {s.family:<5} {s.description}")


@spaces.command("show")
@click.argument("name")
@json_option
def spaces_show(name: str, as_json: bool) -> None:
    from nas.config import load_space

    s = load_space(name)
    if as_json:
        _echo_json(s.to_dict())
        return
    click.echo(f"{s.name} ({s.family}) from {s.source}\n  {s.description}")
    for p in s.params:
        click.echo(f"  {p.name:<18} {p.describe()}")
    click.echo(f"  {s.repeated.name}.count{'':<{max(0, 12 - len(s.repeated.name))}} {s.repeated.count.describe()}")
    click.echo(f"  per {s.repeated.name[:-1]} (exists only when the {s.repeated.name[:-1]} does):")
    for p in s.repeated.params:
        click.echo(f"    {p.name:<16} {p.describe()}")


# ----------------------------------------------------------------------------- profiles
@main.group()
def profiles() -> None:
    """Hardware profiles shipped in hardware_profiles/."""


@profiles.command("list")
@json_option
def profiles_list(as_json: bool) -> None:
    """Every shipped profile, its meter, and whether that meter's sensor works here."""
    from nas.profiles import format_summaries, profile_summaries

    rows = profile_summaries()
    _echo_json(rows) if as_json else click.echo(format_summaries(rows))


@profiles.command("show")
@click.argument("name")
@json_option
def profiles_show(name: str, as_json: bool) -> None:
    """One profile: every number with its source (the YAML file, or all fields as JSON)."""
    from nas.profiles import format_details, profile_details

    doc = profile_details(name)
    _echo_json(doc) if as_json else click.echo(format_details(doc))


@profiles.command("calibrate")
@click.argument("name")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Calibrated profile to write (default: NAME-calibrated.yaml here).")
@json_option
def profiles_calibrate(name: str, output: str | None, as_json: bool) -> None:
    """Measure reference models with the profile's sensor and fit its estimate coefficients."""
    from nas.calibrate import calibrate_profile, format_calibration

    result = calibrate_profile(name, output)
    _echo_json(result.to_dict()) if as_json else click.echo(format_calibration(result))


if __name__ == "__main__":  # pragma: no cover
    main()
