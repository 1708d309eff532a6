"""A corpus of bad and hostile inputs, each driven through the CLI in-process (click's CliRunner).

Every case asserts the contract for user errors: a non-zero exit, exactly one `nas: error:` line
on stderr naming the file and field (or the flag, or the array), no traceback, nothing stored
changed, and nothing left behind that blocks the corrected command (the --out folder of a refused
search is absent or empty). Memory-hostile documents are also loaded in a child process whose
peak resident memory is checked (test_yaml_bombs_stay_small).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nas.cli import main

REPO = Path(__file__).resolve().parent.parent
SPACE = (REPO / "nas" / "resources" / "search_spaces" / "mlp.yaml").read_text()
PROFILE = (REPO / "nas" / "resources" / "hardware_profiles" / "cpu-host.yaml").read_text()
FAST = ["--epochs", "1", "--trials", "1", "--quiet"]
SECRET = "hunter2-secret"

LAUGHS = "\n".join(
    ["lol: &l0 [" + ", ".join(['"' + "x" * 40 + '"'] * 10) + "]"]
    + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 8)]
)


def _space(tmp: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


def _profile_with(old: str, new: str) -> str:
    assert old in PROFILE, old
    return PROFILE.replace(old, new, 1)


def _mlp(
    params: str = "",
    layers: str = "  count: {low: 1, high: 2}\n  params:\n    width: {choices: [8, 16]}\n",
    top: str = "",
) -> str:
    return (
        f"family: mlp\n{top}params:\n  activation: {{choices: [relu]}}\n  dropout: {{choices: [0.0]}}\n{params}"
        f"layers:\n{layers}"
    )


# --------------------------------------------------------------------------- cases
# Each builder gets a temporary folder and returns (command line, strings the error line must hold).
Case = Callable[[Path], tuple[list[str], list[str]]]


def space_case(text: str | bytes, *needles: str) -> Case:
    def build(tmp: Path) -> tuple[list[str], list[str]]:
        path = _space(tmp, text)
        return ["search", "--space", str(path), *FAST, "--out", str(tmp / "run")], [str(path), *needles]

    return build


def profile_case(text: str, *needles: str) -> Case:
    def build(tmp: Path) -> tuple[list[str], list[str]]:
        path = _space(tmp, text, "profile.yaml")
        return ["search", "--profile", str(path), *FAST, "--out", str(tmp / "run")], [str(path), *needles]

    return build


def npz_case(arrays: dict[str, object] | bytes, *needles: str, suffix: str = ".npz") -> Case:
    def build(tmp: Path) -> tuple[list[str], list[str]]:
        path = tmp / f"data{suffix}"
        if isinstance(arrays, bytes):
            path.write_bytes(arrays)
        else:
            with open(path, "wb") as f:
                np.savez(f, **arrays)
        return ["search", "--dataset", f"npz:{path}", *FAST, "--out", str(tmp / "run")], [str(path), *needles]

    return build


def npy_renamed(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "data.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((10, 4)))
    return ["search", "--dataset", f"npz:{path}", *FAST, "--out", str(tmp / "run")], [str(path), "not an .npz archive"]


def table_case(doc: object, *needles: str) -> Case:
    def build(tmp: Path) -> tuple[list[str], list[str]]:
        path = tmp / "table.json"
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return ["search", "--table", str(path), *FAST, "--out", str(tmp / "run")], [str(path), *needles]

    return build


def cli_case(*args: str, needles: tuple[str, ...] = ()) -> Case:
    def build(tmp: Path) -> tuple[list[str], list[str]]:
        return [a.replace("{tmp}", str(tmp)).replace("{run}", str(RUN)) for a in args], list(needles)

    return build


MLP_GENOTYPE = '{"family": "mlp", "params": {"activation": "relu", "dropout": 0.0}, "units": [{"width": 32}]}'


def csv_case(command: str, header: str, cell: str, *needles: str) -> Case:
    """`nas estimate` or `nas profiles calibrate` (-o into the temporary folder) on a measurements CSV
    of three rows of the mlp genotype, each `cell` under `header`'s last column."""

    def build(tmp: Path) -> tuple[list[str], list[str]]:
        path = tmp / "measured.csv"
        arch = '"' + MLP_GENOTYPE.replace('"', '""') + '"'
        path.write_text(f"{header}\n" + "".join(f"{arch},{e}e-6,{cell}\n" for e in (1, 2, 3)))
        args = ["estimate", "--profile", "cpu-host", "--from", str(path)]
        if command == "calibrate":
            args = ["profiles", "calibrate", "cpu-host", "--from", str(path), "-o", str(tmp / "cal.yaml")]
        return args, [str(path), *needles]

    return build


