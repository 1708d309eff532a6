"""The Optuna multi-objective search, one module per job (imports point down this list):

- `settings`: SearchSettings and the sampler registry (SAMPLERS)
- `context`: SearchContext, what every trial shares, from settings or from a stored study
- `objective`: the trial objectives (train and measure one candidate; replay from a table)
- `stopping`: stop on signals, at the target, on repeated failures; `run_trials`
- `study`: create or resume the study, targets, per-worker seeds, recovery of lost trials
- `loop`: `optimize` (one process's loop, progress) and `finish` (the run folder's results)
- `run`: `run_search`, the library call behind `nas search` (uses `nas.workers` for --workers)
- `bench`: `build_table`, every architecture of a small space evaluated once

`nas.workers` imports `loop`, `context` and `study`, never `run`. Names below are imported on first
use, so importing one submodule never imports the others (nor `nas.workers`).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FINGERPRINT": "nas.search.settings",
    "NOT_REPRODUCED": "nas.search.settings",
    "SAMPLERS": "nas.search.settings",
    "SearchSettings": "nas.search.settings",
    "make_sampler": "nas.search.settings",
    "search_arguments": "nas.search.settings",
    "WorkerSettings": "nas.search.settings",
    "SearchContext": "nas.search.context",
    "context_from_study": "nas.search.context",
    "prepare": "nas.search.context",
    "TableObjective": "nas.search.objective",
    "TrialObjective": "nas.search.objective",
    "quiet_optuna": "nas.search.objective",
    "SearchResult": "nas.search.loop",
    "finish": "nas.search.loop",
    "optimize": "nas.search.loop",
    "run_search": "nas.search.run",
    "format_search": "nas.search.run",
    "build_table": "nas.search.bench",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import `name` from the submodule that defines it, on first use (PEP 562)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nas.search' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
