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
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import platform
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from nas.architecture import Architecture
from nas.artifacts import load_trial_model, sha256_file, state_dict_cpu
from nas.compress import prune
from nas.data import Dataset, load_dataset
from nas.deploy import CALIBRATION_SAMPLES, deploy, prune_ratio_of, rebuild
from nas.errors import ConfigError, ExportError
from nas.models import build_model
from nas.report import Report, build_report
from nas.selection import Selection
from nas.train import TrainConfig, accuracy, train

TOLERANCE = 1e-4  # max abs difference in logits accepted between PyTorch and an exported copy
CHECK_INPUTS = 32  # test inputs each exported copy is run on
FILES = {
    "architecture_yaml": "architecture.yaml",
    "architecture_json": "architecture.json",
    "weights": "weights.pt",
    "weights_safetensors": "weights.safetensors",
    "torchscript": "model.torchscript.pt",
    "onnx": "model.onnx",
    "card_json": "report_card.json",
    "card_md": "report_card.md",
}
ARCH_FORMAT = "energy-nas architecture v1"


# ------------------------------------------------------------------------------------ reading back
@dataclass(frozen=True)
class ExportedArchitecture:
    architecture: Architecture
    input_shape: tuple[int, ...]
    num_classes: int


def load_architecture(path: str | Path) -> ExportedArchitecture:
    """Read an exported architecture.yaml or architecture.json."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: unreadable ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None
    arch = Architecture.from_dict(doc, str(path))
    try:
        shape = tuple(int(d) for d in doc["input_shape"])
        classes = int(doc["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: fields 'input_shape' (list of ints) and 'num_classes' (int) are required") from None
    return ExportedArchitecture(arch, shape, classes)


def load_exported_model(directory: str | Path) -> nn.Module:
    """Rebuild an exported model from its architecture file and weights.pt (weights_only=True)."""
    directory = Path(directory)
    spec = load_architecture(directory / FILES["architecture_json"])
    model = rebuild(spec.architecture, spec.input_shape, spec.num_classes)
    state = torch.load(directory / FILES["weights"], map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


# ------------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class ExportCheck:
    """One exported copy run against the PyTorch model on the same inputs."""

    name: str  # "rebuilt", "torchscript", "onnxruntime"
    max_abs_diff: float
    inputs: int
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "max_abs_diff": self.max_abs_diff, "inputs": self.inputs,
                "tolerance": TOLERANCE, "passed": self.passed}


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    selection: Selection
    files: dict[str, Path]
    checks: tuple[ExportCheck, ...]
    card: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "trial": self.selection.record.number,
            "selection": self.selection.to_dict(),
            "files": {k: str(v) for k, v in self.files.items()},
            "checks": [c.to_dict() for c in self.checks],
            "report_card": self.card,
        }


# ------------------------------------------------------------------------------------ helpers
def _target(out: Path, key: str) -> Path:
    """The path of export file `key`, refusing anything that would land outside `out`."""
    path = out / FILES[key]
    if not path.resolve().is_relative_to(out.resolve()):
        raise ExportError(f"{path}: resolves outside the export folder {out} (a symbolic link?); refusing to write")
    return path


def prepare_out_dir(out: Path, force: bool) -> None:
    """Create `out`; refuse a non-empty one unless `force`, which replaces our files only."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ExportError(f"{out}: folder exists and is not empty; pass --force to overwrite the export files in it")
        for key in FILES:
            path = _target(out, key)
            if path.is_file():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _max_diff(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def _check(name: str, reference: torch.Tensor, got: Any, n: int) -> ExportCheck:
    diff = _max_diff(reference, got)
    return ExportCheck(name, diff, n, diff <= TOLERANCE)


def _need_export_extra() -> None:
    missing = []
    for module in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: pip install 'energy-nas[export]'")


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    # TorchScript is deprecated in recent PyTorch but still the format many C++ and mobile
    # runtimes load; the deprecation warning is not the user's concern here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(path))


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # e.g. "torchvision is not installed" registration notes
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(path), input_names=["input"], output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False,
                external_data=False,  # one self-contained file; our models are far below protobuf's 2 GB
            )
    except Exception as e:
        raise ExportError(f"{path}: torch.onnx.export failed ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    finally:
        quiet.setLevel(level)


def _run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _retrain(spec: ExportedArchitecture, data: Dataset, settings: dict[str, Any], seed: int, epochs: int) -> tuple[nn.Module, dict[str, Any]]:
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
        "epochs": done, "trained_on": "train + validation", "samples": len(both.y_train),
        "duration_s": duration, "seed": seed, "batch_size": batch, "lr": lr,
    }


