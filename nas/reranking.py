"""Re-rank a finished search for another device: re-measure its front (or every trial) there.

Accuracy does not change with the device (the same trained model runs), energy and latency do, so
one search can serve several deployment targets. Each candidate is rebuilt in its deployed form
(pruned, at its searched precision) with its stored weights, measured with the other profile's
meter (or, with `allow_estimate`, that profile's analytical estimate), and the front is recomputed
over the study's objectives. The result is written to RUN/rerank-PROFILE.json beside the old front.

Re-measuring only the front members ranks the old front for the new device; with `all_trials`
every complete trial is re-measured, which can bring trials dominated on the search's device onto
the new front.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nas.architecture import Architecture
from nas.artifacts import complete_trial, has_weights, load_weights, model_shape
from nas.config import load_profile
from nas.data import load_dataset
from nas.deploy import CALIBRATION_SAMPLES, deploy, deployable, inference_batch, measure_on, rebuild
from nas.energy import EnergyRecord, create_meter
from nas.hardware import HardwareProfile
from nas.pareto import TrialRecord, pareto_front
from nas.report import _si, build_report
from nas.runs import RunFolder, study_for_run, write_json


@dataclass(frozen=True)
class Remeasured:
    """One trial measured on the other profile."""

    old: TrialRecord
    new: TrialRecord
    record: EnergyRecord
    weights: str  # "trained (stored artifact)" or why not

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the trial, its old and new energy per inference in J and how each was obtained."""
        return {
            "trial": self.old.number,
            "architecture": self.old.attrs.get("arch", ""),
            "accuracy": self.old.accuracy,
            "old_energy_per_inference_j": self.old.energy_per_inference_j,
            "old_method": self.old.energy_method,
            "new_energy_per_inference_j": self.new.energy_per_inference_j,
            "new_method": self.new.energy_method,
            "old_latency_s": self.old.latency_s,
            "new_latency_s": self.new.latency_s,
            "weights": self.weights,
            "record": self.record.to_dict(),
        }


@dataclass(frozen=True)
class RerankResult:
    """A run's trials measured again on another profile: the old and new fronts, every new
    measurement, and the trials skipped with the reason.
    """

    run: RunFolder
    profile: str
    meter: str
    scope: str  # "front" or "all"
    old_front: list[TrialRecord]
    new_front: list[TrialRecord]
    measured: list[Remeasured]
    skipped: dict[int, str]  # trial -> why it was not measured
    path: Path

    @property
    def methods(self) -> list[str]:
        """How the new energy numbers were obtained, sorted, each once."""
        return sorted({m.record.method for m in self.measured})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what `nas rerank --json` prints and RUN/rerank-PROFILE.json holds)."""
        return {
            "run": str(self.run.path),
            "profile": self.profile,
            "meter": self.meter,
            "energy_methods": self.methods,
            "estimated": any(m.startswith("estimated") for m in self.methods),
            "scope": self.scope,
            "old_front": [r.row() for r in self.old_front],
            "new_front": [r.row() for r in self.new_front],
            "measured": [m.to_dict() for m in self.measured],
            "skipped": {str(k): v for k, v in self.skipped.items()},
            "file": str(self.path),
        }


def rerank_path(run: RunFolder, profile: HardwareProfile) -> Path:
    """RUN/rerank-PROFILE.json, the profile's name made safe for a file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", profile.name).strip("._") or "profile"
    return run.path / f"rerank-{safe}.json"


def rerank(
    run_path: str | Path,
    profile: str | Path,
    *,
    all_trials: bool = False,
    allow_estimate: bool = False,
    storage: str | None = None,
) -> RerankResult:
    """Re-measure the front (or every complete trial) of a run on `profile` and write the new front."""
    report = build_report(run_path, storage)
    run, objectives = report.run, report.objectives
    target = load_profile(profile)
    study = study_for_run(run, storage)
    data = load_dataset(str(report.settings.get("dataset", "digits")), int(report.settings.get("split_seed", 0)))
    input_shape, num_classes = model_shape(run)
    chosen = report.records if all_trials else report.front
    meter = create_meter(target, allow_estimate=allow_estimate)
    measured: list[Remeasured] = []
    skipped: dict[int, str] = {}
    try:
        for rec in sorted(chosen, key=lambda r: r.number):
            arch = Architecture.from_dict(rec.architecture, f"trial {rec.number}")
            precision = str(rec.attrs.get("precision", arch.params.get("precision", target.precision)))
            why = deployable(precision, target, meter.torch_device)
            if why:
                skipped[rec.number] = why
                continue
            torch.manual_seed(int(rec.attrs.get("seed", rec.number)))
            model = rebuild(arch, input_shape, num_classes)
            trial = complete_trial(study, rec.number)
            if has_weights(trial):
                model.load_state_dict(load_weights(run, trial), strict=True)
                weights = "trained (stored artifact)"
            else:
                weights = (
                    "untrained (no stored weights; a dense model's inference energy does not depend on weight values)"
                )
            deployment = deploy(
                model.eval(),
                precision,
                data.x_train[:CALIBRATION_SAMPLES],
                meter.torch_device,
                input_shape=input_shape,
                runtime=target.runtime,
                example=inference_batch(data, target.batch_size, torch.device("cpu")),
                run_in_runtime=meter.runs_workload,
            )
            record = measure_on(meter, deployment, data, target)
            values = dict(rec.values)
            values["energy"] = record.energy_per_inference_j
            if "latency" in values:
                values["latency"] = record.latency_s
            new = replace(
                rec,
                values=values,
                energy_per_inference_j=record.energy_per_inference_j,
                energy_method=record.method,
                latency_s=record.latency_s,
            )
            measured.append(Remeasured(rec, new, record, weights))
    finally:
        meter.close()
    new_front = pareto_front([m.new for m in measured], objectives)
    result = RerankResult(
        run,
        target.name,
        meter.name,
        "all" if all_trials else "front",
        report.front,
        new_front,
        measured,
        skipped,
        rerank_path(run, target),
    )
    write_json(result.path, result.to_dict())
    return result


def format_rerank(result: RerankResult) -> str:
    """The old and new front side by side, as the CLI prints it."""
    methods = ", ".join(result.methods) or "nothing measured"
    est = "  (ESTIMATED, not measured)" if any(m.startswith("estimated") for m in result.methods) else ""
    new_rank = {r.number: i for i, r in enumerate(result.new_front, 1)}
    lines = [
        f"re-ranked {len(result.measured)} trials ({result.scope}) of {result.run.path} on profile "
        f"{result.profile} [{methods}]{est}",
        f"{'trial':<7} {'val acc':>7}  {'old energy/inf':>14}  {'new energy/inf':>14}  {'new latency':>11}  new front",
    ]
    for m in sorted(result.measured, key=lambda m: m.new.energy_per_inference_j):
        n = m.old.number
        lines.append(
            f"#{n:<6} {m.old.accuracy:>7.4f}  {_si(m.old.energy_per_inference_j, 'J'):>14}  "
            f"{_si(m.new.energy_per_inference_j, 'J'):>14}  {_si(m.new.latency_s, 's'):>11}  "
            + (f"yes ({new_rank[n]})" if n in new_rank else "no")
        )
    for n, why in sorted(result.skipped.items()):
        lines.append(f"#{n:<6} skipped: {why}")
    lines.append(
        f"old front: {', '.join(f'#{r.number}' for r in result.old_front) or '-'}; "
        f"new front: {', '.join(f'#{r.number}' for r in result.new_front) or '-'}; written to {result.path}"
    )
    return "\n".join(lines)
