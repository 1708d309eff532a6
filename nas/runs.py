"""The run folder: what is written where, and reading a run back.

RUN/
  study.db      Optuna study (SQLite; opens in optuna-dashboard and the `optuna` CLI)
  run.json      versions, seed, resolved settings, space, profile, dataset, the meter used
  pareto.json   front members (one row each, sorted by energy), with the objectives
  pareto.csv    the same rows as CSV
  pareto.png    all trials and the front
  artifacts/    trained weights of every complete trial (Optuna artifact store)
  rerank-PROFILE.json   the front re-measured on another profile (`nas rerank`)
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from nas.errors import RunError
from nas.objectives import OBJECTIVES, Objective
from nas.pareto import TrialRecord
from nas.storage import load_study

SETTINGS_ATTR = "nas.settings"
CSV_FIELDS = (
    "trial",
    "accuracy",
    "test_accuracy",
    "energy_per_inference_j",
    "energy_method",
    "latency_s",
    "params",
    "macs",
    "architecture",
)


@dataclass(frozen=True)
class RunFolder:
    """A run folder and the paths of what it holds (study.db, run.json, pareto.json/.csv/.png)."""

    path: Path

    @property
    def study_db(self) -> Path:
        """RUN/study.db, the SQLite study (when the run uses the default storage)."""
        return self.path / "study.db"

    @property
    def run_json(self) -> Path:
        """RUN/run.json: versions, seed, resolved settings, space, profile, dataset, meter used."""
        return self.path / "run.json"

    @property
    def pareto_json(self) -> Path:
        """RUN/pareto.json: the objectives and the front's rows."""
        return self.path / "pareto.json"

    @property
    def pareto_csv(self) -> Path:
        """RUN/pareto.csv: the front's rows as CSV."""
        return self.path / "pareto.csv"

    @property
    def pareto_png(self) -> Path:
        """RUN/pareto.png: all trials and the front."""
        return self.path / "pareto.png"

    @property
    def sqlite_url(self) -> str:
        """The SQLAlchemy URL of RUN/study.db (absolute path)."""
        return f"sqlite:///{self.study_db.resolve()}"

    @property
    def readable_sqlite_url(self) -> str:
        """`sqlite_url`, or where the folder cannot be written (a read-only mount, an archive, another
        user's run), a read-only form: SQLite's `immutable` when the write-ahead log is empty (a WAL
        database otherwise cannot be opened there at all, since even reading it creates its `-shm`
        file), `mode=ro` when it still holds trials (immutable would not read them)."""
        if os.access(self.path, os.W_OK) and (not self.study_db.exists() or os.access(self.study_db, os.W_OK)):
            return self.sqlite_url
        wal = self.study_db.with_name(self.study_db.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:  # trials not yet checkpointed: read them through the WAL
            return f"sqlite:///file:{self.study_db.resolve()}?mode=ro&uri=true"
        return f"sqlite:///file:{self.study_db.resolve()}?immutable=1&uri=true"

    def read_run_json(self) -> dict[str, Any]:
        """The parsed run.json. Raises RunError when the folder has none or it is unreadable."""
        try:
            return json.loads(self.run_json.read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path}: not a run folder (no run.json)") from None
        except (OSError, json.JSONDecodeError) as e:
            raise RunError(f"{self.run_json}: unreadable ({e})") from None


def open_run(path: str | Path) -> RunFolder:
    """A run folder that exists and holds run.json, or a RunError saying what is missing."""
    run = RunFolder(Path(path))
    if not run.path.is_dir():
        raise RunError(f"{run.path}: no such run folder")
    if not run.run_json.is_file():
        raise RunError(f"{run.path}: not a run folder (no run.json)")
    return run


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and rename (`nas.atomic`): never half a file, the umask's mode."""
    from nas.atomic import write_atomic as _write

    _write(path, text)


def write_json(path: Path, doc: Any) -> None:
    """`doc` as strict JSON (`nas.atomic.dumps_json`: NaN and infinities become null), written atomically."""
    from nas.atomic import dumps_json

    write_atomic(path, dumps_json(doc) + "\n")


def write_front(run: RunFolder, front: list[TrialRecord], objectives: tuple[Objective, ...]) -> None:
    """Write the front to RUN/pareto.json and RUN/pareto.csv (atomically)."""
    rows = [r.row() for r in front]
    write_json(run.pareto_json, {"objectives": [o.name for o in objectives], "front": rows})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({**row, "architecture": json.dumps(row["architecture"], sort_keys=True)})
    write_atomic(run.pareto_csv, buf.getvalue())


def study_for_run(run: RunFolder, storage: str | None = None) -> optuna.Study:
    """The study of a run folder: in `storage` if given, else where run.json says, else RUN/study.db.

    Opened through `nas.storage` (same lock timeout as the search). Raises RunError when the run
    folder has no study.db, StorageError / RunError when the study cannot be opened or found.
    """
    meta = run.read_run_json()
    url = storage or meta.get("storage_url") or run.sqlite_url
    if url == "sqlite" or (storage is None and not meta.get("storage_url")):
        url = run.readable_sqlite_url
    if url.startswith("sqlite") and not run.study_db.exists():
        raise RunError(f"{run.path}: no study.db in the run folder")
    study = load_study(url, meta.get("study_name"))
    check_made_here(study, str(run.path))
    return study


def check_made_here(study: optuna.Study, where: str) -> None:
    """Refuse a study that energy-nas did not make: no stored settings, or objectives that do not
    match its directions (a plain Optuna study copied into a run folder would be mixed into the front).
    Raises RunError naming `where` and the study."""
    settings = study.user_attrs.get(SETTINGS_ATTR)
    if not isinstance(settings, dict):
        raise RunError(
            f"{where}: study {study.study_name!r} was not made by energy-nas (no {SETTINGS_ATTR!r} "
            "attribute); open it with Optuna itself"
        )
    names = settings.get("objectives") or ["accuracy", "energy"]
    if not isinstance(names, list) or any(n not in OBJECTIVES for n in names) or len(names) != len(study.directions):
        raise RunError(
            f"{where}: study {study.study_name!r} has {len(study.directions)} objectives but its settings "
            f"name {str(names)[:80]}; it was not made by this version of energy-nas"
        )


def objectives_of(study: optuna.Study) -> tuple[Objective, ...]:
    """The study's objectives as stored with it (accuracy and energy for old studies)."""
    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    names = settings.get("objectives") or ["accuracy", "energy"]
    return tuple(OBJECTIVES[n] for n in names)


def trial_records(study: optuna.Study, objectives: tuple[Objective, ...], trials: Any = None) -> list[TrialRecord]:
    """Every complete trial of `study` as a TrialRecord (feasible = all constraints <= 0).

    `trials`: the study's trials already read (FrozenTrials or nas.storage.StoredTrials), if any.
    """
    complete = optuna.trial.TrialState.COMPLETE
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=(complete,))
    out = []
    for t in (t for t in trials if t.state == complete):
        a = t.user_attrs
        constraints = t.constraints.values()
        out.append(
            TrialRecord(
                number=t.number,
                values={o.name: float(v) for o, v in zip(objectives, t.values, strict=True)},
                accuracy=float(a.get("val_accuracy", t.values[0])),
                test_accuracy=a.get("test_accuracy"),
                energy_per_inference_j=float(a.get("energy_per_inference_j", t.values[1])),
                energy_method=str(a.get("energy_method", "unknown")),
                latency_s=a.get("latency_s"),
                params=int(a.get("params", 0)),
                macs=int(a.get("macs", 0)),
                architecture=a.get("architecture", {}),
                feasible=all(c <= 0 for c in constraints),
                attrs=a,
            )
        )
    return out
