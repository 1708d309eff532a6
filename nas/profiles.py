"""Hardware profiles as the `nas profiles list/show` commands present them (data, no printing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.config import HardwareProfile, list_profiles, load_profile
from nas.energy import meter_class
from nas.hardware import Runtime


def sensor_status(profile: HardwareProfile) -> dict[str, Any]:
    """Whether the profile's meter works on this machine, and why not (a cheap, cached probe)."""
    probe = meter_class(profile.meter).probe(profile)
    return {
        "meter": profile.meter,
        "estimated": profile.meter == "estimate",
        "available_here": probe.usable,
        "reason": probe.reason or None,
    }


def profile_summary(profile: HardwareProfile) -> dict[str, Any]:
    """One row of `nas profiles list`."""
    return {
        "name": profile.name,
        "description": profile.description,
        "meter": profile.meter,
        "device_kind": profile.device_kind,
        "device_match": profile.device_match,
        "batch_size": profile.batch_size,
        "precision": profile.precision,
        "precisions": list(profile.precisions),
        "runtime": profile.runtime.to_dict(),
        "objective_energy": "estimate"
        if profile.meter == "estimate"
        else ("net" if profile.protocol.subtract_idle else "gross"),
        "sensor": sensor_status(profile),
        "file": profile.source,
    }


def profile_summaries() -> list[dict[str, Any]]:
    """Every shipped profile (nas/resources/hardware_profiles/*.yaml), summarised."""
    return [profile_summary(load_profile(p)) for p in list_profiles()]


def profile_details(name_or_path: str) -> dict[str, Any]:
    """Everything a profile holds (every number with its source), plus its sensor status here."""
    profile = load_profile(name_or_path)
    doc = profile.to_dict()
    doc["file"] = doc.pop("source")
    doc["sensor"] = sensor_status(profile)
    return doc


def format_summaries(rows: list[dict[str, Any]]) -> str:
    """The text table of `nas profiles list`."""
    lines = [f"{'name':<18} {'meter':<9} {'kind':<4} {'runtime':<11} {'sensor here':<11} description"]
    for r in rows:
        here = "estimate" if r["sensor"]["estimated"] else ("yes" if r["sensor"]["available_here"] else "no")
        lines.append(
            f"{r['name']:<18} {r['meter']:<9} {r['device_kind']:<4} {r['runtime']['name']:<11} "
            f"{here:<11} {r['description']}"
        )
    return "\n".join(lines)


def format_details(doc: dict[str, Any]) -> str:
    """The text of `nas profiles show`: the profile's YAML file as written, then the runtime the
    measurements use once defaults are filled in (a file may leave `runtime` out: `torch`)."""
    runtime = Runtime(**doc["runtime"])
    text = Path(doc["file"]).read_text(encoding="utf-8").rstrip("\n")
    return f"{text}\n# resolved runtime: {runtime.describe()}"


__all__ = [
    "format_details",
    "format_summaries",
    "profile_details",
    "profile_summaries",
    "profile_summary",
    "sensor_status",
]
