"""Figures (draw only). Data comes in as TrialRecords; functions return a Figure, never show it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from nas.errors import ConfigError
from nas.hypervolume import HypervolumeSummary
from nas.pareto import TrialRecord


def method_label(records: Sequence[TrialRecord]) -> str:
    """`measured:nvml-counter`, `estimated:analytical`, or both when a run mixes them."""
    methods = sorted({r.energy_method for r in records})
    return " + ".join(methods) if methods else "no energy data"


def pareto_figure(
    records: Sequence[TrialRecord], front: Sequence[TrialRecord], title: str = "", *, mark_estimates: bool = True
) -> Figure:
    """All trials (grey), the front as a staircase (red), trial numbers on front points (trials
    with equal values share one label: the first number and how many more, `#12 +3`).

    The energy axis is logarithmic when energies span more than 10x.
    """
    fig = Figure(figsize=(7.5, 5.0), dpi=120)
    ax = fig.add_subplot()
    feasible = [r for r in records if r.feasible]
    infeasible = [r for r in records if not r.feasible]
    ax.scatter(
        [r.energy_per_inference_j for r in feasible],
        [r.accuracy for r in feasible],
        s=18,
        color="0.6",
        label=f"trials ({len(feasible)})",
        zorder=2,
    )
    if infeasible:
        ax.scatter(
            [r.energy_per_inference_j for r in infeasible],
            [r.accuracy for r in infeasible],
            s=18,
            marker="x",
            color="0.75",
            label=f"over budget ({len(infeasible)})",
            zorder=2,
        )
    if front:
        xs = [r.energy_per_inference_j for r in front]
        ys = [r.accuracy for r in front]
        ax.step(xs, ys, where="post", color="tab:red", lw=1.5, zorder=3)
        ax.scatter(xs, ys, s=36, color="tab:red", label=f"Pareto front ({len(front)})", zorder=4)
        # one label per point: trials with equal values (common when a study replays a table or
        # re-samples an architecture) share it, where thousands of labels took seconds to lay out
        ties: dict[tuple[float, float], list[int]] = {}
        for r in front:
            ties.setdefault((r.energy_per_inference_j, r.accuracy), []).append(r.number)
        for point, numbers in ties.items():
            more = f" +{len(numbers) - 1}" if len(numbers) > 1 else ""
            ax.annotate(
                f"#{min(numbers)}{more}",
                point,
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=8,
                color="tab:red",
            )
    energies = [r.energy_per_inference_j for r in records if r.energy_per_inference_j > 0]
    if energies and max(energies) / min(energies) > 10:
        ax.set_xscale("log")
    method = method_label(records)
    estimated = any(r.energy_method.startswith("estimated") for r in records)
    ax.set_xlabel("energy per inference (J)" + (", ESTIMATED" if estimated and mark_estimates else ""))
    ax.set_ylabel("validation accuracy (fraction correct)")
    ax.set_title(f"{title + ': ' if title else ''}accuracy vs energy [{method}]", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def hypervolume_figure(summary: HypervolumeSummary, title: str = "", method: str = "") -> Figure:
    """The hypervolume fraction after each trial (a staircase), with the reference point stated."""
    fig = Figure(figsize=(7.5, 3.6), dpi=120)
    ax = fig.add_subplot()
    xs = [h.trial for h in summary.history]
    ys = [h.fraction for h in summary.history]
    ax.step(xs, ys, where="post", color="tab:blue", lw=1.5)
    ax.scatter(xs, ys, s=10, color="tab:blue", zorder=3)
    ref = summary.reference
    ax.set_xlabel("trial number")
    ax.set_ylabel("hypervolume (fraction of box)")
    ax.set_ylim(0, max(1e-9, max(ys, default=0.0)) * 1.1)
    ax.set_title(
        f"{title + ': ' if title else ''}hypervolume {summary.fraction:.4f}"
        f"{' [' + method + ']' if method else ''}\n"
        f"reference: accuracy {ref.accuracy:g}, energy {ref.energy_per_inference_j:.3g} J/inference",
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save as PNG or SVG, chosen by the file's suffix."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"{path}: plot file must end in .png or .svg")
    from nas.atomic import atomic_path

    with atomic_path(path) as tmp:  # whole or not at all, with the umask's mode
        fig.savefig(tmp, format=path.suffix.lower()[1:])
    return path
