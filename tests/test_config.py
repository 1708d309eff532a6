"""Loaders: every shipped file loads; invalid files fail with one line naming file and field.

Property-based tests below: random documents, documents mutated from every shipped space and
profile, and random or hostile YAML text are fed to `read_yaml`, `parse_space` and
`parse_profile`, which either load them or raise ConfigError, nothing else.
"""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.config import (
    HardwareProfile,
    SearchSpace,
    list_profiles,
    list_spaces,
    load_profile,
    load_space,
    parse_profile,
    parse_space,
    read_yaml,
)
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
    for alt in space.alternatives():
        assert alt.repeated.count.low >= 1


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
        ("family: mlp", "family: rnn", "family"),
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


# ------------------------------------------------------------------------------ properties: load or ConfigError
SPACE_DOCS = {p.stem: yaml.safe_load(p.read_text()) for p in list_spaces()}
PROFILE_DOCS = {p.stem: yaml.safe_load(p.read_text()) for p in list_profiles()}


def _field_names(doc: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            names.add(str(k))
            names |= _field_names(v)
    elif isinstance(doc, list):
        for v in doc:
            names |= _field_names(v)
    return names


# words the loaders look for, so random documents often reach deep validation code
KNOWN = sorted(
    set().union(*map(_field_names, [*SPACE_DOCS.values(), *PROFILE_DOCS.values()]))
    | {
        "int",
        "float",
        "mlp",
        "cnn",
        "estimate",
        "nvml",
        "rapl",
        "cpu",
        "gpu",
        "fp32",
        "bf16",
        "fp16",
        "int8",
        "relu",
        "conv",
        "dwsep",
        "inverted_residual",
        "1e-12",
        "-1e3",
        "a{99999999999}",
        "((((",
        "[",
        "",
    }
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=600),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**310),  # beyond float range
    st.integers(0, 3).map(lambda k: 10 ** (4400 + k)),  # beyond Python's int-to-str digit limit
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(KNOWN),
    st.dates(min_value=datetime.date(1990, 1, 1), max_value=datetime.date(2030, 1, 1)),
)
keys = st.one_of(st.sampled_from(KNOWN), st.text(max_size=8), st.integers(-3, 3), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=15,
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location in a nested document: a tuple of keys / indexes."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutated(draw: Any, docs: dict[str, Any]) -> Any:
    """A shipped document with 1-4 random edits: delete, replace, insert, wrap, stringify."""
    doc = copy.deepcopy(docs[draw(st.sampled_from(sorted(docs)))])
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["delete", "replace", "insert", "wrap", "stringify", "none"]))
        if not path:
            if op == "replace":
                doc = draw(values)
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(values)
        elif op == "insert" and isinstance(parent[key], dict):
            parent[key][draw(keys)] = draw(values)
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif op == "stringify":
            try:
                parent[key] = str(parent[key])
            except ValueError:  # holds an integer beyond the digit limit
                pass
        elif op == "none":
            parent[key] = None
    return doc


def _loads_or_config_error(parse: Any, doc: Any, expected: type) -> None:
    try:
        result = parse(doc, "doc.yaml")
    except ConfigError as e:
        message = str(e)
        assert message.startswith("doc.yaml") and "\n" not in message, message
        assert len(message) < 1000
        return
    assert isinstance(result, expected)


PROPS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(values)
def test_random_documents_load_or_raise_config_error(doc: Any) -> None:
    _loads_or_config_error(parse_space, doc, SearchSpace)
    _loads_or_config_error(parse_profile, doc, HardwareProfile)


@PROPS
@given(mutated(SPACE_DOCS))
def test_mutated_spaces_load_or_raise_config_error(doc: Any) -> None:
    _loads_or_config_error(parse_space, doc, SearchSpace)


@PROPS
@given(mutated(PROFILE_DOCS))
def test_mutated_profiles_load_or_raise_config_error(doc: Any) -> None:
    _loads_or_config_error(parse_profile, doc, HardwareProfile)


def test_mutation_strategy_reaches_both_outcomes() -> None:
    """Guard against a vacuous property: unmutated documents load, and a known edit is refused."""
    for doc in SPACE_DOCS.values():
        assert isinstance(parse_space(copy.deepcopy(doc), "doc.yaml"), SearchSpace)
    for doc in PROFILE_DOCS.values():
        assert isinstance(parse_profile(copy.deepcopy(doc), "doc.yaml"), HardwareProfile)
    bad = copy.deepcopy(next(iter(PROFILE_DOCS.values())))
    bad["inference"]["batch_size"] = 10**400
    bad["power"]["peak_w"]["value"] = 10**400
    with pytest.raises(ConfigError):
        parse_profile(bad, "doc.yaml")


def _read_text(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "doc.yaml"
    path.write_text(text, encoding="utf-8")
    return read_yaml(path)


HOSTILE_YAML = [
    "a: " + "9" * 5000,  # int beyond the digit limit: ValueError inside the YAML constructor
    "a: !!timestamp 2020-13-45",
    "a: 2020-13-45",
    "a: !!float x",
    "a: !!int x",
    "a: " + "[" * 3000,  # recursion
    "a: !!python/object/apply:os.system ['true']",  # safe_load refuses
    "? [a, b]\n: 1",
    "a: &x [1]\nb: *y",
    "\t- x",
    "a: 0x" + "f" * 5000,
    # exponential alias expansion: cheap as a shared structure, ruinous if anything copies or prints it
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    + "family: mlp\nname: *j\nmeter: *j\n",
]


@pytest.mark.parametrize("text", HOSTILE_YAML, ids=range(len(HOSTILE_YAML)))
def test_hostile_yaml_is_read_or_refused_with_config_error(tmp_path: Path, text: str) -> None:
    try:
        doc = _read_text(tmp_path, text)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e).startswith(str(tmp_path / "doc.yaml"))
        return
    _loads_or_config_error(parse_space, doc, SearchSpace)
    _loads_or_config_error(parse_profile, doc, HardwareProfile)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_random_text_is_read_or_refused_with_config_error(tmp_path_factory: Any, text: str) -> None:
    tmp = tmp_path_factory.mktemp("yaml")
    try:
        doc = _read_text(tmp, text)
    except ConfigError:
        return
    _loads_or_config_error(parse_space, doc, SearchSpace)
    _loads_or_config_error(parse_profile, doc, HardwareProfile)