def rng_x(n: int, shape: tuple[int, ...] = (4, 4), dtype: object = np.float32) -> np.ndarray:
    return np.random.default_rng(0).random((n, *shape)).astype(dtype)


def labels(n: int, classes: int = 3) -> np.ndarray:
    return np.arange(n) % classes


GOOD = {"x_train": rng_x(30), "y_train": labels(30), "x_test": rng_x(9), "y_test": labels(9)}


def npz(**changes: object) -> dict[str, object]:
    return {k: v for k, v in {**GOOD, **changes}.items() if v is not None}


TABLE_SETTINGS = {
    "space": "bench-mlp",
    "profile": "cpu-host",
    "dataset": "digits",
    "epochs": 1,
    "batch_size": 64,
    "lr": 0.003,
    "split_seed": 0,
    "allow_estimate": False,
    "objectives": ["accuracy", "energy"],
}
ROW = {"values": {"accuracy": 0.5, "energy": 1e-6}, "user_attrs": {}}


def table(**changes: object) -> dict[str, object]:
    doc = {"version": 1, "space": {}, "profile": {}, "settings": TABLE_SETTINGS, "rows": {"{}": ROW}}
    return {**doc, **changes}


CASES: dict[str, Case] = {
    # ---- search spaces: YAML itself
    "space-malformed": space_case("family: mlp\nparams: [unclosed\n", "malformed YAML"),
    "space-duplicate-top-key": space_case(_mlp() + "family: cnn\n", "duplicate key 'family'"),
    "space-duplicate-nested-key": space_case(
        _mlp(params="  activation: {choices: [gelu]}\n"), "duplicate key 'activation'"
    ),
    "space-billion-laughs": space_case(LAUGHS + "\n" + _mlp(), "expands to more than"),
    "space-laughs-in-when": space_case(
        LAUGHS + "\n" + _mlp(params="  lr: {low: 0.1, high: 1.0, when: {activation: *l7}}\n"), "expands to more than"
    ),
    "space-recursive-alias": space_case("family: mlp\nparams: &p {a: *p}\n", "recursive alias"),
    "space-over-1MiB": space_case("# " + "x" * (1 << 20) + "\n" + _mlp(), "larger than"),
    "space-not-utf8": space_case(b"family: \xff\xfe mlp\n", "not UTF-8"),
    "space-top-level-list": space_case("- family: mlp\n", "field '(top level)'", "mapping"),
    "space-empty-file": space_case("", "expected a mapping"),
    "space-python-tag": space_case("family: !!python/object/apply:os.system [echo pwned]\n", "malformed YAML"),
    "space-huge-int": space_case(_mlp(layers="  count: {low: 1, high: " + "9" * 5000 + "}\n"), "malformed YAML"),
    # ---- search spaces: fields
    "space-unknown-family": space_case("family: transformerz\n", "field 'family'"),
    "space-unknown-top-field": space_case(_mlp(top="colour: blue\n"), "field 'colour'", "unknown field"),
    "space-count-a-million": space_case(
        _mlp(layers="  count: {low: 1, high: 1000000}\n  params:\n    width: {choices: [8]}\n"), "layers.count.high"
    ),
    "space-count-zero": space_case(
        _mlp(layers="  count: {low: 0, high: 2}\n  params:\n    width: {choices: [8]}\n"), "layers.count"
    ),
    "space-width-2-40": space_case(
        _mlp(layers="  count: {low: 1, high: 2}\n  params:\n    width: {choices: [1099511627776]}\n"),
        "layers.params.width",
    ),
    "space-width-100k": space_case(
        _mlp(layers="  count: {low: 1, high: 2}\n  params:\n    width: {choices: [100000]}\n"),
        "layers.params.width",
        "at most",
    ),
    "space-when-mapping-value": space_case(
        _mlp(layers="  count: {low: 1, high: 2}\n  params:\n    width: {choices: [8], when: {activation: {a: 1}}}\n"),
        "when.activation",
        "scalar",
    ),
    "space-when-unknown-param": space_case(
        _mlp(layers="  count: {low: 1, high: 2}\n  params:\n    width: {choices: [8], when: {ghost: 1}}\n"),
        "width.when",
        "ghost",
    ),
    "space-empty-choices": space_case(_mlp().replace("[relu]", "[]"), "params.activation.choices", "non-empty"),
    "space-nan-choice": space_case(_mlp().replace("[0.0]", "[.nan]"), "params.dropout.choices"),
    "space-low-above-high": space_case(
        _mlp(layers="  count: {low: 3, high: 1}\n  params:\n    width: {choices: [8]}\n"), "layers.count", "above high"
    ),
    "space-inf-range": space_case(
        _mlp().replace("dropout: {choices: [0.0]}", "dropout: {low: 0.0, high: .inf}"), "params.dropout.high", "finite"
    ),
    "space-description-list": space_case(_mlp(top="description: [a, b]\n"), "field 'description'", "string"),
    "space-description-5000": space_case(
        _mlp(top="description: " + "d" * 5000 + "\n"), "field 'description'", "at most 2000"
    ),
    "space-log-from-zero": space_case(
        _mlp().replace("dropout: {choices: [0.0]}", "dropout: {low: 0.0, high: 0.5, log: true}"),
        "params.dropout",
        "log",
    ),
    "space-negative-step": space_case(
        _mlp().replace("dropout: {choices: [0.0]}", "dropout: {low: 0.0, high: 0.5, step: -0.1}"), "params.dropout.step"
    ),
    "space-dropout-1.5": space_case(_mlp().replace("[0.0]", "[1.5]"), "params.dropout", "[0, 1)"),
    "space-unknown-activation": space_case(_mlp().replace("[relu]", "[swishy]"), "params.activation", "swishy"),
    "space-missing-activation": space_case(
        _mlp().replace("  activation: {choices: [relu]}\n", ""), "params.activation", "required"
    ),
    "space-type-complex": space_case(
        _mlp().replace("dropout: {choices: [0.0]}", "dropout: {type: complex, low: 0, high: 1}"), "params.dropout.type"
    ),
    "space-is-a-folder": cli_case("search", "--space", "{tmp}/", *FAST, "--out", "{tmp}/run", needles=("folder",)),
    "space-missing-file": cli_case(
        "search", "--space", "{tmp}/nope.yaml", *FAST, "--out", "{tmp}/run", needles=("nope.yaml", "not found")
    ),
    "space-newline-in-name": cli_case(
        "search",
        "--space",
        "{tmp}/bad\nname.yaml",
        *FAST,
        "--out",
        "{tmp}/run",
        needles=("bad\\nname.yaml", "not found"),
    ),
    # ---- hardware profiles
    "profile-batch-2-31": profile_case(
        _profile_with("batch_size: 32", "batch_size: 2147483648"), "inference.batch_size"
    ),
    "profile-batch-100k": profile_case(_profile_with("batch_size: 32", "batch_size: 100000"), "inference.batch_size"),
    "profile-batch-string": profile_case(_profile_with("batch_size: 32", "batch_size: lots"), "inference.batch_size"),
    "profile-coefficient-1e308": profile_case(
        _profile_with("value: 4.6e-12", "value: 1e308"), "estimate.energy_per_mac_j.fp32.value"
    ),
    "profile-coefficient-inf": profile_case(
        _profile_with("value: 4.6e-12", "value: .inf"), "estimate.energy_per_mac_j.fp32.value", "finite"
    ),
    "profile-coefficient-tiny": profile_case(
        _profile_with("value: 5.0e10", "value: 1e-300"), "throughput.peak_macs_per_s.fp32.value"
    ),
    "profile-coefficient-negative": profile_case(
        _profile_with("value: 8.0", "value: -8.0"), "estimate.static_power_w.value", ">= 0"
    ),
    "profile-idle-nan": profile_case(_profile_with("value: 4.0", "value: .nan"), "power.idle_w.value", "finite"),
    "profile-description-list": profile_case(
        _profile_with(
            "description: 2-vCPU Xeon cloud slice without energy sensors (analytical estimate)", "description: [a, b]"
        ),
        "field 'description'",
        "string",
    ),
    "profile-description-laughs": profile_case(
        LAUGHS
        + "\n"
        + _profile_with(
            "description: 2-vCPU Xeon cloud slice without energy sensors (analytical estimate)", "description: *l7"
        ),
        "expands to more than",
    ),
    "profile-model-mapping": profile_case(
        _profile_with("  index: 0", "  index: 0\n  model: {a: 1}"), "device.model", "string"
    ),
    "profile-unknown-meter": profile_case(_profile_with("meter: estimate", "meter: wattmeter"), "field 'meter'"),
    "profile-duplicate-key": profile_case(
        _profile_with("  precision: fp32", "  precision: fp32\n  precision: bf16"), "duplicate key 'precision'"
    ),
    "profile-precision-not-listed": profile_case(
        _profile_with("  precision: fp32", "  precision: fp16"), "inference.precision"
    ),
    "profile-window-1e9": profile_case(PROFILE + "measurement: {min_window_s: 1e9}\n", "measurement.min_window_s"),
    "profile-repeats-million": profile_case(PROFILE + "measurement: {repeats: 1000000}\n", "measurement.repeats"),
    "profile-unknown-field": profile_case(PROFILE + "fan_speed: 3\n", "field 'fan_speed'"),
    "profile-bad-regex": profile_case(
        _profile_with("  match: null", "  match: '(('"), "device.match", "regular expression"
    ),
    "profile-source-number": profile_case(
        _profile_with('source: "assumption: peak_w - idle_w, the power the slice draws while busy"', "source: 12"),
        "estimate.static_power_w.source",
    ),
    # ---- datasets (npz)
    "npz-zero-samples": npz_case(npz(x_train=rng_x(0), y_train=labels(0)), "'x_train'", "no samples"),
    "npz-empty-test": npz_case(npz(x_test=rng_x(0), y_test=labels(0)), "'x_test'", "no samples"),
    "npz-strings": npz_case(npz(x_train=np.array([["a"] * 4] * 30)), "'x_train'", "dtype <U1"),
    "npz-npy-renamed": npy_renamed,
    "npz-1d-x": npz_case(npz(x_train=np.zeros(30, np.float32)), "'x_train'", "shape (30,)"),
    "npz-5d-x": npz_case(npz(x_train=rng_x(30, (1, 2, 2, 2))), "'x_train'", "shape"),
    "npz-nan-pixels": npz_case(
        npz(x_train=np.where(rng_x(30) > 0.5, np.nan, 0).astype(np.float32)), "'x_train'", "NaN"
    ),
    "npz-inf-pixels": npz_case(npz(x_test=np.full((9, 4, 4), np.inf, np.float32)), "'x_test'", "infinite"),
    "npz-complex": npz_case(npz(x_train=rng_x(30).astype(np.complex64)), "'x_train'", "complex64"),
    "npz-labels-far-out": npz_case(npz(y_train=labels(30) * 10**9), "'y_train'", "labels in [0, 10000)"),
    "npz-labels-negative": npz_case(npz(y_test=labels(9) - 5), "'y_test'", "labels in"),
    "npz-labels-only-in-test": npz_case(npz(y_test=labels(9) + 1), "'y_test'", "never occur in y_train"),
    "npz-single-sample": npz_case(
        npz(x_train=rng_x(1), y_train=labels(1), y_test=labels(9, 1)), "'x_train'", "too few"
    ),
    "npz-shape-mismatch": npz_case(npz(x_test=rng_x(9, (5, 5))), "'x_test'", "differ from x_train"),
    "npz-label-count": npz_case(npz(y_train=labels(29)), "'y_train'", "29 labels for 30 samples"),
    "npz-float-labels": npz_case(npz(y_train=labels(30).astype(np.float64)), "'y_train'", "integer class labels"),
    "npz-object-array": npz_case(npz(x_train=np.array([{"a": 1}] * 30, dtype=object)), "not a readable .npz"),
    "npz-missing-array": npz_case(npz(y_test=None), "missing array(s) y_test"),
    "npz-not-a-zip": npz_case(b"PK\x03\x04 this is not really a zip", "not a readable .npz"),
    "npz-2d-labels": npz_case(npz(y_train=labels(30)[:, None]), "'y_train'", "1-D"),
    # ---- replay tables
    "table-not-json": table_case("{rows: nope", "not a readable table"),
    "table-a-list": table_case([1, 2, 3], "field 'version'"),
    "table-nan-value": table_case(
        json.dumps(table(rows={"{}": {"values": {"accuracy": float("nan")}, "user_attrs": {}}})),
        "values.accuracy",
        "finite",
    ),
    "table-no-rows": table_case(table(rows={}), "field 'rows'", "at least one"),
    "table-settings-epochs-string": table_case(table(settings={**TABLE_SETTINGS, "epochs": "3"}), "settings.epochs"),
    "table-row-not-mapping": table_case(table(rows={"{}": [1]}), "rows[", "mapping"),
    "table-space-invalid": table_case(table(space={"family": "mlp"}), "table space", "params"),
    "table-partial-with-tpe": cli_case(
        "search", "--table", "{tmp}/nb201.json", *FAST, "--out", "{tmp}/run", needles=("nb201.json", "measure-first")
    ),
    "table-budget-below-every-row": cli_case(
        "search",
        "--table",
        "{tmp}/nb201.json",
        "--sampler",
        "measure-first",
        "--energy-budget",
        "50uJ",
        *FAST,
        "--out",
        "{tmp}/run",
        needles=("nb201.json", "--energy-budget", "lowest"),
    ),
    "table-missing-file": cli_case(
        "search", "--table", "{tmp}/none.json", *FAST, "--out", "{tmp}/run", needles=("none.json", "not found")
    ),
    # ---- measurements CSVs (nas estimate, nas profiles calibrate)
    "csv-calibrate-weights-beyond-memory": csv_case(
        "calibrate", "architecture,energy_j,input_shape", "3x10000000x10000000", "row 1", "cannot build it"
    ),
    "csv-estimate-batch-10-400": csv_case(
        "estimate", "architecture,energy_j,batch_size", "1" + "0" * 400, "row 1", "'batch_size'", "at most 65536"
    ),
    "csv-calibrate-batch-10-40": csv_case(
        "calibrate", "architecture,energy_j,batch_size", "1" + "0" * 40, "'batch_size'", "at most 65536"
    ),
    "csv-calibrate-duplicate-column": csv_case(
        "calibrate", "architecture,energy_j,energy_j", "5e-6", "'energy_j'", "more than once"
    ),
    "flag-estimate-precision-fp8": cli_case(
        "estimate",
        "--profile",
        "cpu-host",
        "--arch",
        MLP_GENOTYPE,
        "--precision",
        "fp8",
        needles=("--precision", "fp8"),
    ),
    "flag-estimate-batch-size-huge": cli_case(
        "estimate",
        "--profile",
        "cpu-host",
        "--arch",
        MLP_GENOTYPE,
        "--batch-size",
        "1" + "0" * 22,
        needles=("--batch-size",),
    ),
    # ---- nas measure --model: a third-party TorchScript file (no architecture.json beside it)
    "model-torchscript-wrong-shape": cli_case(
        "measure",
        "--model",
        "{tmp}/lone.pt",
        "--profile",
        "cpu-host",
        "--input-shape",
        "3,32,32",
        needles=("lone.pt", "3,32,32", "cannot be multiplied"),
    ),
    "model-torchscript-shape-beyond-memory": cli_case(
        "measure",
        "--model",
        "{tmp}/lone.pt",
        "--profile",
        "cpu-host",
        "--input-shape",
        "1000000,1000000,1000",
        needles=("lone.pt", "does not run"),
    ),
    # ---- CLI values
    "flag-energy-unit": cli_case("search", "--energy-budget", "50xJ", needles=("--energy-budget", "unknown unit 'xJ'")),
    "flag-energy-zero": cli_case("search", "--energy-budget", "0uJ", needles=("--energy-budget", "> 0")),
    "flag-energy-negative": cli_case("search", "--energy-budget", "-1uJ", needles=("--energy-budget",)),
    "flag-energy-overflow": cli_case("search", "--energy-budget", "1e999J", needles=("--energy-budget", "finite")),
    "flag-latency-inf": cli_case("search", "--latency-budget", "inf", needles=("--latency-budget",)),
    "flag-latency-unit": cli_case("search", "--latency-budget", "5 parsecs", needles=("--latency-budget",)),
    "flag-timeout-nan": cli_case("search", "--timeout", "nan", needles=("--timeout", "finite")),
    "flag-timeout-negative": cli_case("search", "--timeout", "-5", needles=("--timeout", "> 0")),
    "flag-trials-word": cli_case("search", "--trials", "many", needles=("--trials", "many")),
    "flag-trials-zero": cli_case("search", "--trials", "0", "--out", "{tmp}/run", needles=("--trials",)),
    "flag-epochs-zero": cli_case("search", "--epochs", "0", "--out", "{tmp}/run", needles=("--epochs",)),
    "flag-workers-1000": cli_case("search", "--workers", "1000", "--out", "{tmp}/run", needles=("--workers", "CPUs")),
    "flag-threads-zero": cli_case("search", "--threads", "0", "--out", "{tmp}/run", needles=("--threads",)),
    "flag-seed-negative": cli_case("search", "--seed", "-1", *FAST, "--out", "{tmp}/run", needles=("--seed",)),
    "flag-seed-huge": cli_case(
        "search", "--seed", "99999999999999999999", *FAST, "--out", "{tmp}/run", needles=("--seed",)
    ),
    "flag-sampler": cli_case("search", "--sampler", "annealing", "--out", "{tmp}/run", needles=("annealing", "tpe")),
    "flag-objectives": cli_case("search", "--objectives", "accuracy,joy", "--out", "{tmp}/run", needles=("joy",)),
    "flag-early-stop-k": cli_case("search", "--early-stop-k", "0", "--out", "{tmp}/run", needles=("--early-stop-k",)),
    "flag-unknown-option": cli_case("search", "--colour", "red", needles=("--colour", "search --help")),
    "flag-unknown-command": cli_case("serch", needles=("serch",)),
    "flag-missing-output": cli_case("export", "{tmp}", "--trial", "1", needles=("--output",)),
    "flag-missing-trial": cli_case("measure", "{run}", needles=("--trial",)),
    "flag-missing-profile": cli_case("rerank", "{run}", needles=("--profile",)),
    "flag-bench-missing-output": cli_case("bench", "build", needles=("--output",)),
    "flag-missing-storage": cli_case("worker", needles=("--storage",)),
    "flag-grid-nan": cli_case("report", "{tmp}", "--grid-intensity", "nan", needles=("--grid-intensity", "finite")),
    "flag-prune-nan": cli_case("variants", "{tmp}", "--trial", "0", "--prune", "nan", needles=("--prune",)),
    "flag-worker-timeout-inf": cli_case(
        "worker", "--storage", "sqlite:///{tmp}/x.db", "--timeout", "inf", needles=("--timeout",)
    ),
    # ---- run folders
    "run-missing": cli_case("report", "{tmp}/nothing", needles=("nothing", "no such run folder")),
    "run-not-a-run": cli_case("plot", "{tmp}", needles=("not a run folder",)),
    "run-out-is-a-file": cli_case("search", *FAST, "--out", "{tmp}/file.txt", needles=("file.txt", "is a file")),
    # ---- storage URLs
    # ---- a real run folder, left unchanged by every refused command
    "run-region-unknown": cli_case("report", "{run}", "--region", "XX", needles=("--region", "XX")),
    "run-pick-bad-unit": cli_case("report", "{run}", "--pick", "max-accuracy:energy<=5xJ", needles=("--pick", "xJ")),
    "run-pick-garbage": cli_case("report", "{run}", "--pick", "best-please", needles=("--pick",)),
    "run-export-missing-trial": cli_case("export", "{run}", "--trial", "999", "-o", "{tmp}/exp", needles=("999",)),
    "run-export-into-run": cli_case("export", "{run}", "--trial", "0", "-o", "{run}", needles=("run folder",)),
    "run-measure-missing-trial": cli_case("measure", "{run}", "--trial", "999", needles=("999",)),
    "run-variants-missing-trial": cli_case("variants", "{run}", "--trial", "999", needles=("999",)),
    "run-plot-gif": cli_case("plot", "{run}", "-o", "{tmp}/front.gif", needles=("front.gif", ".png or .svg")),
    "run-resume-changed-epochs": cli_case(
        "search", "--out", "{run}", "--epochs", "2", "--trials", "3", "--quiet", needles=("epochs",)
    ),
    "run-resume-other-space": cli_case(
        "search", "--out", "{run}", "--space", "cnn", "--trials", "3", "--quiet", needles=("space",)
    ),
    "run-rerank-unknown-profile": cli_case("rerank", "{run}", "--profile", "toaster", needles=("toaster",)),
    "run-json-corrupt": cli_case("report", "{tmp}/copy", needles=("run.json",)),
    "url-password-query": cli_case(
        "search",
        *FAST,
        "--storage",
        f"postgresql+psycopg://nas@127.0.0.1:1/db?password={SECRET}",
        "--out",
        "{tmp}/run",
        needles=("storage",),
    ),
    "url-no-dialect": cli_case(
        "search", *FAST, "--storage", "nosuchdb://x", "--out", "{tmp}/run", needles=("storage",)
    ),
    "url-not-a-url": cli_case("search", *FAST, "--storage", "just words", "--out", "{tmp}/run", needles=("storage",)),
    "url-sqlite-missing-dir": cli_case(
        "search", *FAST, "--storage", "sqlite:////no/such/dir/s.db", "--out", "{tmp}/run", needles=("storage",)
    ),
}


