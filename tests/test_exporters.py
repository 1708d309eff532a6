"""The exporters table: one contract run over every registered format, and the registry's rules."""

from __future__ import annotations

import optuna
import pytest
import torch

from nas.config import load_space
from nas.exporters import (
    EXPORTERS,
    TOLERANCE,
    ExportedArchitecture,
    Exporter,
    ExportJob,
    export_files,
    register_exporter,
)
from nas.models import build_model
from nas.space import sample

INPUT_SHAPE, CLASSES = (1, 8, 8), 10


@pytest.fixture(scope="module")
def job_in(tmp_path_factory):
    """A fresh ExportJob for a small sampled MLP, writing into its own empty folder."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    arch = sample(study.ask(), load_space("mlp"))
    torch.manual_seed(0)
    model = build_model(arch, INPUT_SHAPE, CLASSES).eval()
    x = torch.rand(5, *INPUT_SHAPE)
    with torch.no_grad():
        reference = model(x)

    def make(name: str) -> ExportJob:
        out = tmp_path_factory.mktemp(name)
        paths = {key: out / file for key, file in export_files().items()}
        return ExportJob(
            model,
            ExportedArchitecture(arch, INPUT_SHAPE, CLASSES),
            paths,
            x,
            reference,
            header="contract test",
            metadata={"format": "test"},
        )

    return make


@pytest.mark.parametrize("name", list(EXPORTERS))
def test_every_exporter_writes_its_files_and_its_copy_passes_its_check(name, job_in):
    exporter = EXPORTERS[name]
    assert exporter.available() or exporter.optional, f"{name}: needs {exporter.requires} (the export extra)"
    if not exporter.available():
        pytest.skip(f"optional {name}: {exporter.requires} not installed")
    # formats may read what earlier ones wrote (the weights check rebuilds from architecture.json)
    job = job_in(name)
    for earlier in EXPORTERS.values():
        if earlier is exporter:
            break
        if earlier.available():
            earlier.write(job)
    exporter.write(job)
    out = job.paths[next(iter(exporter.files))].parent
    for key, file in exporter.files.items():
        assert job.paths[key] == out / file and job.paths[key].is_file() and job.paths[key].stat().st_size > 0
    if exporter.check is not None:
        check = exporter.check(job)
        assert check.passed and check.max_abs_diff <= TOLERANCE and check.inputs == len(job.x)
        # the check compares with the reference: a different reference fails it
        shifted = ExportJob(job.model, job.spec, job.paths, job.x, job.reference + 10 * TOLERANCE)
        bad = exporter.check(shifted)
        assert not bad.passed and bad.max_abs_diff > TOLERANCE


def test_file_keys_and_names_are_unique_across_the_table():
    keys = [k for e in EXPORTERS.values() for k in e.files]
    names = [n for e in EXPORTERS.values() for n in e.files.values()]
    assert len(keys) == len(set(keys)) and len(names) == len(set(names))
    assert export_files() == {k: n for e in EXPORTERS.values() for k, n in e.files.items()}


def test_a_duplicate_name_or_file_is_refused():
    first = next(iter(EXPORTERS.values()))
    with pytest.raises(ValueError, match="already registered"):
        register_exporter(Exporter(first.name, {"other_key": "other.bin"}, lambda job: None))
    key, file = next(iter(first.files.items()))
    with pytest.raises(ValueError, match="already used"):
        register_exporter(Exporter("another", {"another_key": file}, lambda job: None))
    with pytest.raises(ValueError, match="already used"):
        register_exporter(Exporter("another", {key: "another.bin"}, lambda job: None))
    assert "another" not in EXPORTERS
