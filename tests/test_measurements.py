"""Calibration from a measurements CSV and `nas estimate`: the fit recovers known coefficients, the
calibrated profile says where its numbers came from, bad rows fail in one line naming file, row and
column, and `nas estimate --json` answers one object per input row, in order."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nas.calibrate import calibrate_from_csv
from nas.cli import main
from nas.config import load_profile
from nas.energy.estimate import FITTED, coefficients, features, predict
from nas.errors import ConfigError
from nas.fitting import fit
from nas.measurements import GraphCache, parse_architecture, read_measurements
from nas.models.nb201 import architecture_from_cell

SHAPE = (3, 8, 8)
CELLS = [
    "|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|skip_connect~1|avg_pool_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|",
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|",
    "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
]


def mlp(*widths: int) -> str:
    return json.dumps(
        {"family": "mlp", "params": {"activation": "relu", "dropout": 0.0}, "units": [{"width": w} for w in widths]}
    )


def cnn(block: str, channels: int, repeats: int) -> str:
    return json.dumps(
        {
            "family": "cnn",
            "params": {"activation": "relu6", "width_multiplier": 1.0},
            "units": [
                {"block": block, "channels": channels, "kernel": 3, "repeats": repeats, "stride": 1, "expansion": 4}
            ],
        }
    )


# (architecture, batch size): MLPs rich in bytes and calls, CNNs in MACs and batch-norm, cells in
# pooling, residual adds and tiny operators; two batch sizes separate per-call from per-batch costs
NETWORKS = [
    (mlp(16), 1),
    (mlp(4096, 2048), 1),
    (mlp(512, 512, 512), 8),
    (mlp(64, 64, 64, 64), 1),
    (cnn("conv", 32, 2), 1),
    (cnn("dwsep", 48, 3), 8),
    (cnn("inverted_residual", 24, 2), 1),
    (CELLS[0], 1),
    (CELLS[1], 8),
    (CELLS[2], 1),
    (CELLS[3], 1),
    (mlp(256), 8),
    (cnn("conv", 8, 1), 8),
]
UNSEEN = (cnn("inverted_residual", 40, 3), 4)


@pytest.fixture(scope="module")
def cache():
    return GraphCache()


def true_values(profile) -> dict[str, float]:
    """Known coefficients, deliberately away from the profile's own."""
    prior = coefficients(profile)
    factor = {
        "energy_per_mac_j": 3.0,
        "energy_per_element_op_j": 50.0,
        "energy_per_byte_cache_j": 0.5,
        "energy_per_byte_dram_j": 2.0,
        "energy_per_call_j": 0.3,
        "energy_per_inference_j": 4.0,
        "static_power_w": 0.5,
    }
    return {k: prior.value(k) * factor[k] for k in FITTED}


def true_energy(profile, cache, arch_text: str, batch: int) -> float:
    graph, _ = cache.get(parse_architecture(arch_text), SHAPE, 10)
    return predict(features(graph, coefficients(profile), batch), true_values(profile))


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def synthetic_csv(tmp_path, cache) -> Path:
    profile = load_profile("cpu-host")
    return write_csv(
        tmp_path / "measured.csv",
        [
            {
                "architecture": a,
                "energy_j": f"{true_energy(profile, cache, a, b):.12g}",
                "input_shape": "3x8x8",
                "batch_size": b,
            }
            for a, b in NETWORKS
        ],
    )


def test_fit_recovers_exact_coefficients():
    rows = [
        {"a": a, "b": b, "c": c}
        for a, b, c in ((1e6, 1e4, 1.0), (5e6, 2e4, 1.0), (2e5, 4e6, 1.0), (8e7, 5e5, 0.5), (3e6, 2e6, 0.125))
    ]
    true = {"a": 2e-12, "b": 3e-11, "c": 5e-6}
    measured = [sum(r[k] * true[k] for k in true) for r in rows]
    exact = fit(rows, measured, prior={"a": 1e-12, "b": 1e-11, "c": 1e-5}, regularization=0.0)
    for k in true:
        assert exact.values[k] == pytest.approx(true[k], rel=1e-6)
    pulled = fit(rows, measured, prior={"a": 1e-12, "b": 1e-11, "c": 1e-5})
    for k in true:  # the default pull toward the prior is weak next to exact data
        assert pulled.values[k] == pytest.approx(true[k], rel=0.01)


