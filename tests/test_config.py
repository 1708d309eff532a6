"""Loaders: every shipped file loads; invalid files fail with one line naming file and field."""

from __future__ import annotations

import pytest

from nas.config import list_profiles, list_spaces, load_profile, load_space
from nas.errors import ConfigError

MLP = """
name: t
family: mlp
params:
  activation: {choices: [relu]}
  dropout: {type: float, low: 0.0, high: 0.2, step: 0.1}
layers:
  count: {low: 1, high: 2}
  params:
    width: {choices: [8, 16]}
"""


@pytest.mark.parametrize("path", list_spaces(), ids=lambda p: p.stem)
def test_every_shipped_space_loads(path):
    space = load_space(path)
    assert space.name == path.stem
    assert space.repeated.count.low >= 1


@pytest.mark.parametrize("path", list_profiles(), ids=lambda p: p.stem)
def test_every_shipped_profile_loads_with_sources(path):
    profile = load_profile(path)
    assert profile.name == path.stem
    assert profile.precision in profile.precisions
    for table in (profile.energy_per_mac_j, profile.peak_macs_per_s):
        for sourced in table.values():
            assert sourced.source.strip()


def test_load_by_name_and_by_path_agree(write_yaml):
    assert load_space("mlp") == load_space(load_space("mlp").source)
    assert load_space(write_yaml(MLP)).family == "mlp"


def _error(write_yaml, text: str, loader=load_space) -> str:
    path = write_yaml(text)
    with pytest.raises(ConfigError) as e:
        loader(path)
    msg = str(e.value)
    assert "\n" not in msg, "errors are one line"
    assert str(path) in msg, "errors name the file"
    return msg


@pytest.mark.parametrize(
    "old,new,field",
    [
        ("choices: [8, 16]", "choices: [8, x16]", "width"),
        ("{choices: [relu]}", "{choices: [swishy]}", "activation"),
        ("count: {low: 1, high: 2}", "count: {low: 3, high: 2}", "count"),
        ("family: mlp", "family: transformer", "family"),
        ("  dropout:", "  dropuot:", "dropuot"),
        ("high: 0.2", "high: 1.5", "dropout"),
        ("name: t", "name: t\nextra: 1", "extra"),
        ("count: {low: 1, high: 2}", "count: {low: 0, high: 2}", "count"),
    ],
)
def test_invalid_space_names_the_field(write_yaml, old, new, field):
    assert old in MLP
    msg = _error(write_yaml, MLP.replace(old, new))
    assert field in msg


def test_missing_required_param(write_yaml):
    msg = _error(write_yaml, MLP.replace("  activation: {choices: [relu]}\n", ""))
    assert "params.activation" in msg and "required" in msg


def test_unknown_block_lists_valid_ones(write_yaml):
    text = (load_space("cnn").source and open(load_space("cnn").source).read()).replace(
        "[conv, dwsep, inverted_residual]", "[conv, resnext]"
    )
    msg = _error(write_yaml, text)
    assert "resnext" in msg and "inverted_residual" in msg and "stages.params.block" in msg


def test_condition_on_unknown_or_later_param(write_yaml):
    text = open(load_space("cnn").source).read().replace("when: {block: inverted_residual}", "when: {blok: x}")
    assert "blok" in _error(write_yaml, text)
    text = open(load_space("cnn").source).read().replace("when: {block: inverted_residual}", "when: {block: resnet}")
    assert "resnet" in _error(write_yaml, text)


def test_malformed_yaml_names_line(write_yaml):
    msg = _error(write_yaml, "family: mlp\nparams: [unclosed\n")
    assert "malformed YAML" in msg
    assert ":3:" in msg or ":2:" in msg


def test_missing_file_and_unknown_name():
    with pytest.raises(ConfigError, match="file not found"):
        load_space("/nonexistent/space.yaml")
    with pytest.raises(ConfigError, match="valid: .*mlp"):
        load_space("no-such-space")


def test_profile_errors_name_field(write_yaml):
    text = open(load_profile("cpu-host").source).read()
    msg = _error(write_yaml, text.replace("batch_size: 32", "batch_size: -1"), load_profile)
    assert "inference.batch_size" in msg
    msg = _error(write_yaml, text.replace("meter: estimate", "meter: wattmeter"), load_profile)
    assert "meter" in msg and "nvml" in msg
    msg = _error(write_yaml, text.replace("value: 4.6e-12", "value: cheap"), load_profile)
    assert "estimate.energy_per_mac_j.fp32.value" in msg
