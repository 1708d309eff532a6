"""Re-measuring one trial of a run: `nas measure RUN --trial N [--profile P] [--repeats R]`.

The trial's architecture is rebuilt from its `architecture` user attr in the deployed form the
search measured (pruned, at its precision), on the run's dataset, and measured with the run's
profile or another one. Its trained weights are used when the run stored them; otherwise the model
is rebuilt untrained with the trial's seed, exactly as the search measured it (before training: a
dense model's inference energy does not depend on its weights' values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import torch

from nas.artifacts import architecture_of, complete_trial, has_weights, load_trial_model
from nas.config import load_profile, parse_profile
from nas.data import load_dataset
from nas.deploy import CALIBRATION_SAMPLES, deploy, deployable, inference_batch, measure_on, rebuild
from nas.energy import EnergyRecord, create_meter
from nas.errors import ConfigError, RunError
from nas.hardware import HardwareProfile
from nas.models import architecture_label
from nas.runs import SETTINGS_ATTR, open_run, study_for_run


@dataclass(frozen=True)
class Remeasurement:
    """One trial measured again, with what it was measured on and against."""

    run: str
    trial: int
    arch: str
    architecture: dict[str, Any]
    precision: str
    profile: str
    meter: str
    weights: str  # "trained (stored with the run)" or "untrained rebuild (seed N)"
    record: EnergyRecord
    stored_energy_per_inference_j: float | None  # what the search recorded, for comparison
    stored_method: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, the energy record as its dict."""
        d = {k: v for k, v in self.__dict__.items() if k != "record"}
        d["record"] = self.record.to_dict()
        return d


def _profile_for(study: optuna.Study, name: str | None, repeats: int | None) -> HardwareProfile:
    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    if name is None:
        doc = study.user_attrs.get("nas.profile")
        if doc is None:
            raise RunError(f"study {study.study_name!r} stores no hardware profile; pass --profile")
        profile = parse_profile(doc, f"study {study.study_name!r} (stored profile)", settings.get("profile", "profile"))
    else:
        profile = load_profile(name)
    if repeats is not None:
        if repeats < 1:
            raise ConfigError(f"--repeats: expected an integer >= 1, got {repeats}")
        profile = replace(profile, protocol=replace(profile.protocol, repeats=repeats))
    return profile


def measure_trial(
    run: str | Path,
    trial: int,
    profile: str | None = None,
    repeats: int | None = None,
    allow_estimate: bool = False,
    storage: str | None = None,
) -> Remeasurement:
    """Measure trial `trial` of `run` again and return the full record."""
    folder = open_run(run)
    study = study_for_run(folder, storage)
    frozen = complete_trial(study, trial)
    arch = architecture_of(frozen)
    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    prof = _profile_for(study, profile, repeats)
    data = load_dataset(settings.get("dataset", "digits"), int(settings.get("split_seed", 0)))
    precision = str(arch.params.get("precision", prof.precision))
    if precision not in prof.precisions:
        raise ConfigError(
            f"trial {trial} runs at {precision}, which profile {prof.name!r} does not list "
            f"(its device.precisions: {', '.join(prof.precisions)})"
        )
    meter = create_meter(prof, allow_estimate=allow_estimate)
    try:
        why = deployable(precision, prof, meter.torch_device)
        if why:
            raise ConfigError(f"trial {trial}: {why}")
        if has_weights(frozen):
            model = load_trial_model(folder, trial, storage).model
            weights = "trained (stored with the run)"
        else:
            seed = int(frozen.user_attrs.get("seed", 0))
            torch.manual_seed(seed)
            model = rebuild(arch, data.input_shape, data.num_classes)
            weights = f"untrained rebuild (seed {seed})"
        deployment = deploy(
            model,
            precision,
            data.x_train[:CALIBRATION_SAMPLES],
            meter.torch_device,
            input_shape=data.input_shape,
            runtime=prof.runtime,
            example=inference_batch(data, prof.batch_size, torch.device("cpu")),
            run_in_runtime=meter.runs_workload,
        )
        record = measure_on(meter, deployment, data, prof)
    finally:
        meter.close()
    stored = frozen.user_attrs.get("energy_per_inference_j")
    return Remeasurement(
        run=str(folder.path),
        trial=trial,
        arch=architecture_label(arch),
        architecture=arch.to_dict(),
        precision=precision,
        profile=prof.name,
        meter=meter.name,
        weights=weights,
        record=record,
        stored_energy_per_inference_j=float(stored) if stored is not None else None,
        stored_method=frozen.user_attrs.get("energy_method"),
    )


def format_record(record: EnergyRecord) -> list[str]:
    """Every field of a record, one per line; nested ones as compact JSON."""
    lines = []
    for key, value in record.to_dict().items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True, default=str)
        lines.append(f"  {key}: {value}")
    return lines


def format_remeasurement(m: Remeasurement) -> str:
    """What `nas measure` prints: the trial, profile and meter, energy per inference and its record."""
    r = m.record
    label = "ESTIMATED, not measured" if not r.measured else "measured"
    head = [
        f"trial {m.trial} of {m.run}: {m.arch} at {m.precision}, batch {r.batch_size} ({m.weights})",
        f"profile {m.profile}, meter {m.meter}: {r.method} ({label})",
        f"energy per inference: {r.energy_per_inference_j:.6g} J ({r.objective_uses})",
    ]
    if m.stored_energy_per_inference_j is not None:
        head.append(f"the search recorded: {m.stored_energy_per_inference_j:.6g} J ({m.stored_method})")
    return "\n".join(head + ["record:"] + format_record(r))


__all__ = ["Remeasurement", "format_record", "format_remeasurement", "measure_trial"]
