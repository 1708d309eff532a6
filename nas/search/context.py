"""What every trial of a search shares, resolved once: `SearchContext`, from settings or from a study."""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import torch

from nas.config import (
    PROFILES_DIR,
    parse_profile,
    parse_space,
    read_yaml,
    resolve_named,
    resolve_space,
)
from nas.data import Dataset, load_dataset
from nas.deploy import deployable
from nas.energy import Meter, create_meter
from nas.energy.estimate import EstimateMeter
from nas.errors import ConfigError, RunError
from nas.hardware import HardwareProfile, runtime_precisions
from nas.models.registry import get_family
from nas.objectives import Objective, parse_objectives
from nas.runs import SETTINGS_ATTR
from nas.search.settings import SearchSettings
from nas.searchspace import SearchSpace
from nas.storage import redact_url
from nas.tabular import Table, check_replayable, imported_dataset, load_table


@dataclass
class SearchContext:
    """What every trial of a search shares, resolved once.

    `space_doc` / `profile_doc` are the YAML documents as read (stored with the study, so workers
    rebuild the same context); `table` is set in replay mode; `artifact_dir` is where trained weights
    are kept (RUN/artifacts), None when they are not kept.
    """

    settings: SearchSettings
    space: SearchSpace
    space_doc: Any
    profile: HardwareProfile
    profile_doc: Any
    data: Dataset
    objectives: tuple[Objective, ...]
    meter: Meter
    host: str = field(default_factory=socket.gethostname)
    table: Table | None = None
    artifact_dir: Path | None = None
    train_device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where candidates train
    _training_estimate: Meter | None = None
    progress: Any = None  # the search's progress bar (nas.search.loop.Progress), told each trial's epochs

    @property
    def device(self) -> torch.device:
        """The device the meter measures (where float networks run for measuring)."""
        return torch.device(self.meter.torch_device)

    def training_meter(self) -> Meter:
        """The meter of training windows: the measuring meter when training runs on its device;
        else the profile's estimate (labelled `estimated:`), since a sensor on another device does
        not see the training."""
        if self.train_device.type == self.device.type or not self.meter.runs_workload:
            return self.meter
        if self._training_estimate is None:
            self._training_estimate = EstimateMeter(self.profile)
        return self._training_estimate

    def resolved(self) -> dict[str, Any]:
        """The settings as stored with the study and in run.json (no credentials)."""
        s = asdict(self.settings)
        s["storage"] = redact_url(s["storage"]) if s["storage"] else None
        s["objectives"] = [o.name for o in self.objectives]
        s["space"] = self.space.name
        s["profile"] = self.profile.name
        s["meter"] = self.meter.name
        s["runtime"] = self.profile.runtime.to_dict()
        s.pop("progress", None)
        return s


def prepare(settings: SearchSettings) -> SearchContext:
    """Load and check everything a search needs before any storage is touched (ConfigError if bad)."""
    settings.validate()
    if settings.table:
        return _table_context(settings)
    space_path = resolve_space(settings.space)
    space_doc = read_yaml(space_path)
    space = parse_space(space_doc, str(space_path), space_path.stem)
    profile_path = resolve_named(settings.profile, PROFILES_DIR, "hardware profile")
    profile_doc = read_yaml(profile_path)
    profile = parse_profile(profile_doc, str(profile_path), profile_path.stem)
    return _context(settings, space, space_doc, profile, profile_doc)


def _table_context(settings: SearchSettings) -> SearchContext:
    """Space, profile, dataset and training settings come from the table being replayed."""
    table = load_table(settings.table)
    t = table.settings
    settings = replace(
        settings,
        space=t["space"],
        profile=t["profile"],
        dataset=t["dataset"],
        epochs=t["epochs"],
        batch_size=t["batch_size"],
        lr=t["lr"],
        split_seed=t["split_seed"],
        allow_estimate=t["allow_estimate"],
        objectives=tuple(o for o in settings.objectives if o in t["objectives"]) or tuple(t["objectives"]),
    )
    space = parse_space(table.space_doc, f"{settings.table} (table space)", t["space"])
    profile = parse_profile(table.profile_doc, f"{settings.table} (table profile)", t["profile"])
    # an imported table (nas bench import) carries its own figures: no data of ours is loaded
    data = imported_dataset(t) if t.get("imported") else None
    check_replayable(
        table, space, str(settings.table), settings.sampler, settings.energy_budget_j, settings.latency_budget_s
    )
    ctx = _context(settings, space, table.space_doc, profile, table.profile_doc, data)
    ctx.table = table
    return ctx


