"""Search cost, carbon and break-even arithmetic, and the shipped grid-intensity table."""

from __future__ import annotations

import csv

import pytest

from nas.carbon import (
    INTENSITY_TABLE,
    GridIntensity,
    break_even_inferences,
    grams_co2e,
    lookup_region,
    measurement_energy_j,
    regions,
    resolve_intensity,
    savings,
    search_cost,
)
from nas.config import Sourced
from nas.errors import ConfigError
from nas.pareto import TrialRecord


def rec(n: int, acc: float, energy: float) -> TrialRecord:
    return TrialRecord(
        number=n,
        values={"accuracy": acc, "energy": energy},
        accuracy=acc,
        test_accuracy=None,
        energy_per_inference_j=energy,
        energy_method="measured:nvml-counter",
        latency_s=None,
        params=0,
        macs=0,
        architecture={},
    )


# ------------------------------------------------------------------------------ arithmetic
def test_one_kwh_at_500_g_per_kwh_is_500_g():
    assert grams_co2e(3.6e6, GridIntensity(500.0, "test")) == pytest.approx(500.0)


@pytest.mark.parametrize(
    "search_j, saved_j, expected",
    [
        (1000.0, 1e-3, 1_000_000),  # exact division
        (1000.0, 3e-3, 333_334),  # 333,333.3 rounds up: the search is paid back after the next one
        (0.0, 1e-3, 0),
        (1000.0, 0.0, None),  # nothing saved: never pays back
        (1000.0, -1e-3, None),  # costs more than the baseline
    ],
)
def test_break_even_is_search_energy_over_saving_rounded_up(search_j, saved_j, expected):
    assert break_even_inferences(search_j, saved_j) == expected


def test_savings_against_the_most_accurate_front_member():
    front = [rec(0, 0.80, 1e-6), rec(1, 0.90, 4e-6), rec(2, 0.95, 11e-6)]
    out = {s.trial: s for s in savings(front, search_energy_j=50.0, intensity=GridIntensity(360.0, "test"))}
    assert {s.baseline_trial for s in out.values()} == {2}
    assert out[0].saved_per_inference_j == pytest.approx(10e-6)
    assert out[0].saved_fraction == pytest.approx(10 / 11)
    assert out[0].break_even_inferences == 5_000_000  # 50 J / 10 uJ
    assert out[1].break_even_inferences == 7_142_858  # 50 J / 7 uJ = 7,142,857.1 -> up
    assert out[2].saved_per_inference_j == 0 and out[2].break_even_inferences is None
    # 10 uJ x 10^6 inferences = 10 J = 10 / 3.6e6 kWh, x 360 g/kWh = 1e-3 g
    assert out[0].saved_g_per_million == pytest.approx(1e-3)


def test_baseline_ties_on_accuracy_go_to_the_cheaper_model():
    out = savings([rec(0, 0.9, 1e-6), rec(1, 0.9, 2e-6)], search_energy_j=1.0)
    assert out[0].baseline_trial == 0


def test_search_cost_sums_training_and_measurement_of_every_trial():
    estimated = {"method": "estimated:analytical", "energy_per_inference_j": 1e-6}
    measured = {
        "method": "measured:nvml-counter",
        "gross_energy_per_inference_j": 2e-6,
        "energy_per_inference_j": 1.5e-6,
        "inferences_per_window": 100,
        "repeats": 5,
        "idle_power_w": 10.0,
        "window_s": 1.0,
    }
    attrs = [
        {"training": {"energy_j": 3.0, "method": "estimated:analytical"}, "energy": estimated},
        {"training": {"energy_j": 4.5, "method": "measured:nvml-counter"}, "energy": measured},
        {"energy": measured},  # over budget: measured, never trained
        {"fail_reason": "nan_loss"},  # nothing recorded
    ]
    cost = search_cost(attrs, not_counted=2)
    assert cost.training_j == pytest.approx(7.5)
    # gross 2 uJ x 100 inferences x 5 windows = 1 mJ, plus 10 W x 1 s idle baseline = 10 J; twice
    assert cost.measurement_j == pytest.approx(2 * (1e-3 + 10.0))
    assert cost.total_j == pytest.approx(7.5 + 20.002)
    assert cost.kwh == pytest.approx((7.5 + 20.002) / 3.6e6)
    assert (cost.trials_counted, cost.trials_not_counted) == (3, 3)
    assert cost.methods == ("estimated:analytical", "measured:nvml-counter")
    assert cost.estimated


def test_an_estimate_runs_no_inference_so_its_measurement_costs_nothing():
    assert measurement_energy_j({"method": "estimated:analytical", "energy_per_inference_j": 1.0}) == 0.0


# ------------------------------------------------------------------------------ intensity
def test_intensity_comes_from_the_flag_then_the_region_then_the_profile():
    prof = Sourced(475.0, "IEA 2019 world average")
    assert resolve_intensity(100.0, None, prof).g_per_kwh == 100.0
    r = resolve_intensity(None, "fr", prof, "cpu-host")
    assert r.g_per_kwh == lookup_region("FR").g_per_kwh and "Ember" in r.source
    p = resolve_intensity(None, None, prof, "cpu-host")
    assert p.g_per_kwh == 475.0 and p.source == "profile cpu-host: IEA 2019 world average"
    assert resolve_intensity(None, None, None) is None


def test_bad_intensity_options_fail_with_one_line():
    with pytest.raises(ConfigError, match="not both"):
        resolve_intensity(100.0, "FR")
    with pytest.raises(ConfigError, match=">= 0"):
        resolve_intensity(-1.0)
    with pytest.raises(ConfigError, match=r"unknown region 'XX' \(valid: .*FR.*US"):
        resolve_intensity(None, "XX")


@pytest.mark.parametrize("code", ["FR", "fr", "FRA", "France", " france "])
def test_regions_by_alpha2_alpha3_or_name(code):
    assert lookup_region(code).code == "FR"


def test_uk_means_great_britain():
    assert lookup_region("UK").code == "GB"


def test_shipped_table_cites_its_source_and_is_one_consistent_year():
    text = INTENSITY_TABLE.read_text(encoding="utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("Ember" in line for line in header) and any("CC BY 4.0" in line for line in header)
    table = regions()
    assert 30 <= len(table) <= 80
    assert {r.year for r in table.values()} == {2024}
    assert all(10 < r.g_per_kwh < 1400 for r in table.values())
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    assert len({row["code"] for row in rows}) == len(rows) == len({row["alpha3"] for row in rows})
    # hydro/nuclear grids well below coal-heavy ones, as the measuring notes say
    assert lookup_region("SE").g_per_kwh < lookup_region("FR").g_per_kwh < 100 < lookup_region("US").g_per_kwh
    assert lookup_region("IN").g_per_kwh > 600
