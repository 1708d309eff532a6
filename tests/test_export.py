"""Kept weights and the export round trip on a fresh tiny search.

The issue's "done when": for a front member of a fresh search, the exported ONNX file runs in ONNX
Runtime and the TorchScript file in torch.jit.load, both within 1e-4 of the PyTorch model on the
same input, and the weights load with weights_only=True into the model rebuilt from the exported
architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from click.testing import CliRunner

from nas.artifacts import WEIGHTS_ATTR, load_trial_model
from nas.cli import main
from nas.compress import to_precision
from nas.data import load_dataset
from nas.deploy import CALIBRATION_SAMPLES, rebuild
from nas.errors import ExportError, RunError
from nas.export import export_run, load_architecture, load_exported_model
from nas.report import build_report
from nas.search import SearchSettings, run_search
from nas.train import accuracy


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    run_search(SearchSettings(space="mlp", trials=4, epochs=1, seed=3, out=str(out)))
    return out


@pytest.fixture(scope="module")
def study(run) -> optuna.Study:
    return optuna.load_study(study_name="run", storage=f"sqlite:///{run / 'study.db'}")


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", 0)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "knee"
    return export_run(run, out, pick="knee")


# ------------------------------------------------------------------------------ kept weights
def test_every_complete_trial_keeps_its_weights_in_the_run_folder(run, study):
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 4
    for t in complete:
        meta = t.user_attrs[WEIGHTS_ATTR]
        listed = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        assert [m.artifact_id for m in listed] == [meta["artifact_id"]]
        assert (run / "artifacts" / meta["artifact_id"]).is_file()


def test_stored_weights_reproduce_each_trials_validation_accuracy(run, study, data):
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        tm = load_trial_model(run, t.number)
        assert accuracy(tm.model, data.x_val, data.y_val) == t.user_attrs["val_accuracy"]


def test_missing_or_corrupt_weights_are_one_line_errors(run, study, tmp_path):
    with pytest.raises(RunError, match="no trial 99"):
        load_trial_model(run, 99)
    meta = study.trials[0].user_attrs[WEIGHTS_ATTR]
    blob = run / "artifacts" / meta["artifact_id"]
    saved = blob.read_bytes()
    try:
        blob.write_bytes(saved[:-10] + b"0123456789")
        with pytest.raises(RunError, match="SHA-256"):
            load_trial_model(run, 0)
    finally:
        blob.write_bytes(saved)


# ------------------------------------------------------------------------------ round trip
def test_export_writes_every_format(exported):
    names = {p.name for p in exported.out_dir.iterdir()}
    assert names == {
        "architecture.yaml",
        "architecture.json",
        "weights.pt",
        "weights.safetensors",
        "model.torchscript.pt",
        "model.onnx",
        "report_card.json",
        "report_card.md",
    }
    assert exported.selection.on_front
    assert all(c.passed for c in exported.checks) and len(exported.checks) == 3


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_onnx_and_torchscript_match_pytorch_on_the_same_input(run, exported, data):
    import onnxruntime as ort

    n = exported.selection.record.number
    model = load_trial_model(run, n).model
    # a batch size the export never saw, to exercise the dynamic batch axis
    x = data.x_test[40:47]
    with torch.no_grad():
        want = model(x).numpy()
        scripted = torch.jit.load(str(exported.out_dir / "model.torchscript.pt"))(x).numpy()
    session = ort.InferenceSession(str(exported.out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"input": x.numpy()})
    assert onnx_out.shape == want.shape == (7, 10)
    assert np.max(np.abs(onnx_out - want)) <= 1e-4
    assert np.max(np.abs(scripted - want)) <= 1e-4


def test_weights_load_with_weights_only_into_the_rebuilt_architecture(run, exported, data):
    spec_yaml = load_architecture(exported.out_dir / "architecture.yaml")
    spec_json = load_architecture(exported.out_dir / "architecture.json")
    assert spec_yaml == spec_json
    model = rebuild(spec_yaml.architecture, spec_yaml.input_shape, spec_yaml.num_classes)
    state = torch.load(exported.out_dir / "weights.pt", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    from safetensors.torch import load_file

    st = load_file(str(exported.out_dir / "weights.safetensors"))
    assert st.keys() == state.keys() and all(torch.equal(st[k], state[k]) for k in st)
    original = load_trial_model(run, exported.selection.record.number).model
    x = data.x_test[:16]
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
        assert torch.equal(load_exported_model(exported.out_dir)(x), original(x))


def test_report_card_holds_what_the_trial_recorded(run, study, exported):
    card = json.loads((exported.out_dir / "report_card.json").read_text())
    t = study.trials[exported.selection.record.number]
    a = t.user_attrs
    assert card["trial"] == t.number
    assert card["accuracy"]["validation"] == a["val_accuracy"]
    assert card["accuracy"]["test"] == a["test_accuracy"]
    assert card["energy_per_inference"]["value_j"] == a["energy_per_inference_j"]
    assert card["energy_per_inference"]["method"] == a["energy_method"] == "estimated:analytical"
    assert card["energy_per_inference"]["estimated"] is True
    assert card["energy_per_inference"]["record"] == a["energy"]
    assert card["latency"]["value_s"] == a["latency_s"]
    assert (card["params"], card["macs"]) == (a["params"], a["macs"])
    assert card["profile"]["name"] == "cpu-host" and card["dataset"]["name"] == "digits"
    assert card["seed"] == {"trial": a["seed"], "search": 3, "split": 0}
    assert {c["name"].split()[0] for c in card["checks"]} == {"rebuilt", "torchscript", "onnx"}
    md = (exported.out_dir / "report_card.md").read_text()
    assert "ESTIMATED" in md and f"trial {t.number}" in md


# ------------------------------------------------------------------------------ refusals
def test_refuses_a_non_empty_folder_unless_forced(run, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty; pass --force"):
        export_run(run, out, trial=0)
    assert not (out / "model.onnx").exists()
    export_run(run, out, trial=0, force=True)
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces our files only
    assert (out / "model.onnx").is_file()


def test_paths_stay_inside_the_export_folder(run, tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside.onnx"
    out.mkdir()
    (out / "model.onnx").symlink_to(outside)
    with pytest.raises(ExportError, match="outside the export folder"):
        export_run(run, out, trial=0, force=True)
    assert not outside.exists()


def test_an_exported_copy_that_differs_fails_the_export(run, tmp_path, monkeypatch):
    import nas.exporters as exporters

    real = exporters._run_onnx
    monkeypatch.setattr(exporters, "_run_onnx", lambda path, x: real(path, x) + 1e-3)
    with pytest.raises(
        ExportError, match=r"onnx \(ONNX Runtime, CPUExecutionProvider\) differs from PyTorch by 0.001 > 0.0001"
    ):
        export_run(run, tmp_path / "bad", trial=0)
    card = json.loads((tmp_path / "bad" / "report_card.json").read_text())
    assert [c["passed"] for c in card["checks"]] == [True, True, False]


def test_exactly_one_of_trial_or_pick(run, tmp_path):
    from nas.errors import ConfigError

    with pytest.raises(ConfigError, match="exactly one"):
        export_run(run, tmp_path / "a", trial=0, pick="knee")
    with pytest.raises(ConfigError, match="exactly one"):
        export_run(run, tmp_path / "b")


# ------------------------------------------------------------------------------ CLI, retraining
def test_cli_export_json(run, tmp_path):
    res = CliRunner().invoke(
        main, ["export", str(run), "--pick", "max-accuracy:energy<=1J", "-o", str(tmp_path / "e"), "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    best = max(build_report(run).records, key=lambda r: (r.accuracy, -r.energy_per_inference_j))
    assert doc["trial"] == best.number
    assert all(c["passed"] and c["max_abs_diff"] <= 1e-4 for c in doc["checks"])
    res = CliRunner().invoke(main, ["export", str(run), "-o", str(tmp_path / "f")])
    assert res.exit_code == 2 and "exactly one of --trial N or --pick RULE" in res.output


def test_retrain_on_train_and_validation_reports_the_new_accuracy(run, tmp_path, data):
    res = export_run(run, tmp_path / "r", trial=1, retrain_epochs=3)
    card = res.card
    retrained = card["accuracy"]["retrained"]
    assert retrained["epochs"] == 3 and retrained["trained_on"] == "train + validation"
    assert retrained["samples"] == len(data.y_train) + len(data.y_val)
    model = load_exported_model(res.out_dir)
    assert retrained["test_accuracy"] == accuracy(model, data.x_test, data.y_test)
    stored = load_trial_model(run, 1).model.state_dict()
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in stored.items())


@pytest.mark.slow
def test_pruned_and_int8_trials_rebuild_and_export(tmp_path, data):
    run = tmp_path / "cnn"
    run_search(SearchSettings(space="cnn-compress", trials=5, epochs=2, seed=1, out=str(run)))
    study = optuna.load_study(study_name="cnn", storage=f"sqlite:///{run / 'study.db'}")
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert any(t.user_attrs.get("prune_ratio") for t in done), "the seed should sample a pruned candidate"
    for t in done:
        tm = load_trial_model(run, t.number)
        deployed = to_precision(tm.model, t.user_attrs["precision"], data.x_train[:CALIBRATION_SAMPLES])
        assert accuracy(deployed, data.x_val, data.y_val) == t.user_attrs["val_accuracy"]
    pruned = next(t for t in done if t.user_attrs.get("prune_ratio"))
    res = export_run(run, tmp_path / "e", trial=pruned.number)
    assert all(c.passed for c in res.checks)
    assert res.card["accuracy"]["measured_at_precision"] == pruned.user_attrs["precision"]
