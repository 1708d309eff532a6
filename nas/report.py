"""What a finished (or running) search holds, as data, and its text rendering."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from nas.carbon import CostReport, resolve_intensity, savings, search_cost
from nas.config import parse_profile
from nas.errors import ConfigError
from nas.hardware import Sourced
from nas.hypervolume import HypervolumeSummary, summarize
from nas.objectives import Objective
from nas.pareto import TrialRecord, pareto_front
from nas.plot import pareto_figure, save_figure
from nas.runs import RunFolder, objectives_of, open_run, study_for_run, trial_records
from nas.selection import Selection, select
from nas.trial_rows import read_trials

PHASES = ("sample", "build", "measure", "train", "evaluate", "store")  # in the order a trial runs them
WORK_PHASES = ("measure", "train", "evaluate")  # the work a search schedules; the rest is our overhead


@dataclass(frozen=True)
class PhaseBreakdown:
    """Seconds per trial phase (user attr `phases_s`), summed over the trials that recorded them.

    The phases cover a trial from its first suggest to its stored results; Optuna's ask and tell
    and the search's callbacks fall between trials and are not in any phase.
    """

    totals_s: Mapping[str, float]
    trials: int

    @property
    def total_s(self) -> float:
        """Time over all phases and trials, in s."""
        return sum(self.totals_s.values())

    def share(self, phase: str) -> float:
        """Fraction of the phased time spent in `phase`."""
        return self.totals_s.get(phase, 0.0) / self.total_s if self.total_s > 0 else 0.0

    @property
    def outside_work_share(self) -> float:
        """Fraction of the phased time outside measure, train and evaluate."""
        return 1.0 - sum(self.share(p) for p in WORK_PHASES) if self.total_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each phase's total in s and share of the whole."""
        return {
            "trials": self.trials,
            "total_s": self.total_s,
            "phases": {k: {"total_s": v, "share": self.share(k)} for k, v in self.totals_s.items()},
            "outside_measure_train_evaluate_share": self.outside_work_share,
        }


def phase_breakdown(trial_attrs: Iterable[Mapping[str, Any]]) -> PhaseBreakdown | None:
    """Sum the `phases_s` of every trial that has one; None when none has (e.g. replayed trials)."""
    totals: dict[str, float] = {}
    trials = 0
    for attrs in trial_attrs:
        phases = attrs.get("phases_s")
        if not isinstance(phases, Mapping):
            continue
        trials += 1
        for name, seconds in phases.items():
            totals[name] = totals.get(name, 0.0) + float(seconds)
    if not trials:
        return None
    order = [p for p in PHASES if p in totals] + sorted(set(totals) - set(PHASES))
    return PhaseBreakdown({p: totals[p] for p in order}, trials)


@dataclass(frozen=True)
class Report:
    """Everything `nas report` shows about a run: its trials and front (over the study's objectives),
    failures, the search's cost and carbon, hypervolume, an optional pick, and where time went.
    """

    run: RunFolder
    study_name: str
    settings: dict[str, Any]
    objectives: tuple[Objective, ...]
    records: list[TrialRecord]
    front: list[TrialRecord]
    failed: dict[str, int]
    running: int
    extra: dict[str, Any] = field(default_factory=dict)
    cost: CostReport | None = None  # search energy, carbon, and each front member's savings
    hypervolume: HypervolumeSummary | None = None
    pick: Selection | None = None
    phases: PhaseBreakdown | None = None  # where the trials' time went

    @property
    def energy_methods(self) -> list[str]:
        """How the trials' energy was obtained (e.g. `measured:rapl`), sorted, each once."""
        return sorted({r.energy_method for r in self.records})

    @property
    def estimated(self) -> bool:
        """Whether any trial's energy is an analytical estimate."""
        return any(m.startswith("estimated") for m in self.energy_methods)


def build_report(
    run_path: str | Path,
    storage: str | None = None,
    *,
    pick: str | None = None,
    grid_intensity: float | None = None,
    region: str | None = None,
) -> Report:
    """Read a run folder (and its study) into a Report.

    Besides the front it holds the search's energy cost and carbon (grid intensity from
    `grid_intensity` g/kWh, else `region`, else the run's hardware profile), each front member's
    saving per inference against the most accurate one, the hypervolume, and the trial `pick`
    selects (see nas.selection for the rule syntax).
    """
    run = open_run(run_path)
    study = study_for_run(run, storage)
    objectives = objectives_of(study)
    trials = read_trials(study)  # far faster than study.get_trials for large studies (nas.storage)
    records = trial_records(study, objectives, trials)
    failed = Counter(
        str(t.user_attrs.get("fail_reason", "unknown")) for t in trials if t.state == optuna.trial.TrialState.FAIL
    )
    running = sum(1 for t in trials if t.state == optuna.trial.TrialState.RUNNING)
    settings = dict(study.user_attrs.get("nas.settings", {}))
    front = pareto_front(records, objectives)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    cost = search_cost((t.user_attrs for t in complete), not_counted=len(trials) - len(complete))
    intensity = resolve_intensity(grid_intensity, region, _profile_intensity(study), str(settings.get("profile", "?")))
    return Report(
        run=run,
        study_name=study.study_name,
        settings=settings,
        objectives=objectives,
        records=records,
        front=front,
        failed=dict(failed),
        running=running,
        cost=CostReport(cost, intensity, tuple(savings(front, cost.total_j, intensity))),
        hypervolume=summarize(records),
        pick=select(pick, records, front) if pick else None,
        phases=phase_breakdown(t.user_attrs for t in complete),
    )