def test_unexercised_coefficient_keeps_the_profile_value():
    rows = [{"a": a, "b": 0.0} for a in (1e6, 2e6, 3e6)]
    got = fit(rows, [2e-6, 4e-6, 6e-6], prior={"a": 1e-12, "b": 7e-11})
    assert got.values["b"] == 7e-11 and "no measured network exercises it" in got.notes["b"]
    assert got.values["a"] == pytest.approx(2e-12, rel=1e-3)


def test_calibrate_round_trip_recovers_the_coefficients(tmp_path, cache):
    path = synthetic_csv(tmp_path, cache)
    out = tmp_path / "calibrated.yaml"
    c = calibrate_from_csv("cpu-host", path, out, regularization=0.0)  # exact data: no pull needed
    truth = true_values(load_profile("cpu-host"))
    got = {f.name.replace("[fp32]", ""): f.after for f in c.coefficients}
    for k in ("energy_per_element_op_j", "energy_per_byte_cache_j", "energy_per_call_j", "energy_per_inference_j"):
        assert got[k] == pytest.approx(truth[k], rel=0.05), k
    # static power multiplies modelled compute/memory time: MACs / peak MAC/s for compute-bound
    # operators, DRAM bytes / bandwidth for memory-bound ones (dispatch time is the call energy's
    # alone); so measurements determine the energy per MAC and per DRAM byte each including its
    # share of static power
    coefs = coefficients(load_profile("cpu-host"))
    for k, seconds in (
        ("energy_per_mac_j", 1 / coefs.value("peak_macs_per_s")),
        ("energy_per_byte_dram_j", 1 / coefs.value("memory_bandwidth_bytes_per_s")),
    ):
        assert got[k] + got["static_power_w"] * seconds == pytest.approx(
            truth[k] + truth["static_power_w"] * seconds, rel=0.02
        ), k
    assert c.fit_error < 1e-6 and c.held_out.median_abs_error < 0.01 and c.held_out.spearman > 0.99

    calibrated = load_profile(out)
    section = calibrated.estimate_runtimes["torch"]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert section.calibration["sha256"] == sha and section.calibration["networks"] == len(NETWORKS)
    assert section.calibration["source"] == str(path) and section.calibration["folds"] == 5
    for key in ("median_abs_pct_error", "within_10_pct", "within_25_pct", "spearman"):
        assert key in section.calibration["held_out"]
    assert f"sha256 {sha[:12]}" in section.values["energy_per_call_j"].source
    # the calibrated profile predicts a network it never saw
    arch, batch = UNSEEN
    graph, _ = cache.get(parse_architecture(arch), SHAPE, 10)
    predicted = predict(
        features(graph, coefficients(calibrated), batch), {k: coefficients(calibrated).value(k) for k in FITTED}
    )
    assert predicted == pytest.approx(true_energy(load_profile("cpu-host"), cache, arch, batch), rel=0.03)


