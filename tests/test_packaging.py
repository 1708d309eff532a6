"""The shipped search spaces and hardware profiles are package data: an installed wheel finds them.

The wheel is built from a copy of the package sources and installed without dependencies into a
fresh virtual environment that sees the test environment's site-packages through a .pth file (so
torch is not installed again); `nas` then runs from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from nas.config import PROFILES_DIR, SPACES_DIR

REPO = Path(__file__).resolve().parent.parent


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def test_the_shipped_files_live_inside_the_package():
    package = REPO / "nas"
    assert SPACES_DIR.is_relative_to(package) and PROFILES_DIR.is_relative_to(package)
    assert (SPACES_DIR / "mlp.yaml").is_file() and (PROFILES_DIR / "cpu-host.yaml").is_file()


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_lists_spaces_and_runs_a_search(tmp_path):
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ and *.egg-info there
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "nas", src / "nas", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src, cwd=tmp_path)
    wheel = next(dist.glob("energy_nas-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nas/resources/search_spaces/mlp.yaml" in names and "nas/resources/hardware_profiles/cpu-host.yaml" in names

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    # a plain path line: the test environment's own .pth files (its editable `nas`) are not processed
    Path(site, "test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path
    )

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NAS_STORAGE")}
    env["OMP_NUM_THREADS"] = "1"
    where = run(python, "-c", "import nas; print(nas.__file__)", cwd=outside, env=env).stdout.strip()
    assert Path(where).is_relative_to(Path(site)), where  # the wheel's copy, not the checkout's
    listed = run(venv / "bin" / "nas", "spaces", "list", cwd=outside, env=env).stdout
    assert "mlp" in listed and "cnn" in listed, listed
    run(
        venv / "bin" / "nas",
        "search",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--out",
        "run",
        "--quiet",
        cwd=outside,
        env=env,
    )
    front = json.loads((outside / "run" / "pareto.json").read_text())["front"]
    assert len(front) == 1