def _setup_special(name: str, tmp: Path) -> None:
    if name.startswith("model-torchscript"):
        import torch

        torch.jit.save(
            torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))), tmp / "lone.pt"
        )
    if name.startswith(("table-partial", "table-budget")):  # part of NAS-Bench-201: the shipped 505-cell sample
        sample = REPO / "examples" / "nb201-pi5" / "cifar100-onnx-sample.csv"
        result = CliRunner().invoke(
            main,
            [
                "bench",
                "import",
                str(sample),
                "--space",
                "nb201",
                "--profile",
                "raspberry-pi-5",
                "-o",
                str(tmp / "nb201.json"),
            ],
        )
        assert result.exit_code == 0, result.output
    if name == "run-out-is-a-file":
        (tmp / "file.txt").write_text("mine\n")
    if name == "run-json-corrupt":
        (tmp / "copy").mkdir()
        (tmp / "copy" / "run.json").write_text("{not json")
        (tmp / "copy" / "study.db").write_bytes(b"")


RUN = Path()  # the module's good run folder (set by the `good_run` fixture)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    global RUN
    RUN = tmp_path_factory.mktemp("corpus") / "good"
    result = CliRunner(env={"NAS_STORAGE": None}).invoke(
        main, ["search", "--space", "mlp", "--epochs", "1", "--trials", "2", "--quiet", "--out", str(RUN)]
    )
    assert result.exit_code == 0, result.output
    return RUN


