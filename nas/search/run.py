"""`run_search`: the library call behind `nas search` (one process, or local worker processes)."""

from __future__ import annotations

from pathlib import Path

from nas.artifacts import artifact_dir
from nas.errors import RunError
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
        study = create_or_load_study(ctx, storage, name)
        set_target(study, settings)
        write_run_json(run, ctx, study, status="running")
    if settings.workers > 1:
        return run_local_workers(ctx, study, run, url)
    return optimize(ctx, study, run)


def _foreign_files(run: RunFolder, url: str) -> list[str]:
    """Entries of the run folder other than its study database and the database's companion files
    (its creation lock, WAL and shared-memory files): those of another process creating the study."""
    db = sqlite_path(url)
    ours = db.name if db is not None and db.parent.resolve() == run.path.resolve() else None
    return [p.name for p in run.path.iterdir() if ours is None or not p.name.startswith(ours)]


__all__ = ["run_search"]
