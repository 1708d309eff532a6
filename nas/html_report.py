"""One self-contained HTML file for a run: share it, open it anywhere, no network needed.

Plots are embedded as base64 PNG, styles are inline, and there are no scripts, fonts or links to
fetch. The page holds the front table (with savings and break-even), the Pareto plot, the
hypervolume history, the search's energy and carbon, how every energy number was obtained, and the
settings, search space and versions needed to reproduce the run.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shlex
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure

from nas.carbon import grams_co2e, lookup_region
from nas.errors import ConfigError
from nas.plot import hypervolume_figure, method_label, pareto_figure
from nas.report import Report, _si, build_report, count_cell
from nas.runs import write_atomic
from nas.search.settings import search_arguments

# Grids shown beside the one used, so a reader sees how much the location matters.
COMPARE_REGIONS = ("SE", "FR", "GB", "US", "DE", "CN", "IN", "WORLD")

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.sub{color:#666;font-size:.9em} .warn{background:#fff3cd;border:1px solid #e0c36a;padding:.6em .9em;border-radius:4px;margin:1em 0}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0} .card{border:1px solid #ddd;border-radius:6px;padding:.6em .9em;min-width:150px}
.card b{display:block;font-size:1.25em} .card span{color:#666;font-size:.8em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0} th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} tr.pick td{background:#e8f4ff;font-weight:600}
img{max-width:100%;height:auto;border:1px solid #eee} pre{background:#f7f7f7;padding:.7em;overflow-x:auto;font-size:.8em}
code{background:#f2f2f2;padding:0 .25em} .scroll{overflow-x:auto} td.wrap{white-space:normal;word-break:break-word;min-width:14em}
table.front td{white-space:nowrap} table.front td.wrap{white-space:normal}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def figure_png(fig: Figure) -> str:
    """A figure as a data: URI (base64 PNG)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def reproduce_command(settings: dict[str, Any]) -> str:
    """The `nas search` command line that reruns the search with the stored `settings`.

    Built by `nas.search.search_arguments` from the settings as stored with the study (every
    stored value written out, so non-default batch size, learning rate or split seed carry
    over); the rerun writes to runs/reproduced.
    """
    return shlex.join(["nas", "search", *search_arguments(settings), "--out", "runs/reproduced"])


