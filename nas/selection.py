"""Selection rules: which trial of a run to report or export (pure functions over TrialRecords).

Rule syntax (`--pick RULE`):

  trial:N   or  N                 trial number N (any complete trial)
  knee                            the front member of best trade-off (see `knee` below)
  max-accuracy:energy<=E          the most accurate trial whose energy per inference is <= E
  max-accuracy:latency<=T         ... whose latency per batch is <= T (both caps may be given,
                                  comma-separated: max-accuracy:energy<=2uJ,latency<=5ms)
  min-energy:accuracy>=A          the cheapest trial whose validation accuracy is >= A
                                  (optionally also ,latency<=T)

Energies take J, mJ, uJ (or µJ), nJ, pJ (a bare number is joules); latencies s, ms, us, ns (a bare
number is seconds); accuracies are fractions (0.95) or percentages (95%). Accuracy is always the
validation accuracy: the test accuracy is reported, never used to choose.

Ties: max-accuracy prefers lower energy, min-energy prefers higher accuracy, then the lower trial
number. Rules with caps search every feasible trial, not only the accuracy-energy front, because a
latency cap can make a trial off that front the best choice; the result says whether it is on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError, RunError
from nas.objectives import OBJECTIVES
from nas.pareto import TrialRecord, pareto_front
from nas.units import UNITS

SYNTAX = (
    "trial:N | N | knee | max-accuracy:energy<=E[,latency<=T] | "
    "min-energy:accuracy>=A[,latency<=T]  (E like 2e-7 or 200nJ, T like 5ms, A like 0.95 or 95%)"
)

_UNITS = UNITS  # one unit table for rules and flags (nas.units)
_OPS = {"energy": "<=", "latency": "<=", "accuracy": ">="}
_COND_RE = re.compile(
    r"^\s*(?P<metric>[a-z]+)\s*(?P<op><=|>=)\s*(?P<num>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*(?P<unit>\S*)\s*$"
)


@dataclass(frozen=True)
class Condition:
    """One cap or floor, with the value in SI units (J, s, fraction)."""

    metric: str  # "energy" | "latency" | "accuracy"
    op: str  # "<=" | ">="
    value: float

    def holds(self, r: TrialRecord) -> bool:
        """Whether record `r` meets the condition (False when it lacks the metric)."""
        v = _metric(r, self.metric)
        if v is None:
            return False
        return v <= self.value if self.op == "<=" else v >= self.value

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass(frozen=True)
class Rule:
    """A parsed selection rule: its kind, the text the user wrote, and a trial number or conditions."""

    kind: str  # a key of RULES
    text: str  # as the user wrote it
    trial: int | None = None
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Selection:
    """The trial a rule picked, whether it is on the front, and one line saying why."""

    rule: Rule
    record: TrialRecord
    on_front: bool  # on the run's Pareto front (over the study's objectives)
    reason: str  # one line saying why this trial

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the rule, its kind, the trial, whether on the front, and the reason."""
        return {
            "rule": self.rule.text,
            "kind": self.rule.kind,
            "trial": self.record.number,
            "on_front": self.on_front,
            "reason": self.reason,
        }


def _metric(r: TrialRecord, metric: str) -> float | None:
    if metric == "energy":
        return r.energy_per_inference_j
    if metric == "latency":
        return r.latency_s
    return r.accuracy


