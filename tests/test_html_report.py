"""The report's cost, carbon, hypervolume and pick, and the self-contained HTML report."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from nas.carbon import grams_co2e, lookup_region
from nas.cli import main, search
from nas.html_report import render_html, reproduce_command, write_html_report
from nas.hypervolume import hypervolume
from nas.report import build_report, format_table, report_dict
from nas.search import NOT_REPRODUCED, SearchSettings, run_search


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html") / "run"
    run_search(SearchSettings(space="mlp", trials=5, epochs=1, seed=11, out=str(out)))
    return out


# ------------------------------------------------------------------------------ the report's numbers
def test_search_cost_is_the_sum_over_the_studys_trials(run):
    rep = build_report(run)
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{run / 'study.db'}")
    training = sum(t.user_attrs["training"]["energy_j"] for t in study.trials)
    assert rep.cost.cost.training_j == pytest.approx(training)
    assert rep.cost.cost.measurement_j == 0.0  # every record is an estimate: no inference was run
    assert rep.cost.cost.trials_counted == 5
    # default intensity: the run's profile (cpu-host: 475 g/kWh, IEA 2019)
    assert rep.cost.intensity.g_per_kwh == 475 and "profile cpu-host" in rep.cost.intensity.source
    assert rep.cost.search_gco2e == pytest.approx(training / 3.6e6 * 475)


def test_region_and_grid_intensity_override_the_profile(run):
    fr = build_report(run, region="FR")
    assert fr.cost.search_gco2e == pytest.approx(grams_co2e(fr.cost.cost.total_j, lookup_region("FR")))
    given = build_report(run, grid_intensity=100.0)
    assert given.cost.intensity.g_per_kwh == 100.0


def test_report_dict_and_table_hold_cost_carbon_hypervolume_and_pick(run):
    rep = build_report(run, pick="knee")
    doc = report_dict(rep)
    for key in ("search_cost", "carbon", "savings", "hypervolume", "pick", "front"):
        assert key in doc
    assert doc["pick"]["trial"] == rep.pick.record.number
    assert doc["hypervolume"]["hypervolume"] == pytest.approx(hypervolume(rep.records, rep.hypervolume.reference))
    assert doc["hypervolume"]["reference"]["accuracy"] == 0.0
    assert [s["trial"] for s in doc["savings"]] == [r.number for r in rep.front]
    text = format_table(rep)
    for needle in (
        "search cost:",
        "carbon:",
        "hypervolume:",
        "reference point",
        f"-> trial #{rep.pick.record.number}",
        "break-even",
    ):
        assert needle in text
    json.dumps(doc, default=str)


def test_cli_report_json_with_pick_and_region(run):
    res = CliRunner().invoke(main, ["report", str(run), "--pick", "min-energy:accuracy>=0", "--region", "SE", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    cheapest = min(build_report(run).records, key=lambda r: (r.energy_per_inference_j, -r.accuracy))
    assert doc["pick"]["trial"] == cheapest.number
    assert doc["carbon"]["grid_intensity"]["g_per_kwh"] == lookup_region("SE").g_per_kwh
    res = CliRunner().invoke(main, ["report", str(run), "--region", "SE", "--grid-intensity", "5"])
    assert res.exit_code == 2 and "not both" in res.output


# ------------------------------------------------------------------------------ HTML
def test_html_is_one_self_contained_file(run, tmp_path):
    path = tmp_path / "report.html"
    rep = write_html_report(run, path, pick="knee", region="FR")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # nothing to fetch: no scripts, stylesheets, fonts or remote images
    assert not re.search(r"<script|<link|@import|url\(", page, re.I)
    assert not re.search(r"(src|href)\s*=\s*['\"](?!data:)", page, re.I)
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 2  # the Pareto plot and the hypervolume history
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    # the table, the search's energy and carbon, the methods and the settings
    for r in rep.front:
        assert f"<td class='l'>#{r.number}</td>" in page
    assert f"<tr class='pick'><td class='l'>#{rep.pick.record.number}</td>" in page
    assert f"{rep.cost.cost.total_j:.4g} J" in page and "gCO2e" in page and "Ember" in page
    assert "ESTIMATED" in page and "estimated:analytical" in page
    # each coefficient with its source (cpu-host's torch coefficients are calibrated on this host)
    assert "energy_per_mac_j" in page and "calibrated by nas profiles calibrate" in page
    assert reproduce_command(rep.settings) in page


def _parsed(command: str) -> SearchSettings:
    """The settings `nas search` would run with for this command line."""
    argv = shlex.split(command)
    assert argv[:2] == ["nas", "search"]
    params = search.make_context("search", argv[2:]).params
    return SearchSettings(progress=not params.pop("quiet"), **params)


def test_reproduce_command_parses_back_to_the_same_settings(run):
    settings = build_report(run).settings
    parsed = _parsed(reproduce_command(settings))
    for key in ("space", "profile", "dataset", "trials", "epochs", "sampler", "seed", "threads"):
        assert getattr(parsed, key) == settings[key], key
    assert list(parsed.objectives) == settings["objectives"]
    assert parsed.out == "runs/reproduced"


def test_reproduce_command_carries_non_default_training_settings(tmp_path):
    out = tmp_path / "odd"
    run_search(
        SearchSettings(
            trials=2,
            epochs=1,
            batch_size=16,
            lr=0.0125,
            split_seed=5,
            seed=3,
            early_stop=True,
            early_stop_k=2,
            energy_budget_j=1.0,
            objectives=("accuracy", "energy", "params"),
            out=str(out),
        )
    )
    stored = build_report(out).settings
    assert (stored["batch_size"], stored["lr"], stored["split_seed"]) == (16, 0.0125, 5)
    command = reproduce_command(stored)
    parsed = _parsed(command)
    compared = [f.name for f in dataclasses.fields(SearchSettings) if f.name in stored and f.name not in NOT_REPRODUCED]
    assert {"batch_size", "lr", "split_seed", "early_stop", "early_stop_k", "energy_budget_j"} <= set(compared)
    for key in compared:
        want = tuple(stored[key]) if isinstance(stored[key], list) else stored[key]
        assert getattr(parsed, key) == want, key
    assert command in render_html(build_report(out))


def test_html_escapes_what_it_shows(run):
    rep = build_report(run)
    rep.settings["sampler"] = "<script>alert(1)</script>"
    page = render_html(rep)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_cli_report_html(run, tmp_path):
    path = tmp_path / "out" / "r.html"
    res = CliRunner().invoke(main, ["report", str(run), "--html", str(path), "--pick", "knee"])
    assert res.exit_code == 0, res.output
    assert path.is_file() and f"HTML report: {path}" in res.output
    res = CliRunner().invoke(main, ["report", str(run), "--html", str(tmp_path)])
    assert res.exit_code != 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_headless_browser_renders_it_without_network(run, tmp_path):
    page = tmp_path / "report.html"
    write_html_report(run, page)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000  # a blank page compresses to a few kB
