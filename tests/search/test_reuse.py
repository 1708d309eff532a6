"""Do not re-train what was trained: repeated genotypes are reused, the front lists each network once."""

from __future__ import annotations

import json

import optuna

from nas.objectives import parse_objectives
from nas.pareto import TrialRecord, pareto_front

TWO_ARCHS = """
name: two
family: mlp
params:
  activation: {choices: [relu]}
  dropout: {choices: [0.0]}
layers:
  count: {low: 1, high: 1}
  params:
    width: {choices: [8, 16]}
"""


def _load(out):
    return optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}")


def test_a_repeated_genotype_is_not_trained_again(tmp_path, monkeypatch):
    import nas.search.objective as objective
    from nas.search import SearchSettings, run_search

    calls = []
    real_train = objective.train

    def counting_train(model, *args, **kwargs):
        calls.append(1)
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(objective, "train", counting_train)
    space = tmp_path / "two.yaml"
    space.write_text(TWO_ARCHS)
    out = tmp_path / "run"
    run_search(SearchSettings(space=str(space), epochs=1, trials=6, sampler="random", out=str(out)))
    trials = _load(out).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 6
    originals = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(calls) == len(originals) == len({json.dumps(t.params, sort_keys=True) for t in trials}) == 2
    by_number = {t.number: t for t in trials}
    for t in trials:
        if "duplicate_of" in t.user_attrs:
            first = by_number[t.user_attrs["duplicate_of"]]
            assert first.params == t.params and t.values == first.values
            assert t.user_attrs["training"]["energy_j"] == 0.0
            assert t.user_attrs["training"]["reused_energy_j"] == first.user_attrs["training"]["energy_j"]
    front = json.loads((out / "pareto.json").read_text())
    rows = front["front"] if isinstance(front, dict) else front
    archs = [json.dumps(r["architecture"], sort_keys=True) for r in rows]
    assert len(archs) == len(set(archs))


def _record(number, acc, energy, arch):
    return TrialRecord(number, {"accuracy": acc, "energy": energy}, acc, None, energy, "x", None, 1, 1, arch)


def test_front_lists_each_network_once():
    objectives = parse_objectives("accuracy,energy")
    a = {"family": "mlp", "params": {}, "units": [{"width": 8}]}
    b = {"family": "mlp", "params": {}, "units": [{"width": 16}]}
    records = [
        _record(3, 0.9, 2.0, a),
        _record(1, 0.9, 2.0, a),
        _record(2, 0.9, 2.0, b),
        _record(4, 0.5, 1.0, b),
        _record(5, 0.4, 3.0, a),
    ]
    front = pareto_front(records, objectives)
    # the first trial of network a, network b tied with it (a different network), and b's cheaper point
    assert [r.number for r in front] == [4, 1, 2]


def test_a_later_twin_waits_for_the_running_earlier_one_and_reuses_it():
    """Two workers that sample the same genotype at once: the later trial waits, it does not train."""
    import threading

    from nas.search.reuse import evaluated_twin

    dist = {"width": optuna.distributions.CategoricalDistribution([8])}  # both workers draw width 8
    study = optuna.create_study(directions=["maximize", "minimize"])
    first, second = study.ask(dist), study.ask(dist)
    finisher = threading.Timer(0.3, lambda: study.tell(first, [0.9, 1e-6]))
    finisher.start()
    twin = evaluated_twin(study, second.params, second.number, wait_s=60)
    finisher.join()
    assert twin is not None and twin.number == first.number and twin.values == [0.9, 1e-6]


def test_an_earlier_trial_never_waits_for_a_later_twin_and_a_failed_twin_is_not_reused():
    from nas.search.reuse import evaluated_twin

    dist = {"width": optuna.distributions.CategoricalDistribution([8])}
    study = optuna.create_study(directions=["maximize", "minimize"])
    first, second = study.ask(dist), study.ask(dist)
    # the earlier trial returns at once although its later twin is running (wait_s would be hit otherwise)
    assert evaluated_twin(study, first.params, first.number, wait_s=3600) is None
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    assert evaluated_twin(study, second.params, second.number, wait_s=3600) is None
