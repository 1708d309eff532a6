"""The export formats, as a table: name -> the files it writes, how to write them, how to check them.

`EXPORTERS` maps a format's name to an `Exporter`; `nas.export.export_run` runs them in table
order (later formats may rely on earlier files: the weights check rebuilds the model from the
architecture file). A new format is one `register_exporter(Exporter(...))` call: its files are
then written, checked against the PyTorch model on the same test inputs, cleaned by `--force`,
hashed in the report card and covered by the registry's contract test.

Reading an export back (`load_architecture`, `load_exported_model`) lives here too, beside the
writers of the files it reads.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from nas.architecture import Architecture
from nas.artifacts import state_dict_cpu
from nas.deploy import rebuild
from nas.errors import ConfigError, ExportError
from nas.runtimes import write_onnx, write_torchscript

TOLERANCE = 1e-4  # max abs difference in logits accepted between PyTorch and an exported copy
ARCH_FORMAT = "energy-nas architecture v1"
ARCHITECTURE_JSON = "architecture.json"
WEIGHTS_PT = "weights.pt"


# ------------------------------------------------------------------------------------ reading back
@dataclass(frozen=True)
class ExportedArchitecture:
    """An architecture as exported: the genotype, the input shape (C, H, W) or (features,) of one
    sample, and the number of classes the model's logits cover."""

    architecture: Architecture
    input_shape: tuple[int, ...]
    num_classes: int
    # how raw inputs become what the model takes (nas.data.preprocessing): written, not compared
    preprocessing: Mapping[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """What architecture.json/.yaml hold (the `format` tag first; `preprocessing` when known)."""
        doc = {
            "format": ARCH_FORMAT,
            **self.architecture.to_dict(),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
        }
        if self.preprocessing:
            doc["preprocessing"] = dict(self.preprocessing)
        return doc


def load_architecture(path: str | Path) -> ExportedArchitecture:
    """Read an exported architecture.yaml or architecture.json.

    Raises ConfigError naming the file for a missing or unreadable file, a bad genotype, or
    missing `input_shape` (list of ints) / `num_classes` (int).
    """
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
    """Rebuild an exported model (float32, eval mode, on CPU) from its architecture.json and
    weights.pt, loaded with `weights_only=True`. Raises ConfigError for a bad architecture file."""
    directory = Path(directory)
    spec = load_architecture(directory / ARCHITECTURE_JSON)
    model = rebuild(spec.architecture, spec.input_shape, spec.num_classes)
    state = torch.load(directory / WEIGHTS_PT, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


# ------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class ExportCheck:
    """One exported copy run against the PyTorch model on the same inputs: the largest absolute
    difference of their logits, over `inputs` test inputs, and whether it is within TOLERANCE."""

    name: str  # "rebuilt ...", "torchscript ...", "onnx ..."
    max_abs_diff: float
    inputs: int
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the tolerance it was held to."""
        return {
            "name": self.name,
            "max_abs_diff": self.max_abs_diff,
            "inputs": self.inputs,
            "tolerance": TOLERANCE,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class ExportJob:
    """What every exporter gets: the float32 CPU model in eval mode, its architecture, the
    folder's paths of every export file (`paths[file key]`), test inputs `x` of shape
    (N, *input_shape) and the model's logits on them, `reference`, of shape (N, num_classes)."""

    model: nn.Module
    spec: ExportedArchitecture
    paths: dict[str, Path]
    x: torch.Tensor
    reference: torch.Tensor
    header: str = ""  # a comment for text files: which trial of which run
    metadata: dict[str, str] = field(default_factory=dict)  # for formats that store string metadata

    def check(self, name: str, got: torch.Tensor | np.ndarray) -> ExportCheck:
        """Compare an exported copy's logits on `x` with the reference."""
        diff = _max_diff(self.reference, got)
        return ExportCheck(name, diff, len(self.x), diff <= TOLERANCE)


@dataclass(frozen=True)
class Exporter:
    """One export format.

    `files` maps file keys (as in `ExportResult.files` and the report card) to file names;
    `write(job)` writes them at `job.paths[key]`; `check(job)`, if given, loads the written copy,
    runs it on `job.x` and returns its `ExportCheck`. `requires` names the modules the format
    needs: missing ones fail the export before anything is written, unless `optional`, which
    skips the format instead (its files are then absent).
    """

    name: str
    files: dict[str, str]
    write: Callable[[ExportJob], None]
    check: Callable[[ExportJob], ExportCheck] | None = None
    requires: tuple[str, ...] = ()
    optional: bool = False

    def available(self) -> bool:
        """Whether every module in `requires` can be imported here."""
        return all(importlib.util.find_spec(m) is not None for m in self.requires)


EXPORTERS: dict[str, Exporter] = {}


def register_exporter(exporter: Exporter) -> Exporter:
    """Add a format to the table (after the others). Raises ValueError for a name or a file
    name already taken."""
    if exporter.name in EXPORTERS:
        raise ValueError(f"exporter {exporter.name!r} is already registered")
    taken = {k for e in EXPORTERS.values() for k in e.files} | {n for e in EXPORTERS.values() for n in e.files.values()}
    clash = (set(exporter.files) | set(exporter.files.values())) & taken
    if clash:
        raise ValueError(f"exporter {exporter.name!r}: file key or name already used: {', '.join(sorted(clash))}")
    EXPORTERS[exporter.name] = exporter
    return exporter


def export_files() -> dict[str, str]:
    """Every file key -> file name the table can write, in table order."""
    return {k: n for e in EXPORTERS.values() for k, n in e.files.items()}


def need_export_extra() -> None:
    """Raise ExportError naming the missing modules of the first non-optional format lacking any."""
    for e in EXPORTERS.values():
        missing = [m for m in e.requires if importlib.util.find_spec(m) is None]
        if missing and not e.optional:
            raise ExportError(f"{e.name} export needs {', '.join(missing)}: pip install 'energy-nas[export]'")


def _max_diff(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


# ------------------------------------------------------------------------------------ the formats
def _write_architecture(job: ExportJob) -> None:
    doc = job.spec.to_dict()
    job.paths["architecture_json"].write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    comment = f"# {job.header}; rebuild with nas.export.load_exported_model\n" if job.header else ""
    job.paths["architecture_yaml"].write_text(comment + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def _write_weights(job: ExportJob) -> None:
    torch.save(state_dict_cpu(job.model), job.paths["weights"])


def _check_weights(job: ExportJob) -> ExportCheck:
    with torch.no_grad():
        got = load_exported_model(job.paths["weights"].parent)(job.x)
    return job.check("rebuilt from architecture.json + weights.pt (weights_only=True)", got)


def _write_safetensors(job: ExportJob) -> None:
    from safetensors.torch import save_file

    save_file(state_dict_cpu(job.model), str(job.paths["weights_safetensors"]), metadata=job.metadata)


def _write_torchscript(job: ExportJob) -> None:
    write_torchscript(job.model, job.x, job.paths["torchscript"])  # what the torchscript runtime measures


def _check_torchscript(job: ExportJob) -> ExportCheck:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # see _write_torchscript
        scripted = torch.jit.load(str(job.paths["torchscript"]))
        return job.check("torchscript (torch.jit.load)", scripted(job.x))


def _write_onnx(job: ExportJob) -> None:
    write_onnx(job.model, job.x, job.paths["onnx"])  # what the onnxruntime runtime measures


def _run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _check_onnx(job: ExportJob) -> ExportCheck:
    return job.check("onnx (ONNX Runtime, CPUExecutionProvider)", _run_onnx(job.paths["onnx"], job.x))


register_exporter(
    Exporter(
        "architecture",
        {"architecture_json": ARCHITECTURE_JSON, "architecture_yaml": "architecture.yaml"},
        _write_architecture,
    )
)
register_exporter(Exporter("weights", {"weights": WEIGHTS_PT}, _write_weights, _check_weights))
register_exporter(
    Exporter(
        "safetensors",
        {"weights_safetensors": "weights.safetensors"},
        _write_safetensors,
        requires=("safetensors",),
        optional=True,
    )
)
register_exporter(
    Exporter("torchscript", {"torchscript": "model.torchscript.pt"}, _write_torchscript, _check_torchscript)
)
register_exporter(
    Exporter(
        "onnx",
        {"onnx": "model.onnx"},
        _write_onnx,
        _check_onnx,
        requires=("onnx", "onnxruntime", "onnxscript"),
    )
)
