"""The family contract, run over every registered family (built-in and plugin alike).

Each family: builds networks of the right output shape from samples of its shipped spaces, gives
every different architecture a different label, exports to TorchScript and ONNX in agreement with
PyTorch, prunes (fewer parameters, same output shape) or refuses with a ConfigError, declares
parameter rules that the loader enforces, and survives a one-trial, one-epoch search.
"""

from __future__ import annotations

import json
from dataclasses import replace

import optuna
import pytest
import torch

from nas.architecture import Architecture
from nas.compress import prune
from nas.config import SearchSpace, list_spaces, load_space, parse_space
from nas.errors import ConfigError
from nas.models import architecture_label, build_model, family_names, get_family, model_stats
from nas.space import sample

DIGITS = (1, 8, 8)


def _spaces_of(family: str) -> list[SearchSpace]:
    """The shipped single-family spaces of `family` (family-choice spaces contribute theirs)."""
    out = []
    for path in list_spaces():
        for alt in load_space(path).alternatives():
            if alt.family == family:
                out.append(alt)
    return out


def _samples(space: SearchSpace, n: int, seed: int = 0) -> list[Architecture]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    archs = []
    for _ in range(n):
        trial = study.ask()
        archs.append(sample(trial, space))
        study.tell(trial, 0.0)
    return archs


def _smallest(family: str) -> Architecture:
    """A cheap architecture of `family`: of a few samples, the one with the fewest modules once cut
    to its first unit (exporting takes time per graph node)."""
    archs = [replace(a, units=a.units[:1]) for a in _samples(_spaces_of(family)[0], 8, seed=1)]
    return min(archs, key=lambda a: len(list(build_model(a, DIGITS, 10).modules())))


FAMILIES = family_names()