def _context(
    settings: SearchSettings,
    space: SearchSpace,
    space_doc: Any,
    profile: HardwareProfile,
    profile_doc: Any,
    data: Dataset | None = None,
) -> SearchContext:
    objectives = parse_objectives(settings.objectives)
    train_device = resolve_train_device(settings.train_device)
    data = data or load_dataset(settings.dataset, settings.split_seed)
    if settings.measure_remote:
        # `nas worker --measure-only` measures on the target; here only training energy, estimated
        meter: Meter = EstimateMeter(profile)
    else:
        meter = create_meter(profile, allow_estimate=settings.allow_estimate)
    # a remote measurer measures the profile's own device, whatever this machine's meter is
    measured_on = ("cuda" if profile.device_kind == "gpu" else "cpu") if settings.measure_remote else meter.torch_device
    check_precisions(space, profile, meter, measured_on)
    return SearchContext(
        settings, space, space_doc, profile, profile_doc, data, objectives, meter, train_device=train_device
    )


def resolve_train_device(name: str) -> torch.device:
    """The torch device `--train-device` names on this machine: `auto` is CUDA where
    torch.cuda.is_available(), else the CPU. ConfigError (one line) for `cuda` without a usable GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--train-device cuda: no CUDA GPU is usable here (torch {torch.__version__}, "
            f"torch.cuda.is_available() is False); use --train-device cpu or auto"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_precisions(space: SearchSpace, profile: HardwareProfile, meter: Meter, device: str | None = None) -> None:
    """Every precision the space can sample must run on the profile's device, measured as `device` (default:
    the meter's), and in the profile's runtime, and be one its family deploys in (ConfigError naming the
    space file and field if not)."""
    runs = runtime_precisions(profile.runtime.name)
    for alt in space.alternatives():
        declared = next((p.choices for p in alt.params if p.name == "precision"), None)
        family = get_family(alt.family)
        for precision in declared or (profile.precision,):
            if declared is None and precision not in family.precisions:
                raise ConfigError(
                    f"{space.source}: family {alt.family!r} does not deploy in profile {profile.name!r}'s "
                    f"precision {precision!r}; declare params.precision with one of {', '.join(family.precisions)}"
                )
            if precision not in runs:
                raise ConfigError(
                    f"{space.source}: field 'params.precision': {precision!r} does not run in runtime "
                    f"{profile.runtime.name!r} of profile {profile.name!r} (it runs {', '.join(runs)})"
                )
            if precision not in profile.precisions:
                raise ConfigError(
                    f"{space.source}: field 'params.precision': {precision!r} does not run on profile "
                    f"{profile.name!r} (its device.precisions: {', '.join(profile.precisions)})"
                )
            why = deployable(precision, profile, device or meter.torch_device)
            if why:
                raise ConfigError(
                    f"{space.source}: field 'params.precision': {why} (remove {precision} or use a CPU profile)"
                )


def context_from_study(study: optuna.Study, **overrides: Any) -> SearchContext:
    """Rebuild a search's context from what the study stores (for workers joining it, variants).

    `overrides` replace SearchSettings fields. Raises RunError for a study energy-nas did not create.
    """
    attrs = study.user_attrs
    if SETTINGS_ATTR not in attrs:
        raise RunError(f"study {study.study_name!r} was not created by energy-nas (no {SETTINGS_ATTR})")
    stored = dict(attrs[SETTINGS_ATTR])
    stored.pop("meter", None)
    stored["objectives"] = tuple(stored["objectives"])
    known = SearchSettings.__dataclass_fields__  # a newer version may store more
    settings = replace(SearchSettings(**{k: v for k, v in stored.items() if k in known}), **overrides)
    where = f"study {study.study_name!r}"
    space = parse_space(attrs["nas.space"], f"{where} (stored space)", stored["space"])
    profile = parse_profile(attrs["nas.profile"], f"{where} (stored profile)", stored["profile"])
    # a replayed study's workers replay too (they trained the table's space for real before)
    table = load_table(settings.table) if settings.table else None
    data = imported_dataset(table.settings) if table is not None and table.settings.get("imported") else None
    ctx = _context(settings, space, attrs["nas.space"], profile, attrs["nas.profile"], data)
    ctx.table = table
    return ctx


__all__ = ["SearchContext", "check_precisions", "context_from_study", "prepare", "resolve_train_device"]