def _profile_intensity(study: optuna.Study) -> Sourced | None:
    """The grid intensity (a `Sourced`) of the profile stored with the study, if it parses."""
    doc = study.user_attrs.get("nas.profile")
    if doc is None:
        return None
    try:
        return parse_profile(doc, f"study {study.study_name!r} (stored profile)").grid_intensity_g_per_kwh
    except ConfigError:
        return None


def report_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (what `nas report --json` prints)."""
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
        **(report.cost.to_dict() if report.cost is not None else {}),
        "hypervolume": report.hypervolume.to_dict() if report.hypervolume is not None else None,
        "pick": _pick_dict(report.pick),
        "phases": report.phases.to_dict() if report.phases is not None else None,
        **report.extra,
    }


def _pick_dict(sel: Selection | None) -> dict[str, Any] | None:
    if sel is None:
        return None
    return {**sel.to_dict(), "record": sel.record.row()}


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
    header = (
        "trial",
        "val acc",
        "test acc",
        "energy/inf",
        "latency/batch",
        "params",
        "MACs",
        "saved/inf",
        "break-even",
        "architecture",
    )
    saved = {s.trial: s for s in report.cost.savings} if report.cost is not None else {}
    picked = report.pick.record.number if report.pick is not None else None
    rows = [
        (
            f"#{r.number}" + ("*" if r.number == picked else ""),
            f"{r.accuracy:.4f}",
            "-" if r.test_accuracy is None else f"{r.test_accuracy:.4f}",
            _si(r.energy_per_inference_j, "J"),
            _si(r.latency_s, "s"),
            count_cell(r, "params"),
            count_cell(r, "macs"),
            *_saving_cells(saved.get(r.number)),
            str(r.attrs.get("arch", "")),
        )
        for r in report.front
    ]
    last = len(header) - 1
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]

    def fmt(row: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in (0, last) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    lines.append(fmt(header))
    lines += [fmt(row) for row in rows]
    if report.failed:
        lines.append("failed trials by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(report.failed.items())))
    lines += summary_lines(report)
    return "\n".join(lines)


def count_cell(r: Any, name: str) -> str:
    """A trial's parameter or MAC count for a table, or "-" where the trial recorded none (a row
    replayed from an imported table that had no such column is not a network of 0 parameters)."""
    return f"{getattr(r, name):,}" if name in r.attrs else "-"


def _saving_cells(s: Any) -> tuple[str, str]:
    if s is None or s.trial == s.baseline_trial:
        return ("baseline" if s is not None else "-", "-")
    pct = f" ({s.saved_fraction:.0%})" if s.saved_per_inference_j > 0 else ""
    n = s.break_even_inferences
    be = "never" if n is None else (f"{n:,} inf" if n < 1e9 else f"{n:.3g} inf")
    return (_si(s.saved_per_inference_j, "J") + pct, be)


def summary_lines(report: Report) -> list[str]:
    """Search cost, carbon, hypervolume and the pick, one line each, every number with its method."""
    out = []
    if report.cost is not None:
        c = report.cost.cost
        est = "  (ESTIMATED)" if c.estimated else ""
        out.append(
            f"search cost: {c.total_j:.4g} J = {c.kwh:.3g} kWh (training {c.training_j:.4g} J + measurement "
            f"{c.measurement_j:.4g} J over {c.trials_counted} trials"
            + (f"; {c.trials_not_counted} unfinished trials not counted" if c.trials_not_counted else "")
            + f") [{', '.join(c.methods) or 'no energy recorded'}]{est}"
        )
        if report.cost.intensity is not None:
            i = report.cost.intensity
            out.append(f"carbon: {report.cost.search_gco2e:.3g} gCO2e at {i.g_per_kwh:g} gCO2e/kWh ({i.source})")
        else:
            out.append("carbon: no grid intensity known; pass --grid-intensity G or --region CODE")
        sv = [s for s in report.cost.savings if s.trial != s.baseline_trial]
        if sv:
            out.append(
                f"saved/inf: energy per inference saved against the most accurate front member "
                f"(#{sv[0].baseline_trial}); break-even: inferences after which that saving repays the search's energy"
            )
    hv = report.hypervolume
    if hv is not None:
        r = hv.reference
        out.append(
            f"hypervolume: {hv.fraction:.4f} of the box ({hv.hypervolume:.4g} accuracy x J); reference point: "
            f"accuracy {r.accuracy:g}, energy {r.energy_per_inference_j:.4g} J/inference ({r.rule})"
        )
    if report.phases is not None:
        ph = report.phases
        parts = ", ".join(f"{k} {v:.3g} s ({ph.share(k):.1%})" for k, v in ph.totals_s.items())
        out.append(
            f"time per phase over {ph.trials} timed trials ({ph.total_s:.3g} s; a reused repeat is not timed): {parts}; "
            f"outside measure/train/evaluate {ph.outside_work_share:.1%}"
        )
    if report.pick is not None:
        p = report.pick
        out.append(
            f"pick {p.rule.text!r} -> trial #{p.record.number}{'' if p.on_front else ' (not on the front)'}: {p.reason}"
        )
    return out


def plot_run(run_path: str | Path, output: str | Path | None = None, storage: str | None = None) -> Path:
    """Draw a run's trials and Pareto front (`nas plot`) into `output`, a PNG or SVG file
    (default: RUN/pareto.png), and return its path. Raises RunError for a folder that is not a run
    and ConfigError for another file type."""
    rep = build_report(run_path, storage)
    return save_figure(pareto_figure(rep.records, rep.front, title=rep.study_name), output or rep.run.pareto_png)
