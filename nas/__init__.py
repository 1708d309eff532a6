"""energy-nas: energy-aware neural architecture search.

The public API; everything the `nas` command does is callable from here.
"""

from nas.architecture import Architecture
from nas.config import HardwareProfile, SearchSpace, load_profile, load_space
from nas.data import Dataset, load_dataset
from nas.errors import ConfigError, ExportError, MeterUnavailable, NasError, RunError, StorageError
from nas.models import build_model, model_stats
from nas.pareto import TrialRecord, pareto_front
from nas.report import build_report
from nas.search import SearchSettings, run_search

__all__ = [
    "Architecture",
    "ConfigError",
    "Dataset",
    "ExportError",
    "HardwareProfile",
    "MeterUnavailable",
    "NasError",
    "RunError",
    "SearchSettings",
    "SearchSpace",
    "StorageError",
    "TrialRecord",
    "build_model",
    "build_report",
    "load_dataset",
    "load_profile",
    "load_space",
    "model_stats",
    "pareto_front",
    "run_search",
]
