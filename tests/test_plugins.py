"""Bring your own family, dataset and meter: entry points, loaded lazily by the registries.

The example package in examples/energy-nas-example is installed into a fresh virtual environment
(one that sees this interpreter's packages through a .pth file, so nothing is downloaded) and its
family and dataset go through spaces list, search, report, export and measure there. Meters and
broken plugins are checked in-process against entry points pointed at modules written here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from nas import plugins
from nas.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "energy-nas-example"

# Every command in one interpreter (each `nas` start imports torch; the commands are the CLI's own).
SCRIPT = """
import json, sys
from click.testing import CliRunner
from nas.cli import main
out = {}
for name, args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(main, args)
    out[name] = [r.exit_code, r.output]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with the example plugin installed (and nothing else)."""
    root = tmp_path_factory.mktemp("plugin")
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "base-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        cwd=root,
    )
    return python


def test_installed_plugin_survives_every_command(venv, tmp_path):
    run, exported = str(tmp_path / "run"), str(tmp_path / "exported")
    commands = [
        ("spaces", ["spaces", "list", "--json"]),
        (
            "search",
            [
                "search",
                "--space",
                "resmlp",
                "--dataset",
                "stripes",
                "--trials",
                "1",
                "--epochs",
                "1",
                "--out",
                run,
                "--quiet",
            ],
        ),
        ("report", ["report", run]),
        ("export", ["export", run, "--trial", "0", "-o", exported]),
        ("measure", ["measure", run, "--trial", "0", "--allow-estimate"]),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [str(venv), "-c", SCRIPT, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (code, text) in out.items():
        assert code == 0, f"nas {name}: {text}"
    spaces = {s["name"]: s for s in json.loads(out["spaces"][1])}
    assert spaces["resmlp"]["family"] == "resmlp" and spaces["resmlp"]["file"].endswith("nas_example/resmlp.yaml")
    assert "resmlp w" in out["report"][1]
    assert "check onnx (ONNX Runtime, CPUExecutionProvider)" in out["export"][1] and "(ok" in out["export"][1]
    card = json.loads((tmp_path / "exported" / "report_card.json").read_text())
    assert card["architecture"]["family"] == "resmlp"
    assert "resmlp w" in out["measure"][1]


def test_the_plugin_is_not_seen_without_its_package():
    """This interpreter does not have the example installed: the names stay unknown."""
    from nas.models import family_names

    assert "resmlp" not in family_names()
    with pytest.raises(ConfigError, match="unknown dataset 'stripes'"):
        from nas.data import load_dataset

        load_dataset("stripes")


@pytest.fixture
def fake_group(monkeypatch, tmp_path):
    """Point an entry point group at a module written to tmp_path (undone afterwards)."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(group: str, name: str, module: str, source: str, attr: str | None = None) -> None:
        (tmp_path / f"{module}.py").write_text(source)
        ep = EntryPoint(name=name, value=f"{module}:{attr}" if attr else module, group=group)
        real = plugins.entry_points
        monkeypatch.setattr(plugins, "entry_points", lambda group: [ep] if group == ep.group else real(group=group))
        plugins.reset(group)

    yield install
    for group in (plugins.FAMILIES_GROUP, plugins.DATASETS_GROUP, plugins.METERS_GROUP):
        plugins.reset(group)


def test_a_meter_from_an_entry_point_is_found_by_name(fake_group, monkeypatch):
    import nas.energy as energy

    monkeypatch.setattr(energy, "_BACKENDS", dict(energy._BACKENDS))
    fake_group(
        plugins.METERS_GROUP,
        "wattmeter",
        "fake_wattmeter_plugin",
        "from nas.energy.estimate import EstimateMeter\nclass Wattmeter(EstimateMeter):\n    name = 'wattmeter'\n",
        "Wattmeter",
    )
    assert "wattmeter" in energy.meter_names()
    assert energy.meter_class("wattmeter").__name__ == "Wattmeter"


def test_a_broken_plugin_is_named_in_one_line(fake_group):
    from nas.data import load_dataset

    fake_group(plugins.DATASETS_GROUP, "broken", "fake_broken_plugin", "raise ImportError('no such thing')\n")
    with pytest.raises(ConfigError) as e:
        load_dataset("broken")
    msg = str(e.value)
    assert "\n" not in msg and "energy_nas.datasets:broken" in msg and "no such thing" in msg


def test_a_family_entry_point_naming_a_class_registers_it(fake_group, monkeypatch):
    from nas.architecture import Architecture
    from nas.models import FAMILIES, architecture_label, build_model, get_family

    monkeypatch.setattr("nas.models.registry.FAMILIES", FAMILIES)  # same dict, restored below
    before = dict(FAMILIES)
    try:
        fake_group(
            plugins.FAMILIES_GROUP,
            "linear",
            "fake_linear_family",
            "from torch import nn\nfrom nas.models import Family\n"
            "class Linear(Family):\n"
            "    def build(self, arch, input_shape, num_classes):\n"
            "        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n",
            "Linear",
        )
        fam = get_family("linear")
        assert fam.name == "linear"
        arch = Architecture("linear", {}, ())
        assert architecture_label(arch) == "linear[]"
        assert build_model(arch, (1, 8, 8), 10) is not None
    finally:
        FAMILIES.clear()
        FAMILIES.update(before)