def _table(
    header: list[str],
    rows: list[list[Any]],
    left: set[int] = frozenset(),
    row_class: list[str] | None = None,
    table_class: str = "",
    wrap: set[int] = frozenset(),
) -> str:
    def cell(i: int, c: Any) -> str:
        cls = " ".join(x for x in ("l" if i in left else "", "wrap" if i in wrap else "") if x)
        return f"<td class='{cls}'>{_e(c)}</td>" if cls else f"<td>{_e(c)}</td>"

    head = "".join(f"<th class='l'>{_e(h)}</th>" if i in left else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = []
    for n, row in enumerate(rows):
        cls = f" class='{row_class[n]}'" if row_class and row_class[n] else ""
        body.append(f"<tr{cls}>{''.join(cell(i, c) for i, c in enumerate(row))}</tr>")
    tcls = f" class='{table_class}'" if table_class else ""
    return f"<div class='scroll'><table{tcls}><tr>{head}</tr>{''.join(body)}</table></div>"


def _front_section(rep: Report) -> str:
    saved = {s.trial: s for s in rep.cost.savings} if rep.cost else {}
    picked = rep.pick.record.number if rep.pick else None
    rows, classes = [], []
    for r in rep.front:
        s = saved.get(r.number)
        if s is None or s.trial == s.baseline_trial:
            cells = ["baseline" if s else "-", "-", "-"]
        else:
            be = s.break_even_inferences
            cells = [
                f"{_si(s.saved_per_inference_j, 'J')} ({s.saved_fraction:.0%})",
                "never" if be is None else f"{be:,}",
                "-" if s.saved_g_per_million is None else f"{s.saved_g_per_million:.3g}",
            ]
        rows.append(
            [
                f"#{r.number}",
                f"{r.accuracy:.4f}",
                "-" if r.test_accuracy is None else f"{r.test_accuracy:.4f}",
                _si(r.energy_per_inference_j, "J"),
                r.energy_method,
                _si(r.latency_s, "s"),
                count_cell(r, "params"),
                count_cell(r, "macs"),
                *cells,
                r.attrs.get("arch", ""),
            ]
        )
        classes.append("pick" if r.number == picked else "")
    header = [
        "trial",
        "val acc",
        "test acc",
        "energy / inference",
        "method",
        "latency / batch",
        "params",
        "MACs",
        "saved / inference",
        "break-even (inferences)",
        "gCO2e saved / 10^6 inf",
        "architecture",
    ]
    note = (
        "<p class='sub'>Sorted by energy. Validation accuracy selected the front; test accuracy is shown, never "
        "used to select. <i>Saved / inference</i> compares each member with the most accurate one (the baseline); "
        "<i>break-even</i> is the number of inferences after which that saving repays the search's energy.</p>"
    )
    return _table(header, rows, left={0, 4, 11}, row_class=classes, table_class="front", wrap={11}) + note


def _cost_section(rep: Report) -> str:
    if rep.cost is None:
        return "<p>No energy recorded.</p>"
    c = rep.cost.cost
    rows = [
        ["training (all complete trials)", f"{c.training_j:.4g} J"],
        ["energy measurement (all complete trials)", f"{c.measurement_j:.4g} J"],
        ["total", f"{c.total_j:.4g} J = {c.kwh:.4g} kWh"],
        ["trials counted", f"{c.trials_counted} (not counted, unfinished: {c.trials_not_counted})"],
        ["methods", ", ".join(c.methods) or "-"],
    ]
    out = _table(["search cost", "value"], rows, left={0, 1})
    if c.estimated:
        out += "<p class='warn'>The search cost includes ESTIMATED energy (see the methods below).</p>"
    i = rep.cost.intensity
    if i is None:
        out += (
            "<p>No grid carbon intensity known: pass <code>--grid-intensity G</code> or <code>--region CODE</code>.</p>"
        )
        return out
    out += (
        f"<p><b>{rep.cost.search_gco2e:.4g} gCO2e</b> at {i.g_per_kwh:g} gCO2e/kWh "
        f"<span class='sub'>({_e(i.source)})</span>.</p>"
    )
    rows = []
    for code in COMPARE_REGIONS:
        r = lookup_region(code)
        rows.append(
            [f"{r.name} ({r.code})", f"{r.g_per_kwh:g}", f"{grams_co2e(c.total_j, type(i)(r.g_per_kwh, '')):.4g}"]
        )
    out += "<p class='sub'>The same search on other grids (Ember 2024 country averages, CC BY 4.0):</p>"
    out += _table(["grid", "gCO2e/kWh", "search gCO2e"], rows, left={0})
    return out


def _methods_section(rep: Report, meta: dict[str, Any]) -> str:
    counts = Counter(r.energy_method for r in rep.records)
    rows = [[m, n] for m, n in sorted(counts.items())]
    out = _table(["energy method", "trials"], rows, left={0})
    meter = meta.get("meter") or {}
    profile = meta.get("profile") or {}
    out += (
        f"<p>Meter used: <code>{_e(meter.get('backend'))}</code>; the profile "
        f"<code>{_e(rep.settings.get('profile'))}</code> names <code>{_e(meter.get('profile_meter'))}</code>"
        f"{' &mdash; the sensor was unavailable and its analytical estimate was used' if meter.get('backend') != meter.get('profile_meter') else ''}. "
        f"{_e(profile.get('description', ''))}</p>"
    )
    example = next((r for r in rep.front), None) or next(iter(rep.records), None)
    if example is not None:
        rec = dict(example.attrs.get("energy") or {})
        keys = (
            "method",
            "api",
            "scope",
            "device_name",
            "driver_version",
            "batch_size",
            "precision",
            "objective_uses",
            "repeats",
            "window_s",
            "inferences_per_window",
            "idle_power_w",
            "idle_subtracted",
            "latency_method",
        )
        rows = [[k, rec.get(k)] for k in keys if k in rec]
        out += f"<p>Record of trial #{example.number} (every trial's full record is in the study):</p>"
        out += _table(["field", "value"], rows, left={0, 1})
        coef = (rec.get("coefficients") or {}).get("coefficients") or {}
        if coef:
            rows = [[k, v.get("value"), v.get("source")] for k, v in coef.items()]
            out += "<p>Coefficients of the estimate, with their sources:</p>"
            out += _table(["coefficient", "value", "source"], rows, left={0, 2})
    return out


def _reproduce_section(rep: Report, meta: dict[str, Any]) -> str:
    s = rep.settings
    out = f"<pre>{_e(reproduce_command(s))}</pre>"
    out += (
        "<p class='sub'>The space and profile names refer to the shipped nas/resources/search_spaces/ and nas/resources/hardware_profiles/; the exact "
        "documents used are stored in the study and shown below.</p>"
    )
    out += _table(
        ["setting", "value"],
        [[k, json.dumps(v) if isinstance(v, (list, dict)) else v] for k, v in s.items()],
        left={0, 1},
    )
    versions = meta.get("versions") or {}
    out += _table(["package", "version"], [[k, v] for k, v in versions.items()], left={0, 1})
    out += f"<p class='sub'>host {_e(meta.get('host'))}, {_e(meta.get('platform'))}; dataset {_e(json.dumps(meta.get('dataset')))}</p>"
    if meta.get("space"):
        out += f"<p>Search space:</p><pre>{_e(yaml.safe_dump(meta['space'], sort_keys=False))}</pre>"
    return out


def render_html(rep: Report) -> str:
    """The whole page as one string."""
    meta = rep.run.read_run_json()
    methods = method_label(rep.records)
    fig = pareto_figure(rep.records, rep.front, title=rep.study_name)
    if rep.pick is not None:
        p = rep.pick.record
        fig.axes[0].scatter(
            [p.energy_per_inference_j],
            [p.accuracy],
            s=160,
            facecolors="none",
            edgecolors="tab:blue",
            linewidths=2,
            zorder=5,
            label=f"pick #{p.number}",
        )
        fig.axes[0].legend(loc="lower right", fontsize=8)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>energy-nas report: {_e(rep.study_name)}</title><style>{CSS}</style></head><body>",
        f"<h1>energy-nas report: {_e(rep.study_name)}</h1>",
        f"<p class='sub'>run <code>{_e(rep.run.path)}</code> &middot; generated "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} &middot; energy: {_e(methods)}</p>",
    ]
    if rep.estimated:
        parts.append(
            "<p class='warn'><b>Energy figures are ESTIMATED</b> (analytical model from the hardware "
            "profile), not measured by a sensor. See <i>How energy was obtained</i>.</p>"
        )
    cards = [
        (f"{len(rep.records)}", f"complete trials ({sum(rep.failed.values())} failed, {rep.running} running)"),
        (f"{len(rep.front)}", "architectures on the front"),
    ]
    if rep.hypervolume is not None:
        cards.append((f"{rep.hypervolume.fraction:.4f}", "hypervolume (fraction of box)"))
    if rep.cost is not None:
        cards.append((f"{rep.cost.cost.total_j:.4g} J", f"search energy ({rep.cost.cost.kwh:.3g} kWh)"))
        if rep.cost.search_gco2e is not None:
            cards.append((f"{rep.cost.search_gco2e:.3g} g", f"CO2e at {rep.cost.intensity.g_per_kwh:g} g/kWh"))
    parts.append(
        "<div class='cards'>"
        + "".join(f"<div class='card'><b>{_e(v)}</b><span>{_e(k)}</span></div>" for v, k in cards)
        + "</div>"
    )
    if rep.pick is not None:
        parts.append(
            f"<p>Pick <code>{_e(rep.pick.rule.text)}</code> &rarr; <b>trial #{rep.pick.record.number}</b>"
            f"{'' if rep.pick.on_front else ' (not on the front)'}: {_e(rep.pick.reason)}</p>"
        )
    parts += [
        "<h2>Pareto front</h2>",
        f"<img alt='accuracy vs energy per inference, all trials and the front' src='{figure_png(fig)}'>",
    ]
    parts.append(_front_section(rep))
    parts.append("<h2>Hypervolume</h2>")
    if rep.hypervolume is not None:
        hv = rep.hypervolume
        parts.append(
            f"<img alt='hypervolume after each trial' src='{figure_png(hypervolume_figure(hv, rep.study_name, methods))}'>"
        )
        r = hv.reference
        parts.append(
            f"<p>Hypervolume {hv.hypervolume:.4g} accuracy&times;J, {hv.fraction:.4f} of the box between the "
            f"reference point (validation accuracy {r.accuracy:g}, energy {r.energy_per_inference_j:.4g} J per "
            f"inference; {_e(r.rule)}) and a perfect free model.</p>"
        )
    else:
        parts.append("<p>No feasible trial yet.</p>")
    parts += ["<h2>Search cost and carbon</h2>", _cost_section(rep)]
    parts += ["<h2>How energy was obtained</h2>", _methods_section(rep, meta)]
    parts += ["<h2>Settings to reproduce</h2>", _reproduce_section(rep, meta)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html_report(
    run_path: str | Path,
    path: str | Path,
    *,
    storage: str | None = None,
    pick: str | None = None,
    grid_intensity: float | None = None,
    region: str | None = None,
) -> Report:
    """Build the run's report and write it as one self-contained HTML file at `path`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--html {path}: is a folder; give a file name such as report.html")
    rep = build_report(run_path, storage, pick=pick, grid_intensity=grid_intensity, region=region)
    write_atomic(path, render_html(rep))
    return rep
