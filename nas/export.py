"""Export one trial of a run: architecture, weights, TorchScript, ONNX and a report card.

`export_run(RUN, OUT, trial=N | pick=RULE)` writes into OUT (and nowhere else):

  architecture.yaml / .json   the genotype plus input shape and classes; `load_exported_model(OUT)`
                              rebuilds the model from it
  weights.pt                  the state dict (plain tensors: torch.load(..., weights_only=True))
  weights.safetensors         the same tensors as safetensors (with the `export` extra installed)
  model.torchscript.pt        torch.jit.trace of the float model (torch.jit.load)
  model.onnx                  torch.onnx.export, dynamic batch axis; input `input`, output `logits`
  report_card.json / .md      accuracy, energy per inference with its full record, latency, params,
                              MACs, profile, dataset, seeds, checks, file hashes

At export time the TorchScript and ONNX copies (the latter in ONNX Runtime) and the model rebuilt
from the written architecture and weights are run on real test inputs against the PyTorch model; a
difference above 1e-4 fails the export. Weights come from the run's artifact store, or, with
`retrain_epochs`, from training the architecture anew on the training and validation splits.
The exported model is the float32 model; a trial searched at bf16/fp16/int8 says so in its card.

The formats are a table (`nas.exporters.EXPORTERS`); the report card is written last
(`nas.report_card`), describing the files and checks of every format.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.architecture import Architecture
from nas.artifacts import load_trial_model
from nas.atomic import atomic_path, dumps_json, write_atomic
from nas.compress import prune
from nas.data import Dataset, load_dataset
from nas.deploy import CALIBRATION_SAMPLES, deploy, prune_ratio_of
from nas.errors import ConfigError, ExportError
from nas.exporters import (
    EXPORTERS,
    TOLERANCE,
    ExportCheck,
    ExportedArchitecture,
    ExportJob,
    export_files,
    load_architecture,
    load_exported_model,
    need_export_extra,
)
from nas.models import build_model
from nas.report import Report, build_report
from nas.report_card import card_markdown, report_card
from nas.selection import Selection
from nas.train import TrainConfig, accuracy, train

__all__ = [
    "CHECK_INPUTS",
    "TOLERANCE",
    "ExportCheck",
    "ExportResult",
    "ExportedArchitecture",
    "export_run",
    "format_export",
    "load_architecture",
    "load_exported_model",
    "prepare_out_dir",
]

CHECK_INPUTS = 32  # test inputs each exported copy is run on
CARD_FILES = {"card_json": "report_card.json", "card_md": "report_card.md"}


# ------------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class ExportResult:
    """What `export_run` wrote: the folder, the trial it chose and why, every file by key (see
    `nas.exporters.EXPORTERS` and `CARD_FILES`), the checks of the exported copies, the card."""

    out_dir: Path
    selection: Selection
    files: dict[str, Path]
    checks: tuple[ExportCheck, ...]
    card: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what `nas export --json` prints)."""
        return {
            "out_dir": str(self.out_dir),
            "trial": self.selection.record.number,
            "selection": self.selection.to_dict(),
            "files": {k: str(v) for k, v in self.files.items()},
            "checks": [c.to_dict() for c in self.checks],
            "report_card": self.card,
        }


@dataclass(frozen=True)
class _Weights:
    """The model to export and where its weights came from."""

    model: nn.Module
    weights_from: str
    precision: str  # the precision the trial was searched (and measured) at
    retrained: dict[str, Any] | None  # how it was retrained, or None


# ------------------------------------------------------------------------------------ the folder
def _paths(out: Path) -> dict[str, Path]:
    """Every export file's path in `out`, refusing any that would land outside `out`."""
    paths = {}
    for key, name in {**export_files(), **CARD_FILES}.items():
        path = out / name
        if not path.resolve().is_relative_to(out.resolve()):
            raise ExportError(f"{path}: resolves outside the export folder {out} (a symbolic link?); refusing to write")
        paths[key] = path
    return paths


