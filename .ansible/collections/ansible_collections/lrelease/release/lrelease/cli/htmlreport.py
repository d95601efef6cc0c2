"""``lrelease report``: one roll-out as a self-contained HTML page.

What it shows: who ran it, when and why, and how it ended; the build's provenance; per host, the
error rate and the latency over the roll-out as charts marked with the host's switch, its gates
and its rollback; the wave table with every gate's verdict and evidence. The data is what the
state database records (the roll-out, each host's phases, the gates' evidence) and the series the
scrape gate's readings left (lrelease/series.py).

Self-contained: one file, no request leaves it. The charting code (plotly.js, as the ``plotly``
package ships it) is inlined once; the figures are JSON in the page; a Content-Security-Policy
that allows no source at all (only the page's own inline code and data: URLs) makes the browser
refuse any fetch. Every stored string (reason, actor, hosts, evidence) is HTML-escaped, and the
JSON is escaped for a <script> element; no stored string reaches plotly's own text rendering.

``page`` is a pure function of a :class:`ReportData`, so the layout is tested without a fleet.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from lrelease import builds, policies, series
from lrelease.cli import report
from lrelease.cli.helptext import read_epilog
from lrelease.cli.release import _project, config_option
from lrelease.cli.tables import when
from lrelease.config import ProjectConfig
from lrelease.errors import InternalError, LreleaseError
from lrelease.rollout import Releaser
from lrelease.state import GateOutcome, HostEvent, Rollout
from lrelease.statedb import iso, utc_now

CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
       "font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")
# The marks on a host's charts: (what, colour, dash).
MARKS = {"switch": ("#1f77b4", "dash"), "gate pass": ("#2ca02c", "solid"), "gate fail": ("#d62728", "solid"),
         "gate inconclusive": ("#ff7f0e", "solid"), "rollback": ("#9467bd", "dot")}
PROVENANCE_KEYS = ("version", "repository", "branch", "commit", "tags", "branch_point", "picks", "reverts", "built_by",
                   "built_at", "sha256")


@dataclass(frozen=True)
class ReportData:
    rollout: Rollout
    events: Sequence[HostEvent]
    gates: Sequence[GateOutcome]
    series: Mapping[str, Sequence[Mapping[str, Any]]] | None  # host -> points (lrelease/series.py); None: none kept
    gate: str  # how its waves were judged, for a host without a series: "health", "apm (prometheus)", ...
    provenance: Mapping[str, Any] | None = None  # the build record's provenance; None: no build record


def plotly_js() -> str:
    """plotly.js as the installed ``plotly`` package ships it (minified, ~4.8 MB)."""
    from plotly.offline import get_plotlyjs

    code = get_plotlyjs()
    if "</script" in code.lower():  # it could not be inlined in a <script> element as it is
        raise InternalError("the plotly package's plotly.js cannot be inlined (it holds </script>)")
    return code


# -- the page --------------------------------------------------------------------------------------
def page(data: ReportData, generated_at: str) -> str:
    """The whole HTML document."""
    rollout, events, gates = report.scrubbed(data.rollout, data.events, data.gates)
    hosts = list(dict.fromkeys([*host_order(rollout, events, gates), *(data.series or {})]))
    figures: dict[str, Any] = {}
    charts = []
    for number, host in enumerate(hosts, 1):
        points = (data.series or {}).get(host) or []
        if points:
            chart_id = f"chart-{number}"
            figures[chart_id] = figure(points, marks(host, rollout, events, gates))
            body = f'<div class="chart" id="{chart_id}" data-host="{_e(host)}"></div>'
        else:
            body = f'<p class="no-series">{_e(no_series(data))}</p>'
        charts.append(f'<section class="host"><h3>{_e(host)}</h3>{body}</section>')
    title = f"lrelease roll-out {rollout.id}: {rollout.action} {rollout.build} to {rollout.env}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="generated">Generated {_e(when(generated_at, seconds=True))} by lrelease report. '
        "Times are UTC.</p>",
        "<h2>Who, when, why</h2>", who_when_why(rollout),
        "<h2>Build provenance</h2>", provenance(data.provenance, rollout.build),
        "<h2>Error rate and latency per host</h2>",
        '<p class="legend">Marks: ' + " ".join(
            f'<span style="color:{colour}">{_e(name)}</span>' for name, (colour, _) in MARKS.items()) + "</p>",
        *charts,
        "<h2>Waves and gates</h2>", wave_table(rollout, events, gates),
    ]
    if figures:
        parts += [f'<script id="plotly-js">{plotly_js()}</script>',
                  f'<script id="figures" type="application/json">{script_json(figures)}</script>',
                  f"<script>{DRAW}</script>"]
    else:
        parts.append('<script>document.body.dataset.charts = "none";</script>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no ``<``, ``>`` or ``&`` can end it or open a comment."""
    return (json.dumps(value, separators=(",", ":"), allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def host_order(rollout: Rollout, events: Sequence[HostEvent], gates: Sequence[GateOutcome]) -> list[str]:
    """The hosts a resume found done, the planned hosts in wave order, then any other host a
    record names."""
    plan = rollout.plan if isinstance(rollout.plan, Mapping) else {}
    done = plan.get("done")
    named: list[str] = [str(h) for h in done] if isinstance(done, list) else []
    for wave in plan.get("waves") or []:
        hosts = wave.get("hosts") if isinstance(wave, Mapping) else None
        named += [str(h) for h in hosts or []]
    named += [e.host for e in events] + [g.host for g in gates]
    return list(dict.fromkeys(named))


def no_series(data: ReportData) -> str:
    if data.gate == "health":
        return "No error-rate or latency series: this roll-out was judged by the /health gate, which reads none."
    if data.series is None and data.gate == "apm (scrape)":
        return ("No error-rate or latency series kept for this roll-out: a plain ansible-playbook or AWX run, a "
                "roll-out older than the last 50 kept, or one a resume continued (the resume's report has them).")
    if data.series is None:
        return (f"No error-rate or latency series kept for this roll-out: its gate ({data.gate}) keeps its readings "
                "in the provider's own store, not in lrelease's.")
    return "No error-rate or latency series for this host: the gate took no two readings of it with traffic between."


# -- who, when, why ----------------------------------------------------------------------------------
def who_when_why(rollout: Rollout) -> str:
    took = report._span(rollout.started_at, rollout.finished_at)
    rows: list[tuple[str, str]] = [
        ("roll-out", rollout.id), ("action", rollout.action), ("environment", rollout.env),
        ("build", rollout.build), ("previous build", rollout.previous_build or "-"),
        ("status", rollout.status), ("exit status", "-" if rollout.exit_code is None else str(rollout.exit_code)),
        ("actor", rollout.actor), ("via", report.via(rollout)), ("reason", rollout.reason or "-"),
        ("started", when(rollout.started_at, seconds=True)),
        ("finished", when(rollout.finished_at, seconds=True)
         + (f" (after {report.seconds(took)})" if took is not None else "")),
    ]
    if rollout.rollback_started_at:
        rows.append(("rollback started", when(rollout.rollback_started_at, seconds=True)))
    if rollout.resumes:
        rows.append(("resumes", rollout.resumes))
    if rollout.undoes:
        rows.append(("undoes", rollout.undoes))
    rows += [("policy", phrase) for phrase in policies.describe(rollout.policy)]
    what = report.what_next(rollout.status, rollout.env)
    if what:
        rows.append(("next", what))
    return _table(("", ""), rows, header=False, css="facts")


def provenance(found: Mapping[str, Any] | None, build: str) -> str:
    """The build record's provenance (repository, branch, commit, tags, cherry-picks, reverts, who
    built it and when), or that there is none."""
    if not found:
        return f'<p class="no-provenance">Build {_e(build)}: no build record.</p>'
    keys = [k for k in PROVENANCE_KEYS if k in found] + [k for k in found if k not in PROVENANCE_KEYS]
    lineage = {"picks": builds.lineage(found.get("picks") or [], []),
               "reverts": builds.lineage([], found.get("reverts") or [])}
    rows = [(key.replace("_", " "), "; ".join(lineage[key]) if lineage.get(key) else _value(found[key]))
            for key in keys]
    return _table(("", ""), rows, header=False, css="facts provenance")


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) if value else "none"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    return "-" if value is None else str(value)


# -- the wave table ------------------------------------------------------------------------------------
def wave_table(rollout: Rollout, events: Sequence[HostEvent], gates: Sequence[GateOutcome]) -> str:
    """One row per gate (wave, host, verdict, when, reason, evidence), then the hosts no gate judged
    with their final phase."""
    phases = report.final_phases(events)
    reasons = _reasons(events)
    rows = []
    judged = set()
    for gate in gates:
        judged.add(gate.host)
        pending = reasons.get((gate.host, gate.wave)) or [""]
        reason = pending.pop(0)
        lines = report.gate_block(gate, reason)
        evidence = "\n".join(" " * line.indent + line.text.plain for line in lines[1:])
        rows.append((str(gate.wave), gate.host, gate.verdict.upper(), when(gate.at, seconds=True),
                     reason or "-", phases.get(gate.host, "-").replace("_", " "),
                     _Raw(f"<pre>{_e(evidence)}</pre><details><summary>evidence as recorded (JSON)</summary>"
                          f"<pre>{_e(json.dumps(gate.evidence, indent=2, sort_keys=True, default=str))}</pre>"
                          "</details>")))
    for host, wave in _planned(rollout, events):
        if host not in judged:
            rows.append((wave, host, "-", "-", "-", phases.get(host, "not reached").replace("_", " "), "no gate recorded"))
    if not rows:
        return '<p class="no-gates">No waves or gates recorded.</p>'
    return _table(("wave", "host", "verdict", "at", "reason", "host's final phase", "evidence"), rows, css="waves")


def _reasons(events: Sequence[HostEvent]) -> dict[tuple[str, int], list[str]]:
    found: dict[tuple[str, int], list[str]] = {}
    for event in events:
        if event.phase in ("gate_passed", "gate_failed") and isinstance(event.detail, Mapping):
            wave = report._num(event.detail.get("wave"))
            found.setdefault((event.host, int(wave or 0)), []).append(str(event.detail.get("reason") or ""))
    return found


def _planned(rollout: Rollout, events: Sequence[HostEvent]) -> list[tuple[str, str]]:
    plan = rollout.plan if isinstance(rollout.plan, Mapping) else {}
    out = []
    for number, wave in enumerate(plan.get("waves") or [], 1):
        if isinstance(wave, Mapping):
            out += [(str(h), str(wave.get("index") or number)) for h in wave.get("hosts") or []]
    named = {h for h, _ in out}
    out += [(e.host, "-") for e in events if e.host not in named]
    return list(dict.fromkeys(out))


class _Raw(str):
    """Markup built here, put in a cell as it is."""


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, header: bool = True, css: str = "") -> str:
    cells = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else _e(c)}</td>" for c in row) + "</tr>" for row in rows)
    thead = "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in columns) + "</tr></thead>" if header else ""
    return f'<table class="{_e(css)}">{thead}<tbody>{cells}</tbody></table>'


