"""`lrelease report`'s page from hand-made records (no fleet, no browser): escaping, no address
outside the inlined chart code, provenance, the /health roll-out's "no series", the marks, the
wave table; the series kept from the scrape gate's readings; the command's outputs and its bad
input. The page in a real browser: tests/rollout/test_report.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from lrelease import series
from lrelease.apm.scrape import Reading, ReadingStore, ScrapeSettings
from lrelease.cli.htmlreport import ReportData, figure, marks, page, plotly_js
from lrelease.cli.main import cli
from lrelease.rollout import Releaser
from lrelease.config import load_config
from lrelease.state import GateOutcome, HostEvent, Rollout, StateStore
from tests.unit.test_cli_errors import example_project

EVIL = "<script>alert('pwned')</script>"
T0 = 1_796_000_000.0  # 2026-11-30 ~ 05:33 UTC
AT = "2026-11-30T05:33:{:02d}.000Z"


def rollout(**changes) -> Rollout:
    data = dict(id="3f2a9c000001", env="production", build="2.0.0", previous_build="1.0.0", action="deploy",
                status="rolled_back", actor=f"mallory{EVIL}", reason=f"INC-42 {EVIL} & <b>bold</b>",
                started_at=AT.format(0), finished_at=AT.format(59), exit_code=1,
                plan={"waves": [{"index": 1, "hosts": ["node1"]}, {"index": 2, "hosts": ["node2", "node3"]}]},
                resumes=None, pid=1, pid_start="0", hostname="ctl", rollback_started_at=AT.format(40))
    data.update(changes)
    return Rollout(**data)


EVENTS = [HostEvent("3f2a9c000001", "node1", "switched", AT.format(10), {}),
          HostEvent("3f2a9c000001", "node1", "gate_failed", AT.format(38),
                    {"wave": 1, "verdict": "fail", "reason": "errors: 5.1% vs 0.5% <worse>"}),
          HostEvent("3f2a9c000001", "node1", "rolled_back", AT.format(50), {})]
GATES = [GateOutcome("3f2a9c000001", 1, "node1", "fail",
                     {"gate": "apm", "provider": "scrape", "compared_with": "peers",
                      "last": {"reason": "errors: 5.1% vs 0.5% <worse>", "checks": []}}, AT.format(38))]
POINTS = [{"at": T0 + 2 * i, "rps": 25.0, "error_rate": 0.05, "p50_ms": 11.0, "p95_ms": 40.0} for i in range(10)]
PROVENANCE = {"version": "2.0.0", "repository": "/srv/git/shop.git", "branch": "release/2.0.0",
              "commit": "a1b2c3d4e5f6", "tags": ["v2.0.0"],
              "picks": [{"commit": "9f8e7d6aaaaabbbb", "from": "1234567ccccdddd", "subject": "fix <checkout>"}],
              "reverts": [{"commit": "5a4b3c2eeee", "reverts": "77aa88bb99cc", "subject": "Revert \"slow query\""}],
              "built_by": "alice", "built_at": "2026-11-30T05:00:00Z"}


def built(**changes) -> str:
    data = ReportData(rollout(), EVENTS, GATES, {"node1": POINTS}, "apm (scrape)", None)
    for key, value in changes.items():
        data = ReportData(**{**data.__dict__, key: value})
    return page(data, AT.format(59))


def scripts(html: str) -> list[str]:
    return re.findall(r"<script\b[^>]*>", html)


# -- the page ------------------------------------------------------------------------------------------
def test_a_reason_and_an_actor_with_markup_are_shown_escaped_and_run_nothing():
    # Given a roll-out whose reason, actor and gate reason hold a <script> element and markup
    # When its page is built
    html = built()
    # Then each is shown as text, escaped
    assert "INC-42 &lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "mallory&lt;script&gt;" in html
    assert "errors: 5.1% vs 0.5% &lt;worse&gt;" in html
    # And no stored string opened an element: the page's only scripts are its own three
    assert EVIL not in html and "<b>bold" not in html
    assert scripts(html) == ['<script id="plotly-js">', '<script id="figures" type="application/json">', "<script>"]


def test_no_address_outside_the_inlined_chart_code_and_that_code_is_plotlys_own():
    # Given a page with a chart
    html = built()
    code = plotly_js()
    # Then the chart code is inlined whole, exactly as the plotly package ships it
    inlined = html.split('<script id="plotly-js">', 1)[1].split("</script>", 1)[0]
    assert inlined == code and len(code) > 1_000_000
    # And outside it the page names no http(s) address and loads nothing by URL (no src=, no href=)
    rest = html.replace(code, "")
    assert not re.search(r"https?:", rest, re.I), re.findall(r".{40}https?:.{40}", rest)
    assert not re.search(r"\b(src|href)\s*=", rest, re.I)
    # And the browser is told to fetch nothing at all (the page's own inline code only)
    assert "default-src &#x27;none&#x27;" in html and "connect-src &#x27;none&#x27;" in html


def test_the_figure_json_cannot_close_its_script_element():
    # Given a series point carrying a string that would end a <script> (a corrupt series file)
    points = [*POINTS[:2], {**POINTS[2], "p95_ms": "</script><script>alert(1)</script>"}]
    # When the page is built
    html = built(series={"node1": points})
    # Then the JSON holds it escaped and the page still has only its own three scripts
    assert "\\u003c/script\\u003e" in html
    assert len(scripts(html)) == 3


def test_the_provenance_is_shown_when_given_and_no_build_record_otherwise():
    # Given the build's provenance
    html = built(provenance=PROVENANCE)
    # Then every field is shown, lists joined, escaped
    section = html.split("<h2>Build provenance</h2>", 1)[1].split("<h2>", 1)[0]
    for text in ("/srv/git/shop.git", "release/2.0.0", "a1b2c3d4e5f6", "v2.0.0",
                 "cherry-picked 9f8e7d6aaaaa from 1234567ccccd: fix &lt;checkout&gt;",
                 "reverted 77aa88bb99cc by 5a4b3c2eeee: Revert &quot;slow query&quot;", "alice", "2026-11-30T05:00:00Z",
                 "picks", "built by"):
        assert text in section, text
    # And without a build record the page says so
    assert "Build 2.0.0: no build record." in built(provenance=None)


def test_a_health_gated_rollout_says_per_host_that_it_has_no_series_and_inlines_no_chart_code():
    # Given a roll-out judged by /health (no series kept)
    html = built(series=None, gate="health")
    # Then each host says why it has no chart, and there is no chart and no chart code
    for host in ("node1", "node2", "node3"):
        block = html.split(f"<h3>{host}</h3>", 1)[1].split("</section>", 1)[0]
        assert "judged by the /health gate" in block, block
    assert 'class="chart"' not in html and "plotly-js" not in html
    assert len(html) < 50_000


def test_an_apm_gate_without_kept_series_says_why_per_host():
    html = built(series=None, gate="apm (prometheus)")
    assert html.count("its gate (apm (prometheus)) keeps its readings in the provider&#x27;s own store") == 3
    html = built(series=None, gate="apm (scrape)")
    assert html.count("or one a resume continued (the resume&#x27;s report has them)") == 3
    html = built(series={"node1": POINTS})
    assert html.count("the gate took no two readings of it with traffic between") == 2  # node2, node3


def test_a_hosts_chart_is_marked_with_its_switch_gate_and_rollback():
    # Given node1 switched at :10, failed its gate at :38, the roll-out rolled back from :40, node1 at :50
    found = marks("node1", rollout(), EVENTS, GATES)
    # Then its marks are those, in time order
    assert found == [("switch", AT.format(10)), ("gate fail", AT.format(38)), ("rollback", AT.format(40)),
                     ("rollback", AT.format(50))]
    # And the figure draws a vertical line at each, labelled with fixed words only
    fig = figure(POINTS, found)
    assert [s["x0"] for s in fig["layout"]["shapes"]] == ["2026-11-30 05:33:10.000", "2026-11-30 05:33:38.000",
                                                          "2026-11-30 05:33:40.000", "2026-11-30 05:33:50.000"]
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["switch", "gate fail", "rollback", "rollback"]
    # And the error rate is plotted in percent, the latency in ms on the second axis
    errors, p95, _ = fig["data"]
    assert errors["y"][0] == 5.0 and p95["y"][0] == 40.0 and p95["yaxis"] == "y2"


def test_the_wave_table_has_each_verdict_with_its_evidence_and_the_hosts_not_reached():
    html = built()
    table = html.split("<h2>Waves and gates</h2>", 1)[1]
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    cells = [found for row in rows if (found := re.findall(r"<td>(.*?)</td>", row, re.S))]
    assert cells[0][:6] == ["1", "node1", "FAIL", "2026-11-30 05:33:38 UTC", "errors: 5.1% vs 0.5% &lt;worse&gt;",
                            "rolled back"]
    assert "apm (scrape)" in cells[0][6] and "&quot;compared_with&quot;: &quot;peers&quot;" in cells[0][6]
    assert [c[:3] + c[5:] for c in cells[1:]] == [["2", "node2", "-", "not reached", "no gate recorded"],
                                                  ["2", "node3", "-", "not reached", "no gate recorded"]]


def test_who_when_why_shows_the_exit_status_times_and_the_rollback():
    html = built()
    facts = dict(re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>",
                            html.split("<h2>Who, when, why</h2>", 1)[1].split("<h2>", 1)[0]))
    assert facts["exit status"] == "1" and facts["status"] == "rolled_back" and facts["via"] == "lrelease"
    assert facts["started"] == "2026-11-30 05:33:00 UTC"
    assert facts["finished"] == "2026-11-30 05:33:59 UTC (after 59 s)"
    assert facts["rollback started"] == "2026-11-30 05:33:40 UTC"


# -- the series ----------------------------------------------------------------------------------------
REQ = "http_server_request_duration_seconds_count"
BUCKET = "http_server_request_duration_seconds_bucket"


def reading(at: float, ok: float, errors: float, start: float = 1.0, fast: float | None = None) -> Reading:
    """Cumulative counters: ``ok`` 200s and ``errors`` 500s; ``fast`` of all under 50 ms, the rest under 1 s."""
    total = ok + errors
    return Reading(at, start, {
        (REQ, (("http_response_status_code", "200"),)): ok,
        (REQ, (("http_response_status_code", "500"),)): errors,
        (BUCKET, (("le", "0.05"),)): total if fast is None else fast,
        (BUCKET, (("le", "1.0"),)): total, (BUCKET, (("le", "+Inf"),)): total})


def test_a_series_is_the_rates_between_consecutive_readings_counting_a_restart_from_zero():
    # Given readings 10 s apart: 990 ok + 10 errors, then 500 ok + 500 errors (all slow), then a restart
    readings = [reading(T0, 1000, 0), reading(T0 + 10, 1990, 10), reading(T0 + 20, 2490, 510, fast=2000),
                reading(T0 + 30, 100, 0, start=T0 + 25)]
    points = series.host_series("node1", readings, ScrapeSettings())
    # Then each point is what was served in between: rate, error rate, latency quantiles
    assert [p["rps"] for p in points] == [100.0, 100.0, 20.0]  # the restarted one: 100 in the 5 s since its start
    assert [p["error_rate"] for p in points] == [0.01, 0.5, 0.0]
    assert points[0]["p95_ms"] < 50 and points[1]["p50_ms"] > 50
    assert [p["at"] for p in points] == [T0 + 10, T0 + 20, T0 + 30]


def test_readings_closer_than_a_second_are_merged_and_a_long_series_is_thinned():
    readings = [reading(T0, 0, 0), reading(T0 + 0.2, 20, 0), reading(T0 + 2, 200, 0)]
    assert [p["rps"] for p in series.host_series("h", readings, ScrapeSettings())] == [100.0]
    long = [reading(T0 + i * 2, i * 100, 0) for i in range(1000)]
    assert len(series.host_series("h", long, ScrapeSettings())) <= series.MAX_POINTS


def test_kept_series_hold_numbers_and_hosts_only_and_the_oldest_are_pruned(tmp_path):
    # Given a readings file with label values that must not leave it (a path, a token-like value)
    path = tmp_path / "gate" / "readings-r1.json"
    store = ReadingStore(str(path))
    for i in range(3):
        r = reading(T0 + 10 * i, 1000 * (i + 1), 10 * i)
        store.add("node1", Reading(r.at, r.start_time, {**r.counters,
                                                         (REQ, (("route", "/pay?token=s3cr3t"),)): 5.0 * i}))
    # When its series are kept, then twice more for other roll-outs with a limit of 2
    kept = series.keep(path, tmp_path, "r1", ScrapeSettings())
    text = kept.read_text()
    data = json.loads(text)
    # Then only numbers and the host's name are in the file, private to its owner
    assert set(data["hosts"]) == {"node1"} and len(data["hosts"]["node1"]) == 2
    assert "s3cr3t" not in text and "route" not in text
    assert kept.stat().st_mode & 0o777 == 0o600
    assert series.load(tmp_path, "r1") == data["hosts"]
    for rid in ("r2", "r3"):
        series.keep(path, tmp_path, rid, ScrapeSettings(), limit=2)
    assert sorted(p.stem for p in (tmp_path / "series").glob("*.json")) == ["r2", "r3"]


def test_a_kept_series_file_with_odd_values_is_read_with_them_left_out(tmp_path):
    # Given a series file edited by hand: a string, a NaN, a point without its time
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "r1.json").write_text(
        '{"hosts": {"node1": [{"at": 1.0, "rps": "</script>", "error_rate": NaN, "p95_ms": 4}, {"rps": 1}, 7]}}')
    # When it is read back
    # Then only the point with a time is left, its odd values None
    assert series.load(tmp_path, "r1") == {
        "node1": [{"at": 1.0, "rps": None, "error_rate": None, "p50_ms": None, "p95_ms": 4}]}


def test_a_finished_rollouts_readings_leave_its_series_when_they_are_removed(tmp_path):
    # Given a finished roll-out whose scrape readings are still in the state dir
    config = load_config(example_project(tmp_path))
    releaser = Releaser(config)
    r = releaser.store.start_rollout("production", "2.0.0", "deploy", "ops")
    releaser.store.finish_rollout(r.id, "succeeded", 0)
    store = ReadingStore(str(releaser.readings_path(r.id)))
    for i in range(3):
        store.add("web1", reading(T0 + 10 * i, 1000 * (i + 1), 0))
    # When the readings are pruned (as at the end of every deploy)
    assert releaser.prune_readings() == [r.id]
    # Then the readings are gone and the series stay for the report
    assert not releaser.readings_path(r.id).exists()
    assert [p["rps"] for p in series.load(config.state_dir, r.id)["web1"]] == [100.0, 100.0]


# -- the command ---------------------------------------------------------------------------------------
def recorded(tmp_path: Path) -> tuple[Path, str]:
    config = example_project(tmp_path)
    (tmp_path / ".lrelease").mkdir()
    with StateStore(tmp_path / ".lrelease" / "lrelease.db") as store:
        r = store.start_rollout("production", "2.0.0", "deploy", "ops", reason=EVIL)
        store.record_host(r.id, "web1", "switched")
        store.record_host(r.id, "web1", "gate_passed", {"wave": 1, "reason": "healthy"})
        store.record_gate(r.id, 1, "web1", "pass", {"gate": "http", "url": "/health", "probes": 3})
        store.finish_rollout(r.id, "succeeded", 0)
    return config, r.id


def test_report_writes_the_page_under_the_state_dir_and_prints_its_path(tmp_path):
    # Given a recorded roll-out judged by /health
    config, rid = recorded(tmp_path)
    # When `lrelease report` runs with a prefix of its id
    result = CliRunner().invoke(cli, ["report", rid[:6], "--config", str(config)])
    # Then it prints the path of the page it wrote, under the state dir's reports/
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path == tmp_path / ".lrelease" / "reports" / f"{rid}.html"
    html = path.read_text()
    assert "&lt;script&gt;" in html and "web1" in html and "judged by the /health gate" in html


def test_report_out_writes_the_file_named_or_stdout(tmp_path):
    config, rid = recorded(tmp_path)
    named = CliRunner().invoke(cli, ["report", rid, "--out", str(tmp_path / "r.html"), "--config", str(config)])
    assert named.exit_code == 0 and (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    piped = CliRunner().invoke(cli, ["report", rid, "--out", "-", "--config", str(config)])
    assert piped.exit_code == 0 and piped.stdout.startswith("<!DOCTYPE html>") and piped.stdout.endswith("</html>\n")


def test_an_unknown_rollout_or_an_unwritable_out_is_one_line_exit_2_and_writes_nothing(tmp_path):
    config, rid = recorded(tmp_path)
    unknown = CliRunner().invoke(cli, ["report", "ffffffffffff", "--config", str(config)])
    assert unknown.exit_code == 2 and len(unknown.output.strip().splitlines()) == 1, unknown.output
    assert "ffffffffffff" in unknown.output
    (tmp_path / "file").write_text("")
    bad = CliRunner().invoke(cli, ["report", rid, "--out", str(tmp_path / "file" / "r.html"), "--config", str(config)])
    assert bad.exit_code == 2 and bad.output.startswith("lrelease: error: --out "), bad.output
    assert len(bad.output.strip().splitlines()) == 1
    assert not (tmp_path / ".lrelease" / "reports").exists()
