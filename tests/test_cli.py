"""Bad input everywhere, through the CLI: one line naming what and where, a non-zero exit, no
traceback, nothing stored overwritten, and never a password in the output or the run folder."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from run_helpers import MLP, assert_clean_failure, run_nas

from nas.cli import main
from nas.config import PROFILES_DIR

SECRET = "s3cr3t-pw"


def cli(*args: str, **env: str):
    return CliRunner(env=env).invoke(main, list(args))


def one_line_error(result, code: int) -> str:
    """The CLI's answer to a user error: exit `code`, one 'nas: error:' line, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception  # a NasError mapped by the CLI
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), result.stderr
    return lines[0]


def snapshot(run: Path) -> dict:
    """What a run folder holds: its files' bytes (the database excepted) and its trials' results."""
    files = {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file() and not p.name.startswith("study.db")}
    study = optuna.load_study(study_name=run.name, storage=f"sqlite:///{run / 'study.db'}")
    results = [(t.number, t.state.name, t.values, t.params) for t in study.get_trials()]
    return {"files": files, "trials": results}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad") / "good-run"
    result = cli("search", *MLP, "--trials", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


# ------------------------------------------------------------------------------ configuration
@pytest.mark.parametrize(
    ("yaml_text", "needles"),
    [
        ("family: mlp\nparams: [unclosed\n", ["space.yaml:", "malformed YAML"]),
        (
            "family: mlp\nparams:\n  activation: {choices: [relu]}\n  dropout: {choices: [0.0]}\n"
            "layers:\n  count: {low: 3, high: 1}\n  params:\n    width: {choices: [8]}\n",
            ["layers.count", "above high"],
        ),
        (
            "family: mlp\nparams:\n  activation: {choices: [relu, swishy]}\n  dropout: {choices: [0.0]}\n"
            "layers:\n  count: {low: 1, high: 2}\n  params:\n    width: {choices: [8]}\n",
            ["params.activation", "swishy", "relu"],
        ),
        (
            "family: mlp\nparams:\n  activation: {choices: [relu]}\n  dropout: {choices: [1.5]}\n"
            "layers:\n  count: {low: 1, high: 2}\n  params:\n    width: {choices: [8]}\n",
            ["dropout", "[0, 1)"],
        ),
        ("family: rnn\n", ["field 'family'", "cnn", "mlp", "transformer"]),
        (
            "family: mlp\nparams:\n  activation: {choices: [relu]}\n  dropout: {choices: [0.0]}\n"
            "layers:\n  count: {low: 1, high: " + "9" * 5000 + "}\n",
            ["malformed YAML"],
        ),
    ],
    ids=["malformed-yaml", "low-above-high", "unknown-activation", "out-of-range", "unknown-family", "huge-int"],
)
def test_bad_space_files(tmp_path, yaml_text, needles):
    path = tmp_path / "space.yaml"
    path.write_text(yaml_text)
    out = tmp_path / "run"
    line = one_line_error(cli("search", "--space", str(path), "--trials", "1", "--out", str(out)), 2)
    assert str(path) in line and all(n in line for n in needles), line
    assert not out.exists()


def test_bad_profile_field_type(tmp_path):
    text = (PROFILES_DIR / "cpu-host.yaml").read_text()
    path = tmp_path / "profile.yaml"
    path.write_text(text.replace("batch_size: 32", "batch_size: thirty-two"))
    line = one_line_error(cli("search", "--profile", str(path), "--out", str(tmp_path / "r")), 2)
    assert str(path) in line and "inference.batch_size" in line and "integer" in line


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--space", "nope"], ["search space 'nope'", "mlp"]),
        (["--profile", "nope"], ["hardware profile 'nope'", "cpu-host"]),
        (["--sampler", "nope"], ["sampler 'nope'", "tpe"]),
        (["--dataset", "nope"], ["dataset 'nope'", "digits"]),
        (["--objectives", "accuracy,joy"], ["joy"]),
        (["--trials", "0"], ["--trials"]),
        (["--workers", "0"], ["--workers"]),
        (["--threads", "0"], ["--threads"]),
        (["--dataset", "npz:/no/such/file.npz"], ["/no/such/file.npz", "not found"]),
    ],
    ids=["space", "profile", "sampler", "dataset", "objective", "trials", "workers", "threads", "missing-npz"],
)
def test_bad_settings_on_an_existing_run_change_nothing(run, args, needles):
    before = snapshot(run)
    line = one_line_error(cli("search", *MLP, *args, "--out", str(run)), 2)
    assert all(n in line for n in needles), line
    assert snapshot(run) == before


def test_resuming_with_other_settings_is_refused_and_changes_nothing(run):
    before = snapshot(run)
    line = one_line_error(cli("search", *MLP, "--epochs", "2", "--trials", "5", "--out", str(run)), 5)
    assert "epochs" in line and "good-run" in line
    assert snapshot(run) == before


# ------------------------------------------------------------------------------ run folders, trials
def test_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8 not really")
    for command in (["report", str(folder)], ["plot", str(folder)]):
        line = one_line_error(cli(*command), 5)
        assert str(folder) in line and "not a run folder" in line
    line = one_line_error(cli("search", *MLP, "--trials", "1", "--out", str(folder)), 5)
    assert str(folder) in line and "not a run folder" in line
    assert [p.name for p in folder.iterdir()] == ["cat.jpg"]
    one_line_error(cli("report", str(tmp_path / "missing")), 5)


def test_a_trial_number_that_does_not_exist(run, tmp_path):
    before = snapshot(run)
    out = tmp_path / "export"
    result = cli("export", str(run), "--trial", "999", "--output", str(out))
    assert result.exit_code != 0 and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()
    assert len(line) == 1 and "999" in line[0], result.stderr
    assert not out.exists()
    result = cli("measure", str(run), "--trial", "999")
    assert result.exit_code != 0 and len(result.stderr.strip().splitlines()) == 1 and "999" in result.stderr
    assert snapshot(run) == before


# ------------------------------------------------------------------------------ storage URLs
BAD_URLS = [
    f"postgresql+psycopg://nas:{SECRET}@127.0.0.1:1/db",  # unreachable: nothing listens on port 1
    f"postgresql+psycopg://nas:{SECRET}@host.invalid/db",  # unresolvable host
    f"postgresql+psycopg://nas:{SECRET}@127.0.0.1:port/db",  # malformed port
    f"postgresql+psycopg://nas:{SECRET}@@127.0.0.1/db",  # unencoded '@'
    f"mysql://nas:{SECRET}@127.0.0.1:1/db",  # no driver installed
    f"nosuchdb://nas:{SECRET}@127.0.0.1/db",  # no such dialect
    f"not a url {SECRET}",
    "sqlite:////no/such/folder/study.db",
]


@pytest.mark.parametrize("url", BAD_URLS, ids=range(len(BAD_URLS)))
def test_bad_storage_urls_fail_in_one_line_without_the_password(tmp_path, url):
    out = tmp_path / "run"
    line = one_line_error(cli("search", *MLP, "--trials", "1", "--storage", url, "--out", str(out)), 4)
    assert "storage" in line and SECRET not in line
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not written, written
    line = one_line_error(cli("worker", NAS_STORAGE=url), 4)
    assert SECRET not in line


@pytest.mark.slow
def test_unreachable_storage_through_a_real_process(tmp_path):
    url = BAD_URLS[0]
    proc = run_nas("search", *MLP, "--trials", "1", "--storage", url, "--out", str(tmp_path / "r"))
    line = assert_clean_failure(proc, code=4)
    assert "127.0.0.1" in line and "nas:***@" in line and SECRET not in proc.stdout + proc.stderr
