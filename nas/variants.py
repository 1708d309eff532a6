"""One architecture, several deployments: fp32 vs lower precision vs pruned, side by side.

Each variant runs through the search's own trial code (same dataset split, epochs, seed and meter
as the run), on an in-memory study, so its accuracy and energy are those of the model as deployed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from nas.deploy import deployable
from nas.errors import RunError
from nas.models.registry import get_family
from nas.runs import open_run, study_for_run
from nas.search.context import context_from_study
from nas.search.objective import TrialObjective, quiet_optuna
from nas.searchspace import Param


@dataclass(frozen=True)
class Variant:
    """One deployment of an architecture: a label, a precision and a prune ratio in [0, 1)."""

    label: str
    precision: str
    prune_ratio: float


@dataclass(frozen=True)
class VariantResult:
    """A variant trained and measured: accuracies in [0, 1], energy per inference in J, latency in s."""

    variant: Variant
    val_accuracy: float
    test_accuracy: float | None
    energy_per_inference_j: float
    energy_method: str
    latency_s: float
    params: int
    macs: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, the variant's fields inlined."""
        d = dataclasses.asdict(self)
        d.update(d.pop("variant"))
        return d


def default_variants(precisions: tuple[str, ...], prune_ratio: float | None) -> list[Variant]:
    """fp32, each lower precision of `precisions`, and pruned by `prune_ratio` (fp32 and int8);
    no pruned variants when `prune_ratio` is None (a family that does not prune)."""
    out = [Variant("fp32", "fp32", 0.0)]
    out += [Variant(p, p, 0.0) for p in ("bf16", "fp16", "int8") if p in precisions]
    if prune_ratio is None:
        return out
    out.append(Variant(f"fp32, pruned {prune_ratio:.0%}", "fp32", prune_ratio))
    if "int8" in precisions:
        out.append(Variant(f"int8, pruned {prune_ratio:.0%}", "int8", prune_ratio))
    return out


def compare_variants(
    run_path: str | Path, trial_number: int, storage: str | None = None, prune_ratio: float = 0.5
) -> tuple[dict[str, Any], list[VariantResult]]:
    """Train and measure the trial's architecture as fp32, each lower precision the profile runs
    and its family deploys in, and pruned by `prune_ratio` (fp32 and int8) when its family prunes.
    Returns (the trial's architecture, results)."""
    quiet_optuna()
    run = open_run(run_path)
    study = study_for_run(run, storage)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if trial_number not in trials or trials[trial_number].state != optuna.trial.TrialState.COMPLETE:
        valid = sorted(n for n, t in trials.items() if t.state == optuna.trial.TrialState.COMPLETE)
        raise RunError(f"{run.path}: no complete trial #{trial_number} (complete: {_ranges(valid)})")
    source = trials[trial_number]
    ctx = context_from_study(study, energy_budget_j=None, latency_budget_s=None, early_stop=False)
    from nas.train import set_threads

    set_threads(ctx.settings.threads)  # as the run's trials trained and were measured, so the rows reproduce them
    family_name = source.user_attrs.get("architecture", {}).get("family", ctx.space.family)
    family = get_family(family_name)
    # a space where the family is a choice: vary within the trial's family, its names unprefixed
    family_space = next((a for a in ctx.space.alternatives() if a.family == family_name), ctx.space)
    prefix = f"{family_name}." if ctx.space.families else ""
    chosen = {k[len(prefix) :]: v for k, v in source.params.items() if k.startswith(prefix)}
    precisions = tuple(
        p
        for p in ctx.profile.precisions
        if p in family.precisions and deployable(p, ctx.profile, ctx.meter.torch_device) is None
    )
    variants = default_variants(precisions, prune_ratio if family.prunable else None)
    levers = (
        Param("precision", "choice", choices=tuple(dict.fromkeys(v.precision for v in variants))),
        Param("prune_ratio", "choice", choices=tuple(dict.fromkeys(v.prune_ratio for v in variants))),
    )
    space = dataclasses.replace(
        family_space,
        params=tuple(p for p in family_space.params if p.name not in ("precision", "prune_ratio")) + levers,
    )
    ctx = dataclasses.replace(ctx, space=space, artifact_dir=None)
    objective = TrialObjective(ctx, fixed_seed=source.user_attrs.get("seed"))
    scratch = optuna.create_study(directions=[o.direction for o in ctx.objectives])
    results = []
    for v in variants:
        params = {**chosen, "precision": v.precision, "prune_ratio": v.prune_ratio}
        scratch.enqueue_trial(params)
        trial = scratch.ask()
        values = objective(trial)
        scratch.tell(trial, values)
        a = scratch.trials[-1].user_attrs
        results.append(
            VariantResult(
                v,
                a["val_accuracy"],
                a.get("test_accuracy"),
                a["energy_per_inference_j"],
                a["energy_method"],
                a["latency_s"],
                a["params"],
                a["macs"],
            )
        )
    return dict(source.user_attrs.get("architecture", {})), results


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return (
        f"{numbers[0]}-{numbers[-1]}"
        if numbers == list(range(numbers[0], numbers[-1] + 1))
        else ", ".join(map(str, numbers))
    )


def format_variants(arch: dict[str, Any], results: list[VariantResult]) -> str:
    """What `nas variants` prints: one row per variant, energy relative to fp32."""
    base = results[0]
    lines = [
        f"architecture: {arch}",
        f"{'variant':<20} {'val acc':>8} {'test acc':>8} {'energy/inf (J)':>15} {'vs fp32':>8} {'params':>9} {'MACs':>11}  method",
    ]
    for r in results:
        lines.append(
            f"{r.variant.label:<20} {r.val_accuracy:>8.4f} {r.test_accuracy if r.test_accuracy is not None else float('nan'):>8.4f} "
            f"{r.energy_per_inference_j:>15.4g} {r.energy_per_inference_j / base.energy_per_inference_j:>7.2f}x "
            f"{r.params:>9,} {r.macs:>11,}  {r.energy_method}"
        )
    return "\n".join(lines)