def _condition(text: str, rule_text: str) -> Condition:
    m = _COND_RE.match(text)
    if not m:
        raise ConfigError(
            f"--pick {rule_text!r}: cannot read condition {text!r} (expected e.g. energy<=200nJ); rules: {SYNTAX}"
        )
    metric, op, unit = m["metric"], m["op"], m["unit"]
    if metric not in _OPS:
        raise ConfigError(f"--pick {rule_text!r}: unknown metric {metric!r} (valid: {', '.join(_OPS)})")
    if op != _OPS[metric]:
        raise ConfigError(f"--pick {rule_text!r}: {metric} takes '{_OPS[metric]}', not '{op}'")
    scale = _UNITS[metric].get(unit)
    if scale is None:
        units = ", ".join(u for u in _UNITS[metric] if u)
        raise ConfigError(f"--pick {rule_text!r}: unknown unit {unit!r} for {metric} (valid: {units})")
    value = float(m["num"]) * scale
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"--pick {rule_text!r}: {metric} must be a finite number >= 0")
    if metric == "accuracy" and value > 1:
        raise ConfigError(f"--pick {rule_text!r}: accuracy is a fraction in [0, 1] or a percentage like 95%")
    return Condition(metric, op, value)


def _conditions(args: str, text: str) -> tuple[Condition, ...]:
    return tuple(_condition(part, text) for part in args.split(",") if part.strip())


def _parse_trial(args: str, text: str) -> Rule:
    try:
        number = int(args)
    except ValueError:
        raise ConfigError(f"--pick {text!r}: expected a trial number, e.g. trial:12") from None
    if number < 0:
        raise ConfigError(f"--pick {text!r}: trial numbers start at 0")
    return Rule("trial", text, trial=number)


def _parse_knee(args: str, text: str) -> Rule:
    if args:
        raise ConfigError(f"--pick {text!r}: 'knee' takes no arguments")
    return Rule("knee", text)


def _parse_max_accuracy(args: str, text: str) -> Rule:
    conds = _conditions(args, text)
    if not conds or any(c.metric == "accuracy" for c in conds):
        raise ConfigError(
            f"--pick {text!r}: max-accuracy needs energy<=E and/or latency<=T, e.g. max-accuracy:energy<=200nJ"
        )
    return Rule("max-accuracy", text, conditions=conds)


def _parse_min_energy(args: str, text: str) -> Rule:
    conds = _conditions(args, text)
    if not any(c.metric == "accuracy" for c in conds) or any(c.metric == "energy" for c in conds):
        raise ConfigError(
            f"--pick {text!r}: min-energy needs accuracy>=A (and optionally latency<=T), e.g. min-energy:accuracy>=0.95"
        )
    return Rule("min-energy", text, conditions=conds)


RULES: dict[str, Callable[[str, str], Rule]] = {
    "trial": _parse_trial,
    "knee": _parse_knee,
    "max-accuracy": _parse_max_accuracy,
    "min-energy": _parse_min_energy,
}


def parse_rule(text: str) -> Rule:
    """`knee`, `trial:3`, `max-accuracy:energy<=2e-7`... -> Rule; ConfigError with the syntax otherwise."""
    text = str(text).strip()
    if re.fullmatch(r"#?\d+", text):
        return Rule("trial", text, trial=int(text.lstrip("#")))
    kind, _, args = text.partition(":")
    kind = kind.strip().lower()
    if kind not in RULES:
        raise ConfigError(f"--pick: unknown rule {kind!r} (valid: {', '.join(RULES)}); syntax: {SYNTAX}")
    return RULES[kind](args.strip(), text)


