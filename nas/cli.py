"""The `nas` command line: parse, call one library function, print.

Library errors (NasError) become one line on stderr and a non-zero exit code, here and nowhere
else; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
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
@click.option("--allow-estimate", is_flag=True, help="If the profile's sensor is absent, use its analytical estimate (labelled 'estimated').")
@click.option("--energy-budget", "energy_budget_j", default=None, type=float, metavar="J",
              help="Energy per inference limit: candidates over it are measured, marked infeasible, and not trained.")
@click.option("--latency-budget", "latency_budget_s", default=None, type=float, metavar="S",
              help="Latency per batch limit, checked before training like --energy-budget.")
@click.option("--early-stop", is_flag=True, help="Stop training candidates dominated at the same epoch by finished trials.")
@click.option("--early-stop-k", default=3, show_default=True, type=int, help="How many finished trials must dominate to stop.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def search(quiet: bool, objectives: str, **kw: Any) -> None:
    """Run (or continue) a multi-objective search and write the run folder."""
    from nas.search import SearchSettings, run_search

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


# ----------------------------------------------------------------------------- report / plot
@main.command()
@click.argument("run", type=click.Path())
@storage_option
@json_option
def report(run: str, storage: str | None, as_json: bool) -> None:
    """Print a run's Pareto front."""
    from nas.report import build_report, format_table, report_dict

    rep = build_report(run, storage)
    _echo_json(report_dict(rep)) if as_json else click.echo(format_table(rep))


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
    from nas.config import list_profiles, load_profile

    loaded = [load_profile(p) for p in list_profiles()]
    if as_json:
        _echo_json([{"name": p.name, "meter": p.meter, "device_kind": p.device_kind,
                     "description": p.description, "file": p.source} for p in loaded])
        return
    for p in loaded:
        click.echo(f"{p.name:<18} {p.meter:<9} {p.device_kind:<4} {p.description}")


@profiles.command("show")
@click.argument("name")
@json_option
def profiles_show(name: str, as_json: bool) -> None:
    from nas.config import load_profile

    p = load_profile(name)
    if as_json:
        _echo_json(p.to_dict())
        return
    click.echo(Path(p.source).read_text())


if __name__ == "__main__":  # pragma: no cover
    main()
