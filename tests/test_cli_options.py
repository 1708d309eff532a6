"""The CLI's options come from the settings dataclasses: flags, defaults and help defined once."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

import click
import pytest

from nas.cli import search, worker
from nas.cli_commands import bench_build
from nas.cli_options import COMMA_LIST, field_option, settings_options
from nas.flags import option
from nas.search.settings import NOT_REPRODUCED, SearchSettings, WorkerSettings, search_arguments
from nas.tabular import BENCH_OBJECTIVES, BENCH_SPACE


def parsed(command: click.Command, args: list[str]) -> dict:
    return command.make_context(command.name, args).params


def test_search_without_arguments_runs_with_the_dataclass_defaults():
    params = parsed(search, [])
    assert SearchSettings(progress=not params.pop("quiet"), **params) == SearchSettings(progress=True)


def test_every_flagged_setting_is_a_search_option_with_its_flag_and_help():
    options = {p.name: p for p in search.params}
    flagged = [f for f in dataclasses.fields(SearchSettings) if "flag" in f.metadata]
    assert len(flagged) >= 20
    for f in flagged:
        assert options[f.name].opts == [f.metadata["flag"]] and options[f.name].help == f.metadata["help"], f.name
    assert set(options) == {f.name for f in flagged} | {"quiet"}


def test_bench_build_and_worker_read_their_defaults_from_the_dataclasses(tmp_path):
    params = parsed(bench_build, ["-o", str(tmp_path / "t.json")])
    params.pop("output")
    assert SearchSettings(**params) == SearchSettings(space=BENCH_SPACE, objectives=BENCH_OBJECTIVES)
    params = parsed(worker, ["--storage", "sqlite:///x.db"])
    params.pop("quiet")
    assert WorkerSettings(**params) == WorkerSettings(storage="sqlite:///x.db")


@pytest.mark.parametrize(
    "settings",
    [
        SearchSettings(),
        SearchSettings(
            space="cnn",
            trials=7,
            timeout_s=12.5,
            epochs=2,
            sampler="nsga2",
            objectives=("accuracy", "energy", "latency"),
            seed=4,
            threads=2,
            batch_size=32,
            lr=0.01,
            split_seed=9,
            allow_estimate=True,
            energy_budget_j=2e-6,
            latency_budget_s=0.004,
            early_stop=True,
            early_stop_k=5,
            workers=3,
            share_device=True,
        ),
        SearchSettings(table="bench.json", profile="path/with space.yaml"),
    ],
    ids=["defaults", "every-flag", "table"],
)
def test_search_arguments_parse_back_to_the_same_settings(settings):
    stored = dataclasses.asdict(settings)
    stored["objectives"] = list(stored["objectives"])  # as stored with a study
    params = parsed(search, search_arguments(stored))
    params.pop("quiet")
    back = SearchSettings(**params)
    for f in dataclasses.fields(SearchSettings):
        if f.name not in NOT_REPRODUCED and "flag" in f.metadata:
            assert getattr(back, f.name) == getattr(settings, f.name), f.name


def test_a_field_without_a_default_is_a_required_option_and_types_follow_the_annotation():
    @dataclasses.dataclass(frozen=True)
    class Toy:
        url: str = option(flag="--url", help="Where.")
        names: tuple[str, ...] = option(("a", "b"), "--names", "Which.")
        limit_s: float | None = option(None, "--limit", "How long.")
        loud: bool = option(False, "--loud", "Shout.")

    @click.command()
    @settings_options(Toy)
    def toy(**kw):
        return Toy(**kw)

    assert toy.main(["--url", "u", "--names", "x,y", "--limit", "1.5", "--loud"], standalone_mode=False) == Toy(
        "u", ("x", "y"), 1.5, True
    )
    assert toy.main(["--url", "u"], standalone_mode=False) == Toy("u")
    with pytest.raises(click.MissingParameter):
        toy.main([], standalone_mode=False)
    with pytest.raises(click.BadParameter):
        toy.main(["--url", "u", "--limit", "soon"], standalone_mode=False)
    with pytest.raises(KeyError):
        field_option(Toy, "nothing")
    assert COMMA_LIST.convert(" a, ,b ", None, None) == ("a", "b")


def test_the_cli_loads_without_torch():
    code = "import sys, nas.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_library_default_is_read_from_the_signature_and_shown_in_help():
    from nas.cli import variants
    from nas.variants import compare_variants

    want = inspect.signature(compare_variants).parameters["prune_ratio"].default
    assert parsed(variants, ["run", "--trial", "1"])["prune_ratio"] == want
    assert f"[default: {want}]" in variants.get_help(click.Context(variants))
