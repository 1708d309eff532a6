"""Trained weights of every complete trial, kept with Optuna's artifact store in RUN/artifacts/.

Each trial's state dict is written with `torch.save` (plain tensors only, so it loads with
`torch.load(weights_only=True)`) and uploaded with `optuna.artifacts.upload_artifact`: Optuna
records the artifact in the trial's system attrs, and we add the user attr `nas.weights` with the
artifact id, file name and SHA-256, so export and rerank need no retraining. optuna-dashboard shows
the files with `--artifact-dir RUN/artifacts`.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from torch import nn

from nas.architecture import Architecture
from nas.deploy import rebuild
from nas.errors import RunError
from nas.runs import RunFolder, open_run, study_for_run

WEIGHTS_ATTR = "nas.weights"
ARTIFACTS_DIR = "artifacts"
WEIGHTS_FORMAT = "torch-state-dict"


def artifact_dir(run: RunFolder) -> Path:
    """RUN/artifacts, where the run's trained weights are kept."""
    return run.path / ARTIFACTS_DIR


def artifact_store(directory: Path) -> FileSystemArtifactStore:
    """Optuna's file-system artifact store in `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(base_path=directory)


def state_dict_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as contiguous CPU tensors (what we store and export)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_trial_weights(trial: optuna.Trial, model: nn.Module, directory: Path) -> dict[str, Any]:
    """Store `model`'s weights as an artifact of `trial`; returns what the trial's `nas.weights`
    user attribute must hold (the caller writes it with the trial's other attributes, in one write)."""
    store = artifact_store(directory)
    filename = f"trial-{trial.number}-weights.pt"
    with tempfile.TemporaryDirectory(dir=directory, prefix=".upload-") as tmp:
        path = Path(tmp) / filename
        torch.save(state_dict_cpu(model), path)
        digest, size = sha256_file(path), path.stat().st_size
        artifact_id = upload_artifact(
            artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype="application/octet-stream"
        )
    return {"artifact_id": artifact_id, "filename": filename, "sha256": digest, "bytes": size, "format": WEIGHTS_FORMAT}


def has_weights(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's trained weights were stored (its `nas.weights` attribute)."""
    return isinstance(trial.user_attrs.get(WEIGHTS_ATTR), dict)


def load_weights(run: RunFolder, trial: optuna.trial.FrozenTrial) -> dict[str, torch.Tensor]:
    """The stored state dict of `trial`, checked against its SHA-256, loaded with weights_only=True."""
    meta = trial.user_attrs.get(WEIGHTS_ATTR)
    if not isinstance(meta, dict) and trial.user_attrs.get("over_budget"):
        raise RunError(
            f"{run.path}: trial {trial.number} was over the search's budget and never trained; "
            f"export it with --retrain-epochs E"
        )
    if not isinstance(meta, dict):
        raise RunError(
            f"{run.path}: trial {trial.number} has no stored weights (searched without an artifact "
            f"folder, e.g. by a worker on another machine); export it with --retrain-epochs E"
        )
    store = FileSystemArtifactStore(base_path=artifact_dir(run))
    try:
        with store.open_reader(meta["artifact_id"]) as f:
            blob = f.read()
    except ArtifactNotFound:
        raise RunError(
            f"{artifact_dir(run)}: weights of trial {trial.number} (artifact {meta['artifact_id']}) are missing"
        ) from None
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise RunError(
            f"{artifact_dir(run)}: weights of trial {trial.number} do not match their SHA-256 (corrupt file)"
        )
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class TrialModel:
    """A trial's model rebuilt from its architecture, with its trained weights loaded (eval mode)."""

    number: int
    architecture: Architecture
    model: nn.Module
    input_shape: tuple[int, ...]
    num_classes: int
    weights: dict[str, Any]  # the `nas.weights` attr: artifact id, file name, SHA-256


def complete_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """The complete trial `number` of `study`, or a RunError saying what it is instead."""
    trials = study.get_trials(deepcopy=False)
    match = [t for t in trials if t.number == number]
    if not match:
        raise RunError(f"study {study.study_name!r} has no trial {number} (trials 0..{len(trials) - 1})")
    if match[0].state != optuna.trial.TrialState.COMPLETE:
        raise RunError(f"trial {number} of study {study.study_name!r} is {match[0].state.name}, not COMPLETE")
    return match[0]


def model_shape(run: RunFolder) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of the run's dataset, from run.json."""
    ds = run.read_run_json().get("dataset") or {}
    try:
        return tuple(int(d) for d in ds["input_shape"]), int(ds["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise RunError(f"{run.run_json}: no dataset input_shape/num_classes recorded") from None


def architecture_of(trial: optuna.trial.FrozenTrial) -> Architecture:
    """The architecture a trial sampled (its `architecture` user attribute); RunError if unreadable."""
    return Architecture.from_dict(trial.user_attrs.get("architecture"), f"trial {trial.number}")


def load_trial_model(run: str | Path | RunFolder, trial_number: int, storage: str | None = None) -> TrialModel:
    """Rebuild trial `trial_number`'s model and load its stored weights."""
    run = run if isinstance(run, RunFolder) else open_run(run)
    trial = complete_trial(study_for_run(run, storage), trial_number)
    arch = architecture_of(trial)
    input_shape, num_classes = model_shape(run)
    model = rebuild(arch, input_shape, num_classes)
    state = load_weights(run, trial)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RunError(
            f"trial {trial_number}: stored weights do not fit its architecture ({str(e).splitlines()[0]})"
        ) from None
    return TrialModel(trial_number, arch, model.eval(), input_shape, num_classes, dict(trial.user_attrs[WEIGHTS_ATTR]))
