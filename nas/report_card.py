"""The report card of an exported model: what a user of it needs to know, as JSON and Markdown.

`nas.export` writes it last, beside the exported files it describes (their names, sizes and
SHA-256 hashes, and the checks each exported copy passed).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nas.artifacts import sha256_file
from nas.models import architecture_label

if TYPE_CHECKING:
    from nas.exporters import ExportCheck, ExportedArchitecture
    from nas.report import Report
    from nas.selection import Selection


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("onnx", "onnxruntime", "onnxscript", "safetensors", "optuna"):
        try:
            out[module] = __import__(module).__version__
        except ImportError:
            pass
    return out


def report_card(
    report: Report,
    sel: Selection,
    spec: ExportedArchitecture,
    checks: list[ExportCheck],
    files: dict[str, Path],
    weights_from: str,
    retrained: dict[str, Any] | None,
    exported_test_accuracy: float,
    precision: str,
) -> dict[str, Any]:
    """Everything a user of the exported model needs to know about it, as JSON-ready data."""
    rec = sel.record
    a = rec.attrs
    energy = dict(a.get("energy") or {})
    run_meta = report.run.read_run_json()
    profile_doc = run_meta.get("profile") or {}
    s = report.settings
    return {
        "format": "energy-nas report card v1",
        "trial": rec.number,
        "selection": sel.to_dict(),
        "architecture": {
            **spec.architecture.to_dict(),
            "summary": a.get("arch") or architecture_label(spec.architecture),
            "input_shape": list(spec.input_shape),
            "num_classes": spec.num_classes,
        },
        "weights": weights_from,
        "accuracy": {
            "validation": rec.accuracy,
            "test": rec.test_accuracy,
            "measured_at_precision": precision,
            "note": "validation accuracy selected the model; test accuracy was never used to select",
            "exported_float32_test": exported_test_accuracy,
            "retrained": retrained,
        },
        "energy_per_inference": {
            "value_j": rec.energy_per_inference_j,
            "method": rec.energy_method,
            "estimated": rec.energy_method.startswith("estimated"),
            "precision": energy.get("precision", precision),
            "batch_size": energy.get("batch_size"),
            "note": "of the deployed form searched (this precision, pruned as listed); a dense model's "
            "inference energy does not depend on its weight values, so retraining keeps it",
            "record": energy,
        },
        "latency": {
            "value_s": rec.latency_s,
            "per": f"batch of {energy.get('batch_size', '?')} inputs",
            "method": energy.get("latency_method"),
        },
        "params": rec.params,
        "macs": rec.macs,
        "profile": {
            "name": s.get("profile"),
            "meter": profile_doc.get("meter"),
            "device": energy.get("device_name"),
            "description": profile_doc.get("description"),
        },
        "dataset": run_meta.get("dataset"),
        "seed": {"trial": a.get("seed"), "search": s.get("seed"), "split": s.get("split_seed")},
        "training": a.get("training"),
        "search": {"run": str(report.run.path), "study": report.study_name, "settings": s},
        "checks": [c.to_dict() for c in checks],
        "files": {
            k: {"path": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size}
            for k, p in files.items()
            if p.exists()
        },
        "versions": _versions(),
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The report card as Markdown for people."""
    acc, en, lat = card["accuracy"], card["energy_per_inference"], card["latency"]
    est = " **(ESTIMATED, not measured)**" if en["estimated"] else ""
    lines = [
        f"# Report card: trial {card['trial']} — {card['architecture']['summary']}",
        "",
        f"Selected by `{card['selection']['rule']}`: {card['selection']['reason']}.",
        f"Weights: {card['weights']}.",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| validation accuracy | {acc['validation']:.4f} (at {acc['measured_at_precision']}) |",
        f"| test accuracy | {'-' if acc['test'] is None else format(acc['test'], '.4f')} (never used to select) |",
        f"| exported float32 model, test accuracy | {acc['exported_float32_test']:.4f} |",
    ]
    if acc["retrained"]:
        r = acc["retrained"]
        lines.append(
            f"| retrained ({r['epochs']} epochs, {r['trained_on']}), test accuracy | {r['test_accuracy']:.4f} |"
        )
    lines += [
        f"| energy per inference | {en['value_j']:.4g} J, `{en['method']}`{est} |",
        f"| latency | {'-' if lat['value_s'] is None else format(lat['value_s'], '.4g')} s per {lat['per']} (`{lat['method']}`) |",
        f"| parameters | {card['params']:,} |",
        f"| MACs per inference | {card['macs']:,} |",
        f"| hardware profile | {card['profile']['name']} ({card['profile']['meter']}; {card['profile']['device']}) |",
        f"| dataset | {(card['dataset'] or {}).get('name')} (split seed {card['seed']['split']}) |",
        f"| seeds | trial {card['seed']['trial']}, search {card['seed']['search']} |",
        "",
        "## Export checks (same test inputs, max abs difference of the logits)",
        "",
    ]
    lines += [
        f"- {c['name']}: {c['max_abs_diff']:.3g} on {c['inputs']} inputs "
        f"({'ok' if c['passed'] else 'FAILED'}, tolerance {c['tolerance']:g})"
        for c in card["checks"]
    ]
    lines += ["", "## Files", ""]
    lines += [f"- `{f['path']}` ({f['bytes']:,} bytes, sha256 `{f['sha256'][:16]}...`)" for f in card["files"].values()]
    lines += ["", "## Energy record", "", "```json", json.dumps(en["record"], indent=2, default=str), "```", ""]
    return "\n".join(lines)
