"""Physical quantities typed by users: `50uJ`, `5ms`, `95%`, `2e-7` (one table for every flag and rule).

Energies take J, mJ, uJ (or µJ), nJ, pJ; latencies and durations s, ms, us (µs), ns; accuracies
a fraction or a percentage. A bare number is in the base unit (J, s, fraction). Used by the
selection rules (`--pick`) and by the budget flags (`--energy-budget`, `--latency-budget`), so
both read the same strings.
"""

from __future__ import annotations

import math
import re

from nas.errors import ConfigError

UNITS: dict[str, dict[str, float]] = {
    "energy": {"": 1.0, "J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "µJ": 1e-6, "nJ": 1e-9, "pJ": 1e-12},
    "latency": {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9},
    "accuracy": {"": 1.0, "%": 0.01},
}
BASE_UNIT = {"energy": "J", "latency": "s", "accuracy": "fraction"}
_QUANTITY_RE = re.compile(r"^\s*(?P<num>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*(?P<unit>\S*)\s*$")


def parse_quantity(text: str, kind: str, what: str) -> float:
    """`text` (like `50uJ`, `5 ms`, `2e-7`) as a finite float > 0 in the base unit of `kind`.

    `kind` is a key of UNITS; `what` names the flag or field in errors (e.g. `--energy-budget`).
    Raises ConfigError (one line, naming `what`) for an unreadable number, an unknown unit, or a
    value that is not finite and > 0 (`nan`, `inf`, `0`, `1e999J`).
    """
    units = UNITS[kind]
    valid = ", ".join(u for u in units if u)
    m = _QUANTITY_RE.match(str(text))
    if not m:
        raise ConfigError(
            f"{what}: cannot read {str(text)[:60]!r} as a quantity (expected a number with a unit: {valid})"
        )
    scale = units.get(m["unit"])
    if scale is None:
        raise ConfigError(
            f"{what}: unknown unit {m['unit'][:20]!r} for {kind} (valid: {valid}; none means {BASE_UNIT[kind]})"
        )
    value = float(m["num"]) * scale
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what}: expected a finite {kind} > 0, got {str(text)[:60]!r}")
    return value
