"""`nas bench import`: a CSV of NAS-Bench-201 cells and metrics becomes a replayable table."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner

from nas.cli import main
from nas.models.nb201 import EDGES

HEADER = "arch_idx,rep_arch_idx,arch_str,accuracy_pct,energy_j,latency_s\n"
CELLS = [
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    # mostly none, but the skip 3<-0 carries the input: not degenerate, so measure-first replays it
    "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
]
ROWS = [f"{i},{i},{c},{50 + 10 * i},{0.002 * (i + 1)},{0.001 * (i + 1)}\n" for i, c in enumerate(CELLS)]


def _cli(*args):
    return CliRunner().invoke(main, list(args))


def test_import_then_replay(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(HEADER + "".join(ROWS))
    out = tmp_path / "table.json"
    res = _cli("bench", "import", str(csv_path), "--space", "nb201", "--profile", "raspberry-pi-5", "-o", str(out))
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert len(doc["rows"]) == 3 and doc["settings"]["space"] == "nb201"
    for key, row in doc["rows"].items():
        params = json.loads(key)
        i = CELLS.index("+".join(parse_cell_str(params)))
        assert row["values"] == {"accuracy": (50 + 10 * i) / 100, "energy": 0.002 * (i + 1), "latency": 0.001 * (i + 1)}
        assert row["user_attrs"]["energy_method"] == "imported" and row["user_attrs"]["energy_source"] == "t.csv"

    run = tmp_path / "replay"
    # 3 of the space's 15,625 cells: the measure-first sampler draws its candidates from the table's rows
    res = _cli(
        "search", "--table", str(out), "--sampler", "measure-first", "--trials", "3", "--out", str(run), "--quiet"
    )
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name="replay", storage=f"sqlite:///{run / 'study.db'}")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert {len(t.params) for t in trials} == {7}  # six edges and the cell count
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3
    # workers joining the study rebuild its context from storage: they replay the same table
    from nas.search.context import context_from_study

    ctx = context_from_study(study)
    assert ctx.table is not None and len(ctx.table.rows) == 3 and ctx.data.name == "imported:t.csv"
    front = json.loads((run / "pareto.json").read_text())["front"]
    assert [r["accuracy"] for r in front] == [0.5, 0.6, 0.7]  # accuracy rises with energy here: all on it
    # the CSV had no parameter or MAC counts: the report shows none, not 0
    report = _cli("report", str(run))
    assert report.exit_code == 0, report.output
    rows = [ln.split() for ln in report.output.splitlines() if ln.startswith("#")]
    assert len(rows) == 3 and all(row[7:9] == ["-", "-"] for row in rows), report.output  # "2 mJ", "1 ms": 2 words each


def parse_cell_str(params):
    ops = [params[e] for e in EDGES]
    return [f"|{ops[0]}~0|", f"|{ops[1]}~0|{ops[2]}~1|", f"|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"]


@pytest.mark.parametrize(
    "row, column, words",
    [
        ("9,9,|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|,50,0.001,0.001\n", "arch_str", "unknown operation"),
        ("9,9,|none~0|+|none~0|none~1|,50,0.001,0.001\n", "arch_str", "3 nodes"),
        ("9,9," + CELLS[0] + ",150,0.001,0.001\n", "accuracy_pct", "[0, 100]"),
        ("9,9," + CELLS[0] + ",50,-1,0.001\n", "energy_j", "> 0"),
        ("9,9," + CELLS[0] + ",50,abc,0.001\n", "energy_j", "'abc'"),
        ("9,9," + CELLS[0] + ",50,0.001,\n", "latency_s", "latency"),
    ],
)
def test_bad_row_is_one_line_naming_file_row_and_column(tmp_path, row, column, words):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(HEADER + ROWS[1] + row)
    out = tmp_path / "table.json"
    res = CliRunner().invoke(main, ["bench", "import", str(csv_path), "--space", "nb201", "-o", str(out)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nas: error: {csv_path}: row 3, column '{column}'"), lines
    assert words in lines[0]
    assert not out.exists()


def test_missing_column_and_wrong_space(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(HEADER.replace("energy_j", "joules") + ROWS[0])
    res = CliRunner().invoke(main, ["bench", "import", str(csv_path), "--space", "nb201", "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "no column 'energy_j'" in res.stderr
    csv_path.write_text(HEADER + ROWS[0])
    res = CliRunner().invoke(main, ["bench", "import", str(csv_path), "--space", "mlp", "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "row 2, column 'arch_str'" in res.stderr


def test_measure_first_past_the_rows_within_the_budget(tmp_path):
    """A partial table whose rows within the budget are all tried ends in one line saying so, not in
    'is not in the table' (Optuna's fallback draw lands outside the table)."""
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(HEADER + "".join(ROWS))
    out = tmp_path / "table.json"
    res = _cli("bench", "import", str(csv_path), "--space", "nb201", "--profile", "raspberry-pi-5", "-o", str(out))
    assert res.exit_code == 0, res.output
    run = tmp_path / "replay"
    args = ["search", "--table", str(out), "--sampler", "measure-first", "--trials", "4", "--out", str(run), "--quiet"]
    res = CliRunner().invoke(main, [*args, "--energy-budget", "5mJ"])  # 2 of the 3 rows are within it
    assert res.exit_code not in (0, None)
    assert "within the budgets has been tried" in res.stderr and "--trials or wider budgets" in res.stderr, res.stderr
    assert len(optuna.load_study(study_name="replay", storage=f"sqlite:///{run / 'study.db'}").get_trials()) == 3
