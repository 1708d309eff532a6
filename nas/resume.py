"""Resuming a run from its folder alone: `nas search --out RUN` continues RUN with its own settings.

A run folder's run.json stores the settings the search was started with (`arguments`: the
values as given, with file paths made absolute; older runs: the resolved `settings`). When a
search's --out is an existing run, every setting the user did not give on this command line is
taken from there, so resuming needs only `--out` (and `--trials` to raise the target). Settings
that *are* given and differ are still refused by the study's fingerprint check, as before.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from nas.errors import RunError

# what a resumed search takes from the run when not given; never out, storage, progress, workers
RESTORED = (
    "space",
    "profile",
    "dataset",
    "trials",
    "epochs",
    "sampler",
    "objectives",
    "seed",
    "study_name",
    "threads",
    "batch_size",
    "lr",
    "split_seed",
    "allow_estimate",
    "energy_budget_j",
    "latency_budget_s",
    "early_stop",
    "early_stop_k",
    "table",
)


def absolute_arguments(settings: Any) -> dict[str, Any]:
    """The settings as given, for run.json's `arguments`: paths that exist made absolute.

    `space`, `profile` and `table` that name existing files, and `npz:PATH` datasets, are stored
    with absolute paths, so the run resumes from any working folder. Credentials are not stored
    (`storage` is left out; run.json records its redacted form separately).
    """
    doc = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name in RESTORED}
    for key in ("space", "profile", "table"):
        value = doc.get(key)
        if isinstance(value, str) and Path(value).is_file():
            doc[key] = str(Path(value).resolve())
    dataset = doc.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("npz:") and Path(dataset[4:]).is_file():
        doc["dataset"] = "npz:" + str(Path(dataset[4:]).resolve())
    doc["objectives"] = list(doc.get("objectives") or ())
    return doc


def resume_settings(settings: Any, given: set[str] | frozenset[str]) -> Any:
    """`settings` with every RESTORED field not in `given` taken from the run folder `settings.out`.

    Returns `settings` unchanged when `out` is not a run folder (no run.json). Raises RunError
    when run.json cannot be read, or when the run keeps its study in a server database and no
    `--storage` was given (run.json stores only the redacted URL).
    """
    run_json = Path(settings.out) / "run.json"
    if not run_json.is_file():
        return settings
    try:
        doc = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RunError(
            f"{run_json}: cannot read ({e.__class__.__name__}: {(str(e).splitlines() or [''])[0][:100]})"
        ) from None
    if not isinstance(doc, dict):
        raise RunError(f"{run_json}: not a run.json (expected a JSON object)")
    stored = doc.get("arguments") or doc.get("settings") or {}
    if not isinstance(stored, dict):
        raise RunError(f"{run_json}: field 'settings': expected an object")
    if doc.get("storage_url") and "storage" not in given and not settings.storage:
        raise RunError(
            f"{settings.out}: this run keeps its study in {doc['storage_url']}; give --storage URL (or set NAS_STORAGE)"
        )
    changes: dict[str, Any] = {}
    for key in RESTORED:
        if (
            key in given
            or key not in stored
            or stored[key] is None
            and key not in ("energy_budget_j", "latency_budget_s", "table")
        ):
            continue
        value = stored[key]
        changes[key] = tuple(value) if key == "objectives" else value
    if "study_name" not in given and "study_name" not in changes and doc.get("study_name"):
        changes["study_name"] = doc["study_name"]
    return replace(settings, **changes)
