"""What a finished (or running) search holds, as data, and its text rendering."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from nas.objectives import Objective
from nas.pareto import TrialRecord, pareto_front
from nas.runs import RunFolder, objectives_of, open_run, study_for_run, trial_records


@dataclass(frozen=True)
class Report:
    run: RunFolder
    study_name: str
    settings: dict[str, Any]
    objectives: tuple[Objective, ...]
    records: list[TrialRecord]
    front: list[TrialRecord]
    failed: dict[str, int]
    running: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def energy_methods(self) -> list[str]:
        return sorted({r.energy_method for r in self.records})

    @property
    def estimated(self) -> bool:
        return any(m.startswith("estimated") for m in self.energy_methods)


def build_report(run_path: str | Path, storage: str | None = None) -> Report:
    """Read a run folder (and its study) into a Report."""
    run = open_run(run_path)
    study = study_for_run(run, storage)
    objectives = objectives_of(study)
    records = trial_records(study, objectives)
    trials = study.get_trials(deepcopy=False)
    failed = Counter(
        str(t.user_attrs.get("fail_reason", "unknown")) for t in trials if t.state == optuna.trial.TrialState.FAIL
    )
    running = sum(1 for t in trials if t.state == optuna.trial.TrialState.RUNNING)
    return Report(
        run=run,
        study_name=study.study_name,
        settings=dict(study.user_attrs.get("nas.settings", {})),
        objectives=objectives,
        records=records,
        front=pareto_front(records, objectives),
        failed=dict(failed),
        running=running,
    )


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "run": str(report.run.path),
        "study_name": report.study_name,
        "objectives": [o.name for o in report.objectives],
        "settings": report.settings,
        "complete": len(report.records),
        "failed": report.failed,
        "running": report.running,
        "energy_methods": report.energy_methods,
        "estimated": report.estimated,
        "front": [r.row() for r in report.front],
        **report.extra,
    }


def _si(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def format_table(report: Report) -> str:
    """The front as an aligned text table, with a header saying how energy was obtained."""
    methods = ", ".join(report.energy_methods) or "none"
    lines = [
        f"run {report.run.path}  study {report.study_name}  "
        f"({len(report.records)} complete, {sum(report.failed.values())} failed, {report.running} running)",
        f"energy: {methods}" + ("  (ESTIMATED, not measured)" if report.estimated else ""),
        f"front ({len(report.front)} architectures, sorted by energy; test accuracy shown, never used to select):",
    ]
    header = ("trial", "val acc", "test acc", "energy/inf", "latency/batch", "params", "MACs", "architecture")
    rows = [
        (
            f"#{r.number}",
            f"{r.accuracy:.4f}",
            "-" if r.test_accuracy is None else f"{r.test_accuracy:.4f}",
            _si(r.energy_per_inference_j, "J"),
            _si(r.latency_s, "s"),
            f"{r.params:,}",
            f"{r.macs:,}",
            str(r.attrs.get("arch", "")),
        )
        for r in report.front
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = lambda row: "  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))  # noqa: E731
    lines.append(fmt(header))
    lines += [fmt(row) for row in rows]
    if report.failed:
        lines.append("failed trials by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(report.failed.items())))
    return "\n".join(lines)