# -- the charts -----------------------------------------------------------------------------------------
def _plot_time(value: float | str) -> str:
    """A moment as plotly reads a date axis: ``2026-11-30 05:50:35.123`` (UTC, no zone suffix)."""
    if isinstance(value, str):
        moment = datetime.fromisoformat(value)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    else:
        moment = datetime.fromtimestamp(float(value), timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def marks(host: str, rollout: Rollout, events: Sequence[HostEvent], gates: Sequence[GateOutcome]) -> list[tuple[str, str]]:
    """(what, when) for the host's chart: its switches, its gates with their verdicts, its rollback
    (the roll-out's own start of rollback, and the host's rolled back/reverted events)."""
    found = [("switch", e.at) for e in events if e.host == host and e.phase == "switched"]
    found += [(f"gate {g.verdict}", g.at) for g in gates if g.host == host]
    found += [("rollback", e.at) for e in events if e.host == host and e.phase in ("reverted", "rolled_back")]
    if rollout.rollback_started_at:
        found.append(("rollback", rollout.rollback_started_at))
    return sorted(set(found), key=lambda m: m[1])


def figure(points: Sequence[Mapping[str, Any]], host_marks: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A plotly figure: error rate (%) above, latency (p50, p95 in ms) below, one time axis, a
    vertical line for each mark. Only fixed words reach plotly's text (never a stored string)."""
    x = [_plot_time(p["at"]) for p in points]
    err = [None if p.get("error_rate") is None else round(100 * float(p["error_rate"]), 4) for p in points]
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": "error rate (%)", "x": x, "y": err,
         "yaxis": "y", "line": {"color": "#d62728"}},
        {"type": "scatter", "mode": "lines+markers", "name": "p95 latency (ms)", "x": x,
         "y": [p.get("p95_ms") for p in points], "xaxis": "x", "yaxis": "y2", "line": {"color": "#1f77b4"}},
        {"type": "scatter", "mode": "lines", "name": "p50 latency (ms)", "x": x,
         "y": [p.get("p50_ms") for p in points], "xaxis": "x", "yaxis": "y2", "line": {"color": "#7f7f7f", "dash": "dot"}},
    ]
    shapes, notes = [], []
    for number, (what, at) in enumerate(host_marks):
        colour, dash = MARKS.get(what, ("#000000", "solid"))
        t = _plot_time(at)
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": t, "x1": t, "y0": 0, "y1": 1,
                       "line": {"color": colour, "width": 2, "dash": dash}})
        notes.append({"x": t, "xref": "x", "yref": "paper", "y": 1.0, "yanchor": "bottom", "text": what,
                      "showarrow": False, "yshift": 12 * (number % 3), "font": {"size": 10, "color": colour}})
    layout = {
        "height": 420, "margin": {"l": 60, "r": 20, "t": 50, "b": 40}, "showlegend": True,
        "legend": {"orientation": "h", "y": -0.15},
        "xaxis": {"type": "date", "title": {"text": "time (UTC)"}, "anchor": "y2"},
        "yaxis": {"domain": [0.56, 1.0], "title": {"text": "errors %"}, "rangemode": "tozero"},
        "yaxis2": {"domain": [0.0, 0.44], "title": {"text": "latency ms"}, "rangemode": "tozero"},
        "shapes": shapes, "annotations": notes,
    }
    return {"data": data, "layout": layout}