def _run_state(run: Path) -> tuple[dict[str, bytes], list[tuple]]:
    """The run folder's files (the database aside) and every row of the study's tables (read-only)."""
    import sqlite3

    files = {k: v for k, v in _files(run).items() if not k.startswith("study.db")}
    con = sqlite3.connect(f"file:{run / 'study.db'}?mode=ro", uri=True)
    try:
        rows = [
            (t, con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall())  # noqa: S608 - fixed names
            for t in (
                "studies",
                "trials",
                "trial_values",
                "trial_params",
                "trial_user_attributes",
                "study_user_attributes",
            )
        ]
    finally:
        con.close()
    return files, rows


@pytest.fixture
def alarm():
    """A hard bound on one case (not a timing assertion): a hang fails instead of stalling CI."""

    def on_alarm(*_):
        raise TimeoutError("a bad input took more than 120 s to be refused")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(name, tmp_path, alarm, good_run):
    _setup_special(name, tmp_path)
    args, needles = CASES[name](tmp_path)
    before = _files(tmp_path)
    run_before = _run_state(good_run)
    result = CliRunner(env={"NAS_STORAGE": None}).invoke(main, args)
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # mapped, not a crash
    assert "Traceback" not in result.output + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert SECRET not in result.output + result.stderr
    # nothing stored changed, and nothing left that blocks the corrected command
    assert _files(tmp_path) == before
    assert _run_state(good_run) == run_before
    run = tmp_path / "run"
    assert not run.exists() or not any(run.iterdir()), sorted(p.name for p in run.iterdir())