def prepare_out_dir(out: Path, force: bool) -> None:
    """Create `out`; refuse a non-empty one unless `force`, which replaces our files only.

    Raises ExportError for a path that is not a folder, a non-empty folder without `force`, or
    an export file that resolves outside `out`.
    """
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ExportError(
                f"{out}: folder exists and is not empty; pass --force to overwrite the export files in it"
            )
        for path in _paths(out).values():
            if path.is_file():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


# ------------------------------------------------------------------------------------ the weights
def _retrain(
    spec: ExportedArchitecture, data: Dataset, settings: dict[str, Any], seed: int, epochs: int
) -> tuple[nn.Module, dict[str, Any]]:
    """Train `spec` anew on train + validation for `epochs`, as the search trains (prune, fine-tune)."""
    both = replace(
        data,
        x_train=torch.cat([data.x_train, data.x_val]),
        y_train=torch.cat([data.y_train, data.y_val]),
    )
    arch = spec.architecture
    ratio = prune_ratio_of(arch)
    finetune = max(1, epochs // 3) if ratio and epochs >= 2 else 0  # the search's recipe
    batch, lr = int(settings.get("batch_size", 64)), float(settings.get("lr", 3e-3))
    torch.manual_seed(seed)
    model = build_model(arch, spec.input_shape, spec.num_classes)
    first = train(model, both, TrainConfig(epochs - finetune, batch, lr, seed))
    duration, done = first.duration_s, first.epochs_done
    if ratio:
        model = prune(model, arch.family, ratio)
        if finetune:
            tuned = train(model, both, TrainConfig(finetune, batch, lr, seed + 1))
            duration, done = duration + tuned.duration_s, done + tuned.epochs_done
    return model.eval(), {
        "epochs": done,
        "trained_on": "train + validation",
        "samples": len(both.y_train),
        "duration_s": duration,
        "seed": seed,
        "batch_size": batch,
        "lr": lr,
    }


def _weights(
    report: Report, spec: ExportedArchitecture, data: Dataset, retrain_epochs: int | None, storage: str | None
) -> _Weights:
    """The trial's stored weights, or (with `retrain_epochs`) weights trained anew."""
    rec = report.pick.record
    precision = str(rec.attrs.get("precision", spec.architecture.params.get("precision", "fp32")))
    if retrain_epochs is None:
        model = load_trial_model(report.run, rec.number, storage).model.cpu().eval()
        return _Weights(model, f"the run's artifact store (weights of trial {rec.number} as searched)", precision, None)
    seed = int(rec.attrs.get("seed", rec.number))
    model, retrained = _retrain(spec, data, report.settings, seed, retrain_epochs)
    model = model.cpu().eval()
    deployed = deploy(model, precision, data.x_train[:CALIBRATION_SAMPLES], "cpu", input_shape=spec.input_shape).model
    retrained["test_accuracy"] = accuracy(deployed, data.x_test, data.y_test)
    retrained["precision"] = precision
    return _Weights(model, f"retrained for {retrain_epochs} epochs on train + validation", precision, retrained)


# ------------------------------------------------------------------------------------ export
def write_formats(job: ExportJob) -> tuple[dict[str, Path], list[ExportCheck]]:
    """Run every exporter of the table on `job`, in order: the files written (by key) and the
    checks of the copies that have one. An optional format whose library is missing is skipped."""
    files: dict[str, Path] = {}
    checks: list[ExportCheck] = []
    for exporter in EXPORTERS.values():
        if exporter.optional and not exporter.available():
            continue
        # each file whole or not at all, with the umask's mode (nas.atomic): written under a
        # temporary name beside its target, renamed when the exporter returns
        with contextlib.ExitStack() as stack:
            temporary = {key: stack.enter_context(atomic_path(job.paths[key])) for key in exporter.files}
            exporter.write(dataclasses.replace(job, paths={**job.paths, **temporary}))
        files.update({key: job.paths[key] for key in exporter.files})
        if exporter.check is not None:
            checks.append(exporter.check(job))
    return files, checks


def export_run(
    run_path: str | Path,
    out_dir: str | Path,
    *,
    trial: int | None = None,
    pick: str | None = None,
    retrain_epochs: int | None = None,
    force: bool = False,
    storage: str | None = None,
) -> ExportResult:
    """Export the trial chosen by `trial` or `pick` (exactly one) from the run at `run_path`
    into the folder `out_dir`, in every format of `nas.exporters.EXPORTERS`, then its report card.

    Raises ConfigError for bad arguments, RunError for a missing run or trial, and ExportError
    for a folder it may not write, a missing export library, or an exported copy whose logits
    differ from PyTorch's by more than TOLERANCE (the files are then kept for inspection).
    """
    if (trial is None) == (pick is None):
        raise ConfigError("export: give exactly one of --trial N or --pick RULE")
    if retrain_epochs is not None and retrain_epochs < 1:
        raise ConfigError(f"--retrain-epochs: expected an integer >= 1, got {retrain_epochs}")
    need_export_extra()
    out = Path(out_dir)
    report = build_report(run_path, storage, pick=f"trial:{trial}" if trial is not None else pick)
    sel = report.pick
    assert sel is not None  # build_report raises when the pick matches nothing
    if out.resolve() == report.run.path.resolve() or report.run.path.resolve().is_relative_to(out.resolve()):
        raise ExportError(f"{out}: would overwrite the run folder; choose another -o")
    prepare_out_dir(out, force)

    rec, settings = sel.record, report.settings
    data = load_dataset(str(settings.get("dataset", "digits")), int(settings.get("split_seed", 0)))
    arch = Architecture.from_dict(rec.architecture, f"trial {rec.number}")
    spec = ExportedArchitecture(arch, tuple(data.input_shape), int(data.num_classes), data.preprocessing)
    weights = _weights(report, spec, data, retrain_epochs, storage)
    x = data.x_test[:CHECK_INPUTS].contiguous()
    with torch.no_grad():
        reference = weights.model(x)
    job = ExportJob(
        weights.model,
        spec,
        _paths(out),
        x,
        reference,
        header=f"trial {rec.number} of run {report.run.path} ({rec.attrs.get('arch', '')})",
        metadata={"trial": str(rec.number), "format": spec.to_dict()["format"]},
    )
    files, checks = write_formats(job)

    with torch.no_grad():
        exported_acc = accuracy(weights.model, data.x_test, data.y_test)
    card = report_card(
        report, sel, spec, checks, files, weights.weights_from, weights.retrained, exported_acc, weights.precision
    )
    files["card_json"], files["card_md"] = job.paths["card_json"], job.paths["card_md"]
    write_atomic(files["card_json"], dumps_json(card) + "\n")
    write_atomic(files["card_md"], card_markdown(card))
    failed = [c for c in checks if not c.passed]
    if failed:
        worst = max(failed, key=lambda c: c.max_abs_diff)
        raise ExportError(
            f"{out}: {worst.name} differs from PyTorch by {worst.max_abs_diff:.3g} > {TOLERANCE:g} "
            f"(files kept for inspection; see report_card.json)"
        )
    return ExportResult(out, sel, files, tuple(checks), card)


def format_export(result: ExportResult) -> str:
    """What the CLI prints after an export."""
    sel = result.selection
    lines = [f"exported trial #{sel.record.number} to {result.out_dir}/ ({sel.reason})"]
    for c in result.checks:
        lines.append(
            f"  check {c.name}: max abs difference {c.max_abs_diff:.3g} on {c.inputs} test inputs "
            f"({'ok' if c.passed else 'FAILED'}, tolerance {TOLERANCE:g})"
        )
    lines.append("  files: " + ", ".join(p.name for p in result.files.values()))
    retrained = result.card.get("accuracy", {}).get("retrained")
    if retrained:
        lines.append(
            f"  retrained {retrained['epochs']} epochs on {retrained['trained_on']}: "
            f"test accuracy {retrained['test_accuracy']:.4f} (searched: {sel.record.test_accuracy})"
        )
    return "\n".join(lines)