# ------------------------------------------------------------------------------------ export
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
    """Export the trial chosen by `trial` or `pick` (exactly one) from the run at `run_path`."""
    if (trial is None) == (pick is None):
        raise ConfigError("export: give exactly one of --trial N or --pick RULE")
    if retrain_epochs is not None and retrain_epochs < 1:
        raise ConfigError(f"--retrain-epochs: expected an integer >= 1, got {retrain_epochs}")
    _need_export_extra()
    out = Path(out_dir)
    report = build_report(run_path, storage, pick=f"trial:{trial}" if trial is not None else pick)
    sel = report.pick
    assert sel is not None
    rec = sel.record
    if out.resolve() == report.run.path.resolve() or report.run.path.resolve().is_relative_to(out.resolve()):
        raise ExportError(f"{out}: would overwrite the run folder; choose another -o")
    prepare_out_dir(out, force)

    settings = report.settings
    data = load_dataset(str(settings.get("dataset", "digits")), int(settings.get("split_seed", 0)))
    arch = Architecture.from_dict(rec.architecture, f"trial {rec.number}")
    spec = ExportedArchitecture(arch, tuple(data.input_shape), int(data.num_classes))
    retrained: dict[str, Any] | None = None
    if retrain_epochs is not None:
        model, retrained = _retrain(spec, data, settings, int(rec.attrs.get("seed", rec.number)), retrain_epochs)
        weights_from = f"retrained for {retrain_epochs} epochs on train + validation"
    else:
        model = load_trial_model(report.run, rec.number, storage).model
        weights_from = f"the run's artifact store (weights of trial {rec.number} as searched)"
    model = model.cpu().eval()
    precision = str(rec.attrs.get("precision", arch.params.get("precision", "fp32")))
    if retrained is not None:
        deployed = deploy(model, precision, data.x_train[:CALIBRATION_SAMPLES], "cpu", input_shape=spec.input_shape).model
        retrained["test_accuracy"] = accuracy(deployed, data.x_test, data.y_test)
        retrained["precision"] = precision

    files: dict[str, Path] = {}
    doc = {"format": ARCH_FORMAT, **arch.to_dict(), "input_shape": list(spec.input_shape), "num_classes": spec.num_classes}
    files["architecture_json"] = _target(out, "architecture_json")
    files["architecture_json"].write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    files["architecture_yaml"] = _target(out, "architecture_yaml")
    files["architecture_yaml"].write_text(
        f"# trial {rec.number} of run {report.run.path} ({rec.attrs.get('arch', '')}); "
        f"rebuild with nas.export.load_exported_model\n" + yaml.safe_dump(doc, sort_keys=False),
        encoding="utf-8",
    )
    state = state_dict_cpu(model)
    files["weights"] = _target(out, "weights")
    torch.save(state, files["weights"])
    try:
        from safetensors.torch import save_file

        files["weights_safetensors"] = _target(out, "weights_safetensors")
        save_file(state, str(files["weights_safetensors"]), metadata={"trial": str(rec.number), "format": ARCH_FORMAT})
    except ImportError:
        pass

    x = data.x_test[:CHECK_INPUTS].contiguous()
    with torch.no_grad():
        reference = model(x)
        checks = [_check("rebuilt from architecture.json + weights.pt (weights_only=True)", reference,
                         load_exported_model(out)(x), len(x))]
        files["torchscript"] = _target(out, "torchscript")
        _write_torchscript(model, x, files["torchscript"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # see _write_torchscript
            scripted = torch.jit.load(str(files["torchscript"]))
        checks.append(_check("torchscript (torch.jit.load)", reference, scripted(x), len(x)))
    files["onnx"] = _target(out, "onnx")
    _write_onnx(model, x, files["onnx"])
    checks.append(_check("onnx (ONNX Runtime, CPUExecutionProvider)", reference, _run_onnx(files["onnx"], x), len(x)))

    with torch.no_grad():
        exported_acc = accuracy(model, data.x_test, data.y_test)
    card = report_card(report, sel, spec, checks, files, weights_from, retrained, exported_acc, precision)
    files["card_json"] = _target(out, "card_json")
    files["card_json"].write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    files["card_md"] = _target(out, "card_md")
    files["card_md"].write_text(card_markdown(card), encoding="utf-8")
    result = ExportResult(out, sel, files, tuple(checks), card)
    failed = [c for c in checks if not c.passed]
    if failed:
        worst = max(failed, key=lambda c: c.max_abs_diff)
        raise ExportError(
            f"{out}: {worst.name} differs from PyTorch by {worst.max_abs_diff:.3g} > {TOLERANCE:g} "
            f"(files kept for inspection; see report_card.json)"
        )
    return result


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("onnx", "onnxruntime", "onnxscript", "safetensors", "optuna"):
        try:
            out[module] = __import__(module).__version__
        except ImportError:
            pass
    return out


def report_card(report: Report, sel: Selection, spec: ExportedArchitecture, checks: list[ExportCheck],
                files: dict[str, Path], weights_from: str, retrained: dict[str, Any] | None,
                exported_test_accuracy: float, precision: str) -> dict[str, Any]:
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
        "architecture": {**spec.architecture.to_dict(), "summary": a.get("arch", spec.architecture.describe()),
                         "input_shape": list(spec.input_shape), "num_classes": spec.num_classes},
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
        "latency": {"value_s": rec.latency_s, "per": f"batch of {energy.get('batch_size', '?')} inputs",
                    "method": energy.get("latency_method")},
        "params": rec.params,
        "macs": rec.macs,
        "profile": {"name": s.get("profile"), "meter": profile_doc.get("meter"), "device": energy.get("device_name"),
                    "description": profile_doc.get("description")},
        "dataset": run_meta.get("dataset"),
        "seed": {"trial": a.get("seed"), "search": s.get("seed"), "split": s.get("split_seed")},
        "training": a.get("training"),
        "search": {"run": str(report.run.path), "study": report.study_name, "settings": s},
        "checks": [c.to_dict() for c in checks],
        "files": {k: {"path": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size}
                  for k, p in files.items() if p.exists()},
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
        lines.append(f"| retrained ({r['epochs']} epochs, {r['trained_on']}), test accuracy | {r['test_accuracy']:.4f} |")
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
    lines += [f"- {c['name']}: {c['max_abs_diff']:.3g} on {c['inputs']} inputs "
              f"({'ok' if c['passed'] else 'FAILED'}, tolerance {c['tolerance']:g})" for c in card["checks"]]
    lines += ["", "## Files", ""]
    lines += [f"- `{f['path']}` ({f['bytes']:,} bytes, sha256 `{f['sha256'][:16]}...`)" for f in card["files"].values()]
    lines += ["", "## Energy record", "", "```json", json.dumps(en["record"], indent=2, default=str), "```", ""]
    return "\n".join(lines)


def format_export(result: ExportResult) -> str:
    """What the CLI prints after an export."""
    sel = result.selection
    lines = [f"exported trial #{sel.record.number} to {result.out_dir}/ ({sel.reason})"]
    for c in result.checks:
        lines.append(f"  check {c.name}: max abs difference {c.max_abs_diff:.3g} on {c.inputs} test inputs "
                     f"({'ok' if c.passed else 'FAILED'}, tolerance {TOLERANCE:g})")
    lines.append("  files: " + ", ".join(p.name for p in result.files.values()))
    retrained = result.card.get("accuracy", {}).get("retrained")
    if retrained:
        lines.append(f"  retrained {retrained['epochs']} epochs on {retrained['trained_on']}: "
                     f"test accuracy {retrained['test_accuracy']:.4f} (searched: {sel.record.test_accuracy})")
    return "\n".join(lines)