def test_the_corpus_is_large():
    assert len(CASES) >= 80


def test_yaml_bombs_stay_small(tmp_path):
    """Documents that would expand to gigabytes are refused within a small, bounded memory."""
    docs = {
        "space.yaml": LAUGHS + "\n" + _mlp(),
        "profile.yaml": LAUGHS
        + "\n"
        + PROFILE.replace(
            "description: 2-vCPU Xeon cloud slice without energy sensors (analytical estimate)", "description: *l7"
        ),
    }
    for name, text in docs.items():
        (tmp_path / name).write_text(text)
    code = (
        "import sys\n"
        "from nas.config import load_space, load_profile\n"
        "from nas.errors import ConfigError\n"
        "for load, f in ((load_space, 'space.yaml'), (load_profile, 'profile.yaml')):\n"
        "    try:\n"
        f"        load({str(tmp_path)!r} + '/' + f)\n"
        "    except ConfigError as e:\n"
        "        print(e)\n"
        # VmHWM: this program's own peak (ru_maxrss would carry the forking pytest's peak over exec)
        "print([ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all("expands to more than" in ln for ln in lines[:2]), proc.stdout
    assert int(lines[2]) < 1_000_000, f"peak RSS {lines[2]} KiB"  # < 1 GB; a full expansion needs ~30 GB