def test_cli_calibrate_then_estimate(tmp_path, cache):
    path = synthetic_csv(tmp_path, cache)
    out = tmp_path / "cal.yaml"
    r = CliRunner().invoke(
        main,
        ["profiles", "calibrate", "cpu-host", "--from", str(path), "-o", str(out), "--json"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["cross_validation"]["networks"] == len(NETWORKS) and doc["source_sha256"]
    r = CliRunner().invoke(
        main, ["estimate", "--profile", str(out), "--from", str(path), "--json"], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [row["row"] for row in rows] == list(range(1, len(NETWORKS) + 1))
    assert [row["architecture"] for row in rows] == [a for a, _ in NETWORKS]
    for row in rows:
        assert row["energy_per_inference_j"] > 0 and row["method"] == "estimated:analytical"
        assert row["macs"] >= 0 and row["params"] > 0 and "calls_j" in row["terms"]
        assert abs(row["error"]) < 0.02
    r = CliRunner().invoke(
        main,
        ["estimate", "--profile", "raspberry-pi-5", "--arch", CELLS[2], "--json", "--num-classes", "100"],
        catch_exceptions=False,
    )
    (one,) = json.loads(r.output)
    assert one["params"] == 565_236 and one["runtime"] == "torch"


def test_estimate_reads_nas_bench_201_columns(tmp_path):
    path = write_csv(tmp_path / "nb.csv", [{"arch_idx": 0, "arch_str": CELLS[0], "energy_j": 0.002}])
    (row,) = read_measurements(path)
    assert row.architecture == architecture_from_cell(CELLS[0]) and row.energy_j == 0.002


@pytest.mark.parametrize(
    "rows, column",
    [
        ([{"arch": CELLS[0], "energy_j": 1}], "architecture"),
        ([{"architecture": CELLS[0]}], "energy_j"),
    ],
)
def test_missing_column_is_one_line(tmp_path, rows, column):
    path = write_csv(tmp_path / "m.csv", rows)
    r = CliRunner().invoke(
        main, ["profiles", "calibrate", "cpu-host", "--from", str(path), "-o", str(tmp_path / "x.yaml")]
    )
    assert r.exit_code != 0 and "Traceback" not in r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"nas: error: {path}: missing column '{column}'")
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize(
    "value, column, why",
    [
        ({"architecture": "|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|"}, "architecture", "node 2 needs 2 inputs"),
        ({"architecture": "{not json"}, "architecture", "not a JSON genotype"),
        (
            {"architecture": json.dumps({"family": "resnext", "params": {}, "units": []})},
            "architecture",
            "unknown family",
        ),
        ({"energy_j": "-0.5"}, "energy_j", "expected a positive energy"),
        ({"energy_j": "0"}, "energy_j", "expected a positive energy"),
        ({"energy_j": "lots"}, "energy_j", "expected a number"),
        ({"input_shape": "3by32"}, "input_shape", "CxHxW"),
        ({"batch_size": "0"}, "batch_size", "positive integer"),
    ],
)
def test_bad_rows_name_the_file_the_row_and_the_column(tmp_path, value, column, why):
    good = {"architecture": CELLS[0], "energy_j": "0.002", "input_shape": "3x8x8", "batch_size": "1"}
    path = write_csv(tmp_path / "bad.csv", [good, good, {**good, **value}])
    with pytest.raises(ConfigError) as e:
        calibrate_from_csv("cpu-host", path, tmp_path / "x.yaml")
    message = str(e.value)
    assert message.startswith(f"{path}: row 3 (line 4), column '{column}': ") and why in message
    assert "\n" not in message and not (tmp_path / "x.yaml").exists()
    r = CliRunner().invoke(main, ["estimate", "--profile", "cpu-host", "--from", str(path)])
    assert r.exit_code != 0 and r.stderr.strip() == f"nas: error: {message}"  # energies are checked when present


def test_quality_line_without_a_ranking():
    """One network (or all of one energy) has no Spearman: the line says n/a, not nan, and counts in the singular."""
    from nas.fitting import Quality

    line = Quality.of([1.0], [2.0]).describe()
    assert "Spearman n/a (1 network)" in line, line
    assert "nan" not in line


def test_calibrate_says_which_values_it_assumed_for_every_row(tmp_path, cache):
    # the CSV has input_shape and batch_size columns but no num_classes or precision column
    path = synthetic_csv(tmp_path, cache)
    args = ["profiles", "calibrate", "cpu-host", "--from", str(path), "-o", str(tmp_path / "c.yaml")]
    res = CliRunner().invoke(main, [*args, "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    assumed = [x for x in res.stderr.splitlines() if x.startswith("assumed")]
    assert assumed == [
        "assumed for every row (no 'num_classes' column): num_classes 10 (set with --num-classes)",
        "assumed: the networks ran in torch, the profile's runtime (set with --runtime)",
    ]
    res = CliRunner().invoke(main, [*args, "--num-classes", "10", "--precision", "fp32", "--runtime", "torch"])
    assert res.exit_code == 0 and "assumed" not in res.stderr
    # --json: the same lines in the document, stdout stays one JSON document
    res = CliRunner().invoke(main, [*args, "--precision", "fp32", "--runtime", "torch", "--json"])
    assert res.exit_code == 0 and "assumed" not in res.stderr
    assert json.loads(res.output)["assumed"] == [assumed[0]]