def test_every_family_ships_a_space_and_unknown_names_list_the_valid_ones():
    for name in FAMILIES:
        assert _spaces_of(name), f"family {name!r} has no shipped space"
    with pytest.raises(ConfigError) as e:
        get_family("rnn")
    assert all(name in str(e.value) for name in FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_builds_with_the_right_output_shape(family):
    for space in _spaces_of(family)[:1]:
        for arch in _samples(space, 3):
            arch = replace(arch, units=arch.units[:2])  # depth is not what is tested; keep it quick
            for shape in (DIGITS, (1, 28, 28)):
                model = build_model(arch, shape, 10).eval()
                assert model(torch.randn(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize("family", FAMILIES)
def test_labels_are_unambiguous(family):
    """Two different genotypes never share a label (over a random sample of each space)."""
    seen: dict[str, str] = {}
    for space in _spaces_of(family):
        for arch in _samples(space, 150, seed=7):
            label = architecture_label(arch)
            genotype = arch.to_json()
            assert seen.setdefault(label, genotype) == genotype, f"{label!r} names two architectures"
    assert len(seen) > 20


def test_cnn_labels_tell_apart_networks_the_old_summary_merged():
    """Before the contract, two CNNs of 1.2M and 2.7M MACs printed the same summary."""
    base = {"block": "conv", "channels": 32, "repeats": 2}
    a = Architecture("cnn", {"activation": "relu", "width_multiplier": 1.0}, ({**base, "kernel": 3, "stride": 1},))
    b = Architecture("cnn", {"activation": "relu", "width_multiplier": 1.0}, ({**base, "kernel": 5, "stride": 1},))
    assert model_stats(build_model(a, DIGITS, 10), DIGITS).macs != model_stats(build_model(b, DIGITS, 10), DIGITS).macs
    assert architecture_label(a) != architecture_label(b)


@pytest.mark.parametrize("family", FAMILIES)
def test_exports_in_every_format_in_agreement(family, tmp_path):
    """Every exporter of the table (architecture, weights, TorchScript, ONNX...) writes the
    family's network and its copy agrees with PyTorch within the exporters' tolerance."""
    pytest.importorskip("onnxruntime")
    from nas.deploy import rebuild
    from nas.exporters import EXPORTERS, ExportedArchitecture, ExportJob

    torch.manual_seed(0)
    arch = _smallest(family)
    model = rebuild(arch, DIGITS, 10).eval()  # pruned as the architecture says, as a trial ends
    x = torch.randn(5, *DIGITS)
    with torch.no_grad():
        reference = model(x)
    paths = {key: tmp_path / name for e in EXPORTERS.values() for key, name in e.files.items()}
    job = ExportJob(model, ExportedArchitecture(arch, DIGITS, 10), paths, x, reference)
    checked = set()
    for exporter in EXPORTERS.values():
        if not exporter.available():
            continue
        exporter.write(job)
        if exporter.check is not None:
            check = exporter.check(job)
            assert check.passed, (exporter.name, check.max_abs_diff)
            checked.add(exporter.name)
    assert {"torchscript", "onnx"} <= checked


@pytest.mark.parametrize("family", FAMILIES)
def test_prunes_or_refuses(family, write_yaml):
    fam = get_family(family)
    arch = _smallest(family)
    model = build_model(arch, DIGITS, 10).eval()
    if not fam.prunable:
        with pytest.raises(ConfigError, match=f"not defined for family '{family}'"):
            prune(model, family, 0.5)
        doc = json.loads(json.dumps(_spaces_of(family)[0].to_dict()))
        doc["params"]["prune_ratio"] = {"choices": [0.0, 0.5]}
        with pytest.raises(ConfigError, match="prune_ratio"):
            parse_space(doc, "space.yaml")
        return
    pruned = prune(model, family, 0.5).eval()
    assert model_stats(pruned, DIGITS).params < model_stats(model, DIGITS).params
    assert pruned(torch.randn(3, *DIGITS)).shape == (3, 10)


@pytest.mark.parametrize("family", FAMILIES)
def test_loader_enforces_the_family_rules(family):
    fam = get_family(family)
    doc = json.loads(json.dumps(_spaces_of(family)[0].to_dict()))
    doc["params"]["no_such_param"] = {"choices": [1]}
    with pytest.raises(ConfigError, match="no_such_param.*unknown field"):
        parse_space(doc, "space.yaml")
    required = next((p.name for p in fam.params if p.required), None)
    if required:
        doc = json.loads(json.dumps(_spaces_of(family)[0].to_dict()))
        del doc["params"][required]
        with pytest.raises(ConfigError, match=f"{required}.*is required"):
            parse_space(doc, "space.yaml")
    for precision in ("fp32", "bf16", "fp16", "int8"):
        doc = json.loads(json.dumps(_spaces_of(family)[0].to_dict()))
        doc["params"]["precision"] = {"choices": [precision]}
        if precision in fam.precisions:
            parse_space(doc, "space.yaml")
        else:
            with pytest.raises(ConfigError, match=f"precision.*'{precision}'"):
                parse_space(doc, "space.yaml")


@pytest.mark.parametrize("family", FAMILIES)
def test_one_epoch_search(family, tmp_path):
    from nas.search import SearchSettings, run_search

    space = _spaces_of(family)[0]
    doc = json.loads(json.dumps(space.to_dict()))
    doc[space.repeated.name]["count"] = {"low": 1, "high": 1}  # one unit: the search, not the size, is tested
    path = tmp_path / f"{family}.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    result = run_search(SearchSettings(space=str(path), trials=1, epochs=1, out=str(tmp_path / "run")))
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    (trial,) = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert trial.user_attrs["architecture"]["family"] == family
    assert trial.user_attrs["arch"] == architecture_label(Architecture.from_dict(trial.user_attrs["architecture"]))
    assert 0.0 <= trial.values[0] <= 1.0 and trial.values[1] > 0
    assert result is not None


def test_readme_documents_every_parameter_of_every_built_in_family():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("## Model families") :]
    table = table[: table.index("\n## ", 5)]
    for name in FAMILIES:
        fam = get_family(name)
        if type(fam).__module__.startswith("nas."):
            row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
            groups, stack = [], [fam.unit]
            while stack:
                g = stack.pop()
                groups.append(g)
                stack.extend(g.groups)
            names = [p.name for p in fam.params] + [p.name for g in groups for p in g.params] + [g.name for g in groups]
            if "as `transformer`" in row:  # the row lists only what it adds
                names = [n for n in names if n not in {p.name for p in get_family("transformer").params}]
            for param in names:
                assert f"`{param}`" in row, f"README's {name} row lacks `{param}`"