# Nothing on the page may offer to send the chart anywhere (plotly's "Share chart..." uploads it).
PLOTLY_CONFIG = {"displaylogo": False, "showLink": False, "showSendToCloud": False, "showEditInChartStudio": False,
                 "responsive": True, "modeBarButtonsToRemove": ["sendChartToCloud", "select2d", "lasso2d"]}
# Draws every figure; the body's data-charts says when all have rendered (or that one failed).
DRAW = """
(function () {
  var CONFIG = %s;
  var figures = JSON.parse(document.getElementById("figures").textContent);
  var drawn = Object.keys(figures).map(function (id) {
    var f = figures[id];
    return Plotly.newPlot(id, f.data, f.layout, CONFIG);
  });
  Promise.all(drawn).then(function () { document.body.dataset.charts = "rendered"; },
                          function (err) { document.body.dataset.charts = "failed"; console.error(err); });
})();
""" % json.dumps(PLOTLY_CONFIG)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; } h3 { font-size: 1em; margin: 1em 0 .2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc; padding: .25em .5em;
vertical-align: top; text-align: left; } table.facts td:first-child { font-weight: 600; white-space: nowrap; }
pre { margin: 0; white-space: pre-wrap; font-size: .85em; } .generated, .legend { color: #555; font-size: .9em; }
.chart { width: 100%; max-width: 1100px; height: 420px; } .no-series, .no-provenance { color: #555; font-style: italic; }
.legend span { margin-right: 1em; font-weight: 600; }
"""


# -- the command ------------------------------------------------------------------------------------------
def gate_description(project: ProjectConfig, env: str) -> tuple[str, Any]:
    """How the environment's waves are judged ("health", "apm (scrape)", ...) and, for the scrape
    provider, its settings (to read a readings file still kept for a resume)."""
    try:
        gate = project.environment(env).gate
    except LreleaseError:  # the environment is gone from lrelease.yml: only the stored record remains
        return "unknown", None
    if gate is None or gate.kind == "health":
        return "health", None
    return f"apm ({gate.provider})", series.settings_for(gate)


def collect(releaser: Releaser, rollout: Rollout, provenance: Mapping[str, Any] | None = None) -> ReportData:
    """What the page shows of a stored roll-out: its record, its series, how it was judged, and
    the build's provenance (``lrelease build``'s record, unless given)."""
    kind, settings = gate_description(releaser.project, rollout.env)
    kept = series.load(releaser.project.state_dir, rollout.id, releaser.readings_path(rollout.id), settings)
    store = releaser.store
    if provenance is None:
        provenance = builds.provenance(store, rollout.build)
    return ReportData(rollout, store.host_events(rollout.id), store.gates(rollout.id), kept, kind, provenance)


def write(text: str, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


@click.command("report", epilog=read_epilog([
    "lrelease report 3f2a9c                       # writes <state_dir>/reports/3f2a9c....html, prints its path",
    "lrelease report 3f2a9c --out rollout.html",
    "lrelease report 3f2a9c --out - > rollout.html",
]))
@click.argument("rollout_id")
@click.option("--env", "-e", "env", default=None, help="Only look among this environment's roll-outs.")
@click.option("--out", "out", default=None, help="The file to write ('-': stdout) "
              "[default: reports/<rollout-id>.html under the state dir].")
@config_option
def report_command(rollout_id: str, env: str | None, out: str | None, config_path: Path) -> None:
    """One roll-out as a self-contained HTML page (no network fetches; the chart code inlined):
    who, when, why and how it ended; the build's provenance; per host, the error rate and the
    latency over the roll-out, marked with its switch, gates and rollback (from the scrape gate's
    readings; a roll-out judged by /health has none, and the page says so); the wave table with
    every gate's verdict and evidence.

    ROLLOUT_ID may be shortened to any prefix that names one roll-out (as `history` shows)."""
    project = _project(config_path)
    releaser = Releaser(project)
    found = releaser.store.find_rollout(rollout_id, env)
    text = page(collect(releaser, found), iso(utc_now()))
    if out == "-":
        click.echo(text, nl=False)
        return
    target = Path(out) if out else project.state_dir / "reports" / f"{found.id}.html"
    try:
        write(text, target)
    except OSError as exc:
        raise LreleaseError(f"--out {str(target)!r}: cannot write the report ({exc.strerror or exc})") from exc
    click.echo(str(target))


COMMANDS = (report_command,)