def accuracy_energy_front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The front of `records` in the accuracy-energy plane only (sorted by energy)."""
    return pareto_front(records, (OBJECTIVES["accuracy"], OBJECTIVES["energy"]))


def knee(front: Sequence[TrialRecord]) -> tuple[TrialRecord, str]:
    """The knee of an accuracy-energy front: the member farthest above the line joining its two
    extreme members, after min-max normalising energy and accuracy over the front.

    With energy e and accuracy a scaled to [0, 1], the line runs from the cheapest member (0, 0)
    to the most accurate one (1, 1) and the signed distance of a member above it is (a - e) / sqrt(2).
    Ties (e.g. a front of two members, where both lie on the line) go to the lower energy.
    """
    pts = sorted(front, key=lambda r: (r.energy_per_inference_j, -r.accuracy, r.number))
    if not pts:
        raise RunError("the run has no feasible complete trial, so no front and no knee")
    lo, hi = pts[0], max(pts, key=lambda r: (r.accuracy, -r.energy_per_inference_j))
    if len(pts) == 1:
        return lo, f"knee: the front has one member (#{lo.number})"
    e0, e1 = lo.energy_per_inference_j, hi.energy_per_inference_j
    a0, a1 = lo.accuracy, hi.accuracy
    if e1 <= e0 or a1 <= a0:
        return lo, f"knee: front members do not differ in both objectives; took the cheapest (#{lo.number})"
    if len(pts) == 2:
        return lo, f"knee: the front has two members, both on the line between them; took the cheaper (#{lo.number})"

    def distance(r: TrialRecord) -> float:
        e = (r.energy_per_inference_j - e0) / (e1 - e0)
        a = (r.accuracy - a0) / (a1 - a0)
        return (a - e) / math.sqrt(2)

    best = max(pts, key=lambda r: (round(distance(r), 12), -r.energy_per_inference_j, -r.number))
    return best, (
        f"knee: distance {distance(best):.3f} above the line from #{lo.number} (cheapest) to "
        f"#{hi.number} (most accurate) in min-max normalised energy-accuracy space, the largest on the front"
    )


def _describe(conds: Sequence[Condition]) -> str:
    return " and ".join(str(c) for c in conds)


def select(rule: str | Rule, records: Sequence[TrialRecord], front: Sequence[TrialRecord] | None = None) -> Selection:
    """Apply `rule` to the complete trials `records`.

    `front` (the run's Pareto front over the study's objectives) only sets `on_front`; it defaults
    to the accuracy-energy front of `records`.
    """
    rule = parse_rule(rule) if isinstance(rule, str) else rule
    front = list(front) if front is not None else accuracy_energy_front(records)
    on_front = {r.number for r in front}
    feasible = [r for r in records if r.feasible]

    if rule.kind == "trial":
        match = [r for r in records if r.number == rule.trial]
        if not match:
            numbers = sorted(r.number for r in records)
            have = f"{numbers[0]}..{numbers[-1]}" if numbers else "none"
            raise RunError(
                f"--pick {rule.text!r}: trial {rule.trial} is not a complete trial of this run (complete: {len(numbers)}, numbers {have})"
            )
        rec = match[0]
        where = "on the front" if rec.number in on_front else "not on the front"
        return Selection(rule, rec, rec.number in on_front, f"trial {rec.number} as asked ({where})")

    if rule.kind == "knee":
        rec, reason = knee(accuracy_energy_front(feasible))
        return Selection(rule, rec, rec.number in on_front, reason)

    pool = [r for r in feasible if all(c.holds(r) for c in rule.conditions)]
    if not pool:
        hints = []
        for c in rule.conditions:
            values = [v for r in feasible if (v := _metric(r, c.metric)) is not None]
            if values:
                best = min(values) if c.op == "<=" else max(values)
                hints.append(
                    f"{'lowest' if c.op == '<=' else 'highest'} {c.metric} of {len(values)} trials: {best:.4g}"
                )
        raise RunError(
            f"--pick {rule.text!r}: no feasible trial has {_describe(rule.conditions)}"
            + (f" ({'; '.join(hints)})" if hints else "")
        )
    if rule.kind == "max-accuracy":
        rec = min(pool, key=lambda r: (-r.accuracy, r.energy_per_inference_j, r.number))
        reason = f"max-accuracy: highest validation accuracy ({rec.accuracy:.4f}) among {len(pool)} trials with {_describe(rule.conditions)}"
    else:
        rec = min(pool, key=lambda r: (r.energy_per_inference_j, -r.accuracy, r.number))
        reason = f"min-energy: lowest energy per inference ({rec.energy_per_inference_j:.4g} J) among {len(pool)} trials with {_describe(rule.conditions)}"
    return Selection(rule, rec, rec.number in on_front, reason)
