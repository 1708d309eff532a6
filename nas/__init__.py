"""energy-nas: energy-aware neural architecture search.

The public API; everything the `nas` command does is callable from here. Names are imported on
first use, so `import nas` (and `nas --help`) stays fast without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Architecture": "nas.architecture",
    "calibrate_profile": "nas.calibrate",
    "calibrate_from_csv": "nas.calibrate",
    "estimate_networks": "nas.measurements",
    "HardwareProfile": "nas.hardware",
    "SearchSpace": "nas.searchspace",
    "load_profile": "nas.config",
    "load_space": "nas.config",
    "Dataset": "nas.data",
    "load_dataset": "nas.data",
    "EnergyRecord": "nas.energy",
    "estimate_module": "nas.energy.estimate",
    "create_meter": "nas.energy",
    "ConfigError": "nas.errors",
    "ExportError": "nas.errors",
    "MeterUnavailable": "nas.errors",
    "NasError": "nas.errors",
    "RunError": "nas.errors",
    "StorageError": "nas.errors",
    "export_run": "nas.export",
    "write_html_report": "nas.html_report",
    "measure_trial": "nas.measure",
    "build_model": "nas.models",
    "model_stats": "nas.models",
    "TrialRecord": "nas.pareto",
    "pareto_front": "nas.pareto",
    "build_report": "nas.report",
    "rerank": "nas.reranking",
    "SearchSettings": "nas.search.settings",
    "run_search": "nas.search.run",
    "select": "nas.selection",
    "build_table": "nas.search.bench",
    "compare_variants": "nas.variants",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
