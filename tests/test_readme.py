"""The README's commands, pasted in order into a fresh folder, all work.

Every ```bash and ```python block of README.md runs in order in one temporary folder, as a new
user would paste them: same commands, flags, paths and order. To fit the test budget (the README
gives the full-size times), the sizes are scaled: `--trials N` becomes max(2, N / 10 rounded up), `--epochs E`
and `--retrain-epochs E` become 1, the 5,000-image `mnist5k` becomes the 1,797-image `digits`, and
`nas bench build` enumerates a 4-architecture space instead of 516, and the compression example
searches `mlp-compress` instead of `cnn-compress` (the same dimensions on a smaller family). `nas` commands run in-process
through click's CliRunner (what the `nas` script runs, without a new interpreter each), and `make`
lines are skipped (set-up is what a fresh clone tests). Blocks fenced ```sh are not run: the README
uses them for commands that need a server or run until stopped, and says so beside them.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nas.cli import main

REPO = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of README.md that the test runs, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [(lang, body) for lang, body in FENCE.findall(text) if lang in ("bash", "python")]


TINY_BENCH = """family: mlp
params:
  activation: {choices: [relu, tanh]}
  dropout: {choices: [0.0]}
layers:
  count: {low: 1, high: 1}
  params:
    width: {choices: [8, 16]}
"""


def scaled(argv: list[str], tiny_bench: str = "tiny-bench.yaml") -> list[str]:
    """Sizes made small (see the module docstring); everything else as written."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--trials":
            out[i + 1] = str(max(2, -(-int(out[i + 1]) // 10)))  # 20 and 25 stay apart: a resume adds trials
        elif arg in ("--epochs", "--retrain-epochs"):
            out[i + 1] = "1"
        elif arg == "--dataset" and out[i + 1] == "mnist5k":
            out[i + 1] = "digits"
        elif arg == "--space" and out[:2] == ["bench", "build"]:
            out[i + 1] = tiny_bench
        elif arg == "--space" and out[i + 1] == "cnn-compress":
            out[i + 1] = "mlp-compress"
    return out


def commands(body: str) -> list[str]:
    lines = []
    for line in body.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            lines.append(stripped)
    return lines


def run_line(line: str) -> tuple[int, str]:
    argv = shlex.split(line, comments=True)
    if argv[0] == "make":
        return 0, "skipped (set-up)"
    if argv[:3] == ["python", "-m", "nas"]:
        argv = ["nas", *argv[3:]]
    if argv[0] == "nas":
        result = CliRunner().invoke(main, scaled(argv[1:]), catch_exceptions=True)
        text = result.output + (result.stderr if result.stderr_bytes is not None else "")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            text += "".join(traceback.format_exception(result.exception))
        return result.exit_code, text
    if argv[0] == "optuna":  # Optuna's own CLI, in-process (its entry point reads sys.argv)
        import contextlib
        import io

        import optuna.cli

        out = io.StringIO()
        old = sys.argv
        sys.argv = argv
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = optuna.cli.main()
        finally:
            sys.argv = old
        return code, out.getvalue()
    raise AssertionError(f"README line the test cannot run: {line!r} (fence it ```sh and say why)")


def test_readme_commands_work_pasted_in_order(tmp_path, monkeypatch, capsys):
    blocks = readme_blocks()
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "examples", tmp_path / "examples")  # the repository files the README names
    (tmp_path / "tiny-bench.yaml").write_text(TINY_BENCH)
    monkeypatch.delenv("NAS_STORAGE", raising=False)
    times = []
    for lang, body in blocks:
        if lang == "python":
            code = re.sub(r"trials=(\d+)", lambda m: f"trials={max(2, -(-int(m[1]) // 10))}", body)
            code = re.sub(r"epochs=(\d+)", "epochs=1", code)
            t0 = time.perf_counter()
            exec(compile(code, "README.md (python block)", "exec"), {})
            times.append((time.perf_counter() - t0, code.splitlines()[-1]))
            continue
        for line in commands(body):
            t0 = time.perf_counter()
            code, output = run_line(line)
            times.append((time.perf_counter() - t0, line))
            assert code == 0, f"README command failed ({code}): {line}\n{output}"
            assert "Traceback" not in output, f"{line}\n{output}"
    with capsys.disabled():  # the README's time of each command at test scale, for the record
        for seconds, line in times:
            print(f"  {seconds:6.1f} s  {line[:100]}")


def test_the_readme_runs_nothing_the_test_skips_silently():
    """Every line of a run block is either run or a `make` line; placeholders never reach the test."""
    for _, body in readme_blocks():
        for line in commands(body):
            assert not re.search(r"\bRUN\b|\bNAME\b|\[--", line), f"placeholder in a runnable README line: {line}"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["search", "--trials", "60", "--epochs", "3"], ["search", "--trials", "6", "--epochs", "1"]),
        (["export", "r", "--retrain-epochs", "20"], ["export", "r", "--retrain-epochs", "1"]),
        (["search", "--trials", "5", "--dataset", "mnist5k"], ["search", "--trials", "2", "--dataset", "digits"]),
        (["search", "--out", "r", "--trials", "25"], ["search", "--out", "r", "--trials", "3"]),
        (["bench", "build", "--space", "bench-mlp"], ["bench", "build", "--space", "tiny-bench.yaml"]),
        (["search", "--space", "cnn-compress"], ["search", "--space", "mlp-compress"]),
    ],
)
def test_scaling(argv, expected):
    assert scaled(argv) == expected
