"""`run_search`: the library call behind `nas search` (one process, or local worker processes)."""

from __future__ import annotations

from pathlib import Path

import optuna

from nas.artifacts import artifact_dir
from nas.errors import RunError
from nas.report import build_report, format_table
from nas.runs import RunFolder
from nas.search.context import prepare
from nas.search.loop import SearchResult, optimize, write_run_json
from nas.search.objective import quiet_optuna
from nas.search.settings import SearchSettings
from nas.search.study import create_or_load_study, set_target
from nas.storage import creation_lock, open_storage, sqlite_path
from nas.workers import check_worker_devices, run_local_workers


def run_search(settings: SearchSettings) -> SearchResult:
    """Run (or continue) a search until the study holds `settings.trials` complete trials.

    Several processes started at once on one new run folder all join its study: checking the
    folder, creating the study and writing run.json happen under the database's creation lock.
    Raises ConfigError for bad settings, RunError for a folder or study that does not fit them,
    StorageError when the storage cannot be opened.
    """
    quiet_optuna()
    ctx = prepare(settings)
    check_worker_devices(ctx)
    run = RunFolder(Path(settings.out))
    if run.path.exists() and not run.path.is_dir():
        raise RunError(f"{run.path}: exists and is not a folder")
    url = settings.storage or run.sqlite_url
    if run.path.is_dir() and not run.run_json.exists() and _foreign_files(run, url):
        raise RunError(f"{run.path}: folder is not empty and is not a run folder; choose another --out")
    run.path.mkdir(parents=True, exist_ok=True)
    ctx.artifact_dir = artifact_dir(run)
    name = settings.study_name or run.path.resolve().name
    with creation_lock(url):
        if not run.run_json.exists() and _foreign_files(run, url):
            raise RunError(f"{run.path}: folder is not empty and is not a run folder; choose another --out")
        # workers (nas.workers) and server databases, which other machines may join, keep heartbeats
        storage = open_storage(url, heartbeat=not url.startswith("sqlite"))
        if not settings.storage:
            _check_one_study(run, storage, name)
        study = create_or_load_study(ctx, storage, name)
        set_target(study, settings)
        write_run_json(run, ctx, study, status="running")
    if settings.workers > 1:
        return run_local_workers(ctx, study, run, url)
    return optimize(ctx, study, run)


def format_search(result: SearchResult, storage: str | None = None) -> str:
    """What `nas search` prints when done: the front table, then trials, time and training saved.

    `storage` is the search's storage URL (None: the run folder's SQLite file).
    """
    state = "interrupted; results of finished trials written" if result.interrupted else "done"
    lines = [
        format_table(build_report(result.run.path, storage)),
        f"{state}: {result.new_trials} new trials in {result.wall_s:.1f} s; "
        f"{result.complete} complete in total. Results in {result.run.path}/ "
        f"(pareto.json, pareto.csv, pareto.png, study.db)",
    ]
    sv = result.savings
    if sv.get("over_budget_not_trained") or sv.get("stopped_early"):
        lines.append(
            f"saved training energy: {sv['over_budget_not_trained']} over-budget candidates not trained "
            f"(~{sv['training_energy_saved_by_budget_j']:.3g} J), {sv['stopped_early']} stopped early "
            f"(~{sv['training_energy_saved_by_early_stop_j']:.3g} J); spent {sv['training_energy_j']:.3g} J "
            f"on training [{', '.join(sv['methods'])}]"
        )
    return "\n".join(lines)


def _foreign_files(run: RunFolder, url: str) -> list[str]:
    """Entries of the run folder other than its study database and the database's companion files
    (its creation lock, WAL and shared-memory files): those of another process creating the study."""
    db = sqlite_path(url)
    ours = db.name if db is not None and db.parent.resolve() == run.path.resolve() else None
    return [
        p.name
        for p in run.path.iterdir()
        if (ours is None or not p.name.startswith(ours))
        and not (p.name == "artifacts" and p.is_dir() and not any(p.iterdir()))
    ]  # a start killed early


def _check_one_study(run: RunFolder, storage: optuna.storages.BaseStorage, name: str) -> None:
    """A run folder's study.db holds one study; a second one (a renamed folder rerun under its new
    name, a mistyped --study) would bypass the check of changed settings, so it is refused."""
    names = [s.study_name for s in storage.get_all_studies()]
    if names and name not in names:
        raise RunError(
            f"{run.path}: study.db holds study {', '.join(map(repr, names))}, not {name!r}; "
            f"resume it with --study {names[0]}, or choose another --out"
        )


__all__ = ["format_search", "run_search"]
