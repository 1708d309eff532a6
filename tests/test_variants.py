"""fp32 vs lower precision vs pruned, for one architecture of a run."""

from __future__ import annotations

import optuna
import pytest
from click.testing import CliRunner

from nas.cli import main
from nas.search import SearchSettings, run_search
from nas.variants import compare_variants


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("v") / "run"
    run_search(SearchSettings(space="mlp", trials=2, epochs=2, seed=3, out=str(out)))
    return out


def test_variants_side_by_side(run):
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{run}/study.db")
    t = study.trials[0]
    arch, results = compare_variants(run, 0, prune_ratio=0.5)
    labels = [r.variant.label for r in results]
    assert labels == ["fp32", "bf16", "int8", "fp32, pruned 50%", "int8, pruned 50%"]  # cpu-host runs bf16 and int8
    by = {r.variant.label: r for r in results}
    # the fp32 variant is the original trial re-run: same seed, same training, same numbers
    assert by["fp32"].val_accuracy == t.user_attrs["val_accuracy"]
    assert by["fp32"].energy_per_inference_j == t.user_attrs["energy_per_inference_j"]
    assert by["int8"].energy_per_inference_j < by["bf16"].energy_per_inference_j < by["fp32"].energy_per_inference_j
    assert by["fp32, pruned 50%"].macs < by["fp32"].macs
    assert by["int8, pruned 50%"].energy_per_inference_j < by["int8"].energy_per_inference_j
    assert arch == t.user_attrs["architecture"]


def test_variants_cli_errors(run):
    r = CliRunner().invoke(main, ["variants", str(run), "--trial", "42"])
    assert r.exit_code != 0 and "no complete trial #42" in r.output and "Traceback" not in r.output
