"""Run folders as users treat them: resumed with `--out` alone, renamed, killed early, made by plain
Optuna, refused and retried, read with any umask; and what a search whose every trial fails says."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import optuna
import pytest
from click.testing import CliRunner

from nas.cli import main

FAST = ["--space", "mlp", "--epochs", "1", "--quiet"]


def cli(*args: str):
    return CliRunner(env={"NAS_STORAGE": None}).invoke(main, list(args))


def one_error(result) -> str:
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), result.stderr
    return lines[0]


def studies(run) -> list[tuple[str, int]]:
    con = sqlite3.connect(run / "study.db")
    try:
        return con.execute(
            "SELECT s.study_name, COUNT(t.trial_id) FROM studies s LEFT JOIN trials t ON t.study_id = s.study_id "
            "AND t.state = 'COMPLETE' GROUP BY s.study_id"
        ).fetchall()
    finally:
        con.close()


def dump(run) -> list[str]:
    con = sqlite3.connect(run / "study.db")
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_resume_needs_only_out_and_a_renamed_folder_resumes_its_study(tmp_path):
    run = tmp_path / "bench"
    assert (
        cli(
            "search",
            "--space",
            "bench-mlp",
            "--sampler",
            "random",
            "--epochs",
            "1",
            "--trials",
            "2",
            "--seed",
            "3",
            "--quiet",
            "--out",
            str(run),
        ).exit_code
        == 0
    )
    result = cli("search", "--out", str(run), "--trials", "3", "--quiet")  # settings come from the run
    assert result.exit_code == 0, result.output
    settings = json.loads((run / "run.json").read_text())["settings"]
    assert settings["space"] == "bench-mlp" and settings["sampler"] == "random" and settings["seed"] == 3
    assert studies(run) == [("bench", 3)]
    moved = tmp_path / "renamed"
    run.rename(moved)
    assert cli("search", "--out", str(moved), "--trials", "4", "--quiet").exit_code == 0
    assert studies(moved) == [("bench", 4)]  # the same study, not a second one named 'renamed'
    # a changed setting that is given is still refused, and names the setting
    line = one_error(cli("search", "--out", str(moved), "--epochs", "2", "--trials", "5", "--quiet"))
    assert "epochs" in line
    # a second study name in the run's study.db is refused instead of created beside the first
    line = one_error(cli("search", *FAST, "--study", "other", "--trials", "5", "--out", str(moved)))
    assert "'bench'" in line and "'other'" in line
    assert studies(moved) == [("bench", 4)]


def test_a_plain_optuna_study_is_refused_not_adopted(tmp_path):
    run = tmp_path / "plain"
    run.mkdir()
    study = optuna.create_study(
        study_name="plain", storage=f"sqlite:///{run / 'study.db'}", directions=["maximize", "minimize"]
    )
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=3)
    before = dump(run)
    line = one_error(cli("search", *FAST, "--trials", "2", "--out", str(run)))
    assert "not made by energy-nas" in line
    assert dump(run) == before
    # with a run.json beside it (copied from elsewhere), report refuses it too, in one line
    (run / "run.json").write_text(json.dumps({"study_name": "plain", "settings": {}}))
    line = one_error(cli("report", str(run)))
    assert "not made by energy-nas" in line and "plain" in line


def test_a_start_killed_before_run_json_and_a_refused_seed_leave_nothing_blocking(tmp_path):
    run = tmp_path / "early"
    run.mkdir()
    # what a kill before run.json leaves: the study, with or without its settings
    optuna.create_study(
        study_name="early", storage=f"sqlite:///{run / 'study.db'}", directions=["maximize", "minimize"]
    )
    (run / "artifacts").mkdir()
    result = cli("search", *FAST, "--trials", "1", "--out", str(run))
    assert result.exit_code == 0, result.output
    one_dir = tmp_path / "one-objective"
    one_dir.mkdir()
    optuna.create_study(study_name="one-objective", storage=f"sqlite:///{one_dir / 'study.db'}")
    line = one_error(cli("search", *FAST, "--trials", "1", "--out", str(one_dir)))
    assert "1 objective(s)" in line
    fresh = tmp_path / "seeded"
    line = one_error(cli("search", *FAST, "--trials", "1", "--seed", "-1", "--out", str(fresh)))
    assert "--seed" in line
    assert not fresh.exists()
    assert cli("search", *FAST, "--trials", "1", "--seed", "1", "--out", str(fresh)).exit_code == 0


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_output_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        run = tmp_path / "modes"
        assert cli("search", *FAST, "--trials", "2", "--out", str(run)).exit_code == 0
        html = tmp_path / "report.html"
        assert cli("report", str(run), "--html", str(html)).exit_code == 0
    finally:
        os.umask(old)
    names = ("pareto.json", "pareto.csv", "pareto.png", "run.json", "study.db.lock")
    for path in [run / n for n in names] + [html]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    json.loads((run / "pareto.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in pareto.json"))


def test_a_search_whose_every_trial_fails_exits_non_zero_and_says_why(tmp_path, monkeypatch):
    import nas.search.objective

    def broken(*args, **kwargs):
        raise ValueError("loss exploded on purpose")

    monkeypatch.setattr(nas.search.objective, "train", broken)
    run = tmp_path / "failing"
    line = one_error(cli("search", *FAST, "--trials", "2", "--out", str(run)))
    assert "all 10 trials failed" in line and "exception:ValueError" in line and "loss exploded" in line
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    monkeypatch.undo()
    assert cli("search", *FAST, "--trials", "2", "--out", str(run)).exit_code == 0  # the corrected rerun


def test_export_records_preprocessing_follows_the_umask_and_never_leaves_a_partial_file(tmp_path, monkeypatch):
    import errno

    import numpy as np
    import torch

    from nas.data import load_dataset

    run = tmp_path / "r"
    assert cli("search", *FAST, "--trials", "1", "--out", str(run)).exit_code == 0
    old = os.umask(0o027)
    try:
        out = tmp_path / "exp"
        result = cli("export", str(run), "--trial", "0", "-o", str(out))
        assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    prep = json.loads((out / "architecture.json").read_text())["preprocessing"]
    assert prep["layout"] == "NCHW" and prep["dtype"] == "float32" and prep["input_shape"] == [1, 8, 8]
    # following the recorded steps on raw digits gives exactly what the model was trained on
    from sklearn.datasets import load_digits

    raw = load_digits().images[:5]
    fed = torch.from_numpy((raw.astype(np.float32) / prep["divide_by"]).reshape(-1, *prep["input_shape"]))
    data = load_dataset("digits")
    assert any(torch.equal(fed[0], x) for x in torch.cat([data.x_train, data.x_val, data.x_test]))

    def full_disk(job):
        job.paths["onnx"].write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    import dataclasses

    import nas.exporters

    onnx = nas.exporters.EXPORTERS["onnx"]
    monkeypatch.setitem(nas.exporters.EXPORTERS, "onnx", dataclasses.replace(onnx, write=full_disk))
    failed = tmp_path / "exp2"
    line = one_error(cli("export", str(run), "--trial", "0", "-o", str(failed)))
    assert "model.onnx" in line and "no space left on device" in line
    assert not (failed / "model.onnx").exists()
    assert not [p for p in failed.iterdir() if p.stat().st_size == 0 or p.name.endswith(".tmp")]


def test_variants_runs_with_the_runs_thread_count(tmp_path, monkeypatch):
    import torch

    run = tmp_path / "threads"
    assert cli("search", *FAST, "--trials", "1", "--threads", "2", "--out", str(run)).exit_code == 0
    import nas.variants

    # the fp32 row alone: the thread count is set before any variant trains
    only_fp32 = nas.variants.default_variants
    monkeypatch.setattr(nas.variants, "default_variants", lambda *a, **k: only_fp32(*a, **k)[:1])
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    try:
        result = cli("variants", str(run), "--trial", "0")
        assert result.exit_code == 0, result.output
    finally:
        real(1)
    assert seen and seen[0] == 2


def test_a_read_only_run_folder_can_be_reported_on(tmp_path, monkeypatch):
    """Where the run folder cannot be written, the study is opened as SQLite's `immutable` read-only
    database (a read-only mount is simulated by os.access; the real mount is checked by hand)."""
    import nas.runs

    run = tmp_path / "archived"
    assert cli("search", *FAST, "--trials", "1", "--out", str(run)).exit_code == 0
    con = sqlite3.connect(run / "study.db")  # what the search's exit does: fold the WAL into the file
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    before = dump(run)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: (mode != os.W_OK or not str(p).startswith(str(run))) and real_access(p, mode)
    )
    assert nas.runs.RunFolder(run).readable_sqlite_url.endswith("?immutable=1&uri=true")
    result = cli("report", str(run), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["front"]
    assert dump(run) == before
