"""``lrelease show``: one stored roll-out and its gate evidence, read back for a human or a machine."""

from __future__ import annotations

import io
import json
import math
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

from lrelease.apm import HostMetrics
from lrelease.apm.latency import INF, Latency
from lrelease.cli import report
from lrelease.cli.main import cli
from lrelease.gate import Verdict
from lrelease.gate.bake import BakeOutcome, Step
from lrelease.gate.judge import judge
from lrelease.gate.judge_config import JudgeConfig
from lrelease.gate.stats import normal_cdf
from lrelease.state import GateOutcome, HostEvent, StateError, StateStore

T0 = datetime(2024, 5, 1, 22, 0, 0, tzinfo=UTC)
RID = "3f2a9c1d0b7e"
CONFIG = {
    "version": 1,
    "app": "demoapp",
    "state_dir": "state",
    "environments": {
        "production": {"deploy_root": "/srv/demoapp", "service": {"systemd": "demoapp"}},
        "next": {"deploy_root": "/srv/demoapp", "service": {"systemd": "demoapp"}},
    },
}
PLAN = {"spec": [1, 1, 1, "100%"], "hosts": ["node1", "node2", "node3", "node4", "node5"], "done": [],
        "waves": [{"index": 1, "hosts": ["node1"]}, {"index": 2, "hosts": ["node2"]},
                  {"index": 3, "hosts": ["node3"]}, {"index": 4, "hosts": ["node4", "node5"]}]}

ERRORS_FAIL = {
    "check": "errors", "verdict": "fail",
    "reason": "error rate 5.120% vs 0.480% on the reference: significantly above 0.624% (p=1.2e-12)",
    "evidence": {"canary_requests": 5000, "canary_errors": 256, "canary_rate": 0.0512,
                 "reference_requests": 10000, "reference_errors": 48, "reference_rate": 0.0048,
                 "dispersion": {"phi": 1.31, "from": "reference hosts"}, "ratio": 10.6667,
                 "ratio_ci95": [7.912, 14.381], "fail_above_rate": 0.00624, "p_fail": 1.2e-12,
                 "fail_test": "conditional binomial, ratio 1.3", "pass_below_rate": 0.0096, "p_pass": 1.0,
                 "pass_test": "conditional binomial, ratio 2"},
}
LATENCY_PASS = {
    "check": "latency", "verdict": "pass",
    "reason": "p95 121 ms vs 118 ms on the reference: a p95 of 177 ms or more ruled out (p=0.0003)",
    "evidence": {"quantile": 0.95, "canary_p95_ms": 121.37, "reference_p95_ms": 118.02, "fail_above_ms": 141.62,
                 "pass_below_ms": 177.03, "p_fail": 0.93, "p_pass": 0.0003,
                 "mann_whitney": {"auc": 0.512, "z": 0.8, "p_slower": 0.21}},
}


def apm(verdict: str, checks: list[dict], *, compared_with: str = "peers", reference: list[str] | None = None,
        looks: int = 2, step: str = "pass", reason: str = "") -> dict:
    """Evidence shaped like the APM gate's (BakeOutcome.to_gate_result plus canary.decide)."""
    last = {"verdict": verdict, "reason": reason or f"{verdict}: {checks[0]['reason']}", "checks": checks,
            "look": looks, "max_looks": 10, "alpha_this_look": 0.00182, "beta_this_look": 0.00364,
            "reference": compared_with}
    return {"gate": "apm", "step": step, "looks": looks, "elapsed": 62.04, "gate_seconds": 0.4123,
            "judge_seconds": 0.0061, "last": last,
            "history": [{"verdict": "inconclusive", "reason": "not yet"}] * (looks - 1)
            + [{"verdict": verdict, "reason": last["reason"]}],
            "provider": "scrape", "reference": reference or [], "compared_with": compared_with}


HTTP = {"gate": "http", "host": "node3", "url": "http://198.18.77.13:8080/health", "bake_seconds": 5,
        "timeout": 30, "expect_status": [200], "elapsed": 10.21, "probes": 12, "status_counts": {"200": 11, "503": 1},
        "samples": [{"at": 9.9, "status": 200, "body": '{"status": "pass"}', "error": "", "seconds": 0.004}]}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=7)
        return self.now


class Project:
    """An lrelease.yml whose state_dir is a temp dir; the CLI run in-process against it."""

    def __init__(self, root: Path) -> None:
        self.path = root / "lrelease.yml"
        self.path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
        self.store = StateStore(root / "state" / "lrelease.db", clock=Clock())

    def cli(self, *args: str, columns: int = 200):
        """``lrelease show ARGS``; wide by default so that content checks do not depend on wrapping."""
        return CliRunner(env={"COLUMNS": str(columns)}).invoke(cli, ["show", *args, "--config", str(self.path)],
                                                               catch_exceptions=False)

    def json(self, *args: str) -> dict:
        result = self.cli(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    yield p
    p.store.close()


@pytest.fixture
def recorded(project):
    return record(project)


def record(project: Project) -> Project:
    """A deploy of 1.4.0 that went wrong on wave 2 (every kind of gate outcome on record)."""
    s = project.store
    s.start_rollout("production", "1.4.0", "deploy", "alice", reason="nightly release", previous_build="1.3.0",
                    plan=PLAN, rollout_id=RID)
    for node in PLAN["hosts"]:
        s.record_host(RID, node, "staged")
    gates = [
        (1, "node1", "pass", apm("pass", [LATENCY_PASS], reference=["node2", "node3"]), "gate_passed"),
        (2, "node2", "fail", apm("fail", [ERRORS_FAIL, LATENCY_PASS], reference=["node3", "node4"], looks=3,
                                 step="rollback"), "gate_failed"),
        (4, "node4", "inconclusive", apm("inconclusive", [{
            "check": "errors", "verdict": "inconclusive",
            "reason": "not enough traffic: 120 canary requests of the 500 needed",
            "evidence": {"canary_requests": 120, "canary_errors": 0, "canary_rate": 0.0}}],
            compared_with="baseline", step="halt"), "gate_failed"),
        (3, "node3", "pass", HTTP, "gate_passed"),
        (4, "node5", "fail", {}, "gate_failed"),
    ]
    # The gate's reason is kept with the host event (the runner's record), not in the gates table
    reasons = {"node1": gates[0][3]["last"]["reason"], "node2": gates[1][3]["last"]["reason"],
               "node4": "still inconclusive after 600s (policy halt): " + gates[2][3]["last"]["reason"],
               "node3": "http://198.18.77.13:8080/health answered 200", "node5": "node5 said fail"}
    for wave, node, verdict, evidence, phase in gates:
        s.record_host(RID, node, "switched")
        s.record_gate(RID, wave, node, verdict, evidence)
        s.record_host(RID, node, phase, {"host": node, "wave": wave, "verdict": verdict, "evidence": evidence,
                                         "reason": reasons[node]})
    s.record_host(RID, "node2", "rolled_back")
    s.finish_rollout(RID, "rolled_back", 1)
    return project


def block(text: str, title: str) -> str:
    """The gate block whose title line starts with ``title``, up to the next one."""
    start = text.index(title)
    end = text.find("\nwave ", start + 1)
    return text[start:end if end >= 0 else None]


# -- human output ----------------------------------------------------------------------------
def test_show_prints_the_header_and_each_hosts_final_phase(recorded):
    # When a roll-out is shown by its full id
    result = recorded.cli(RID)
    # Then the header says what ran, how it ended, who ran it, why and when
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"roll-out {RID}: deploy 1.4.0 to production" in out
    assert "status    rolled_back, exit code 1" in out
    assert "actor     alice" in out and "reason    nightly release" in out
    assert "started   2024-05-01 22:00:07 UTC" in out and "previous  1.3.0" in out
    assert re.search(r"finished  2024-05-01 22:\d\d:\d\d UTC \(after \d+ min \d+ s\)", out)
    # And each planned wave with its hosts' last phase
    assert "wave 1  gate passed: node1" in out
    assert "wave 2  rolled back: node2" in out
    # (an Inconclusive gate is recorded as gate_failed, and shown as what it is)
    assert "wave 4  gate inconclusive: node4" in out and "        gate failed: node5" in out
    assert "node4, node5" not in out


def test_show_prints_an_apm_failure_with_its_numbers(recorded):
    out = recorded.cli(RID).stdout
    fail = block(out, "wave 2  node2  FAIL")
    # Then the gate names its provider, what it compared with, looks and bake time
    assert "apm (scrape) vs peers node3, node4" in fail
    assert "looks 3/10, bake 1 min 2 s, gate work 0.412 s, decision rollback" in fail
    assert "each look: inconclusive, inconclusive, fail" in fail
    # And the errors check: rates with counts, the ratio and its interval, p-values vs thresholds
    assert "errors  FAIL  error rate 5.120% vs 0.480% on the reference" in fail
    assert "error rate: canary 5.120% (256/5000) vs reference 0.480% (48/10000)" in fail
    assert "ratio 10.7, 95% CI 7.91-14.4; dispersion phi 1.31" in fail
    assert "fail if above 0.624%: p=1.2e-12 (needs < 0.0018)" in fail
    assert "pass if below 0.960%: p=1 (needs < 0.0036)" in fail
    # And the latency check beside it
    assert "latency  PASS" in fail and "p95: canary 121 ms vs reference 118 ms" in fail
    assert "fail if above 142 ms: p=0.93 (needs < 0.0018)" in fail
    assert "pass if below 177 ms: p=0.0003 (needs < 0.0036)" in fail
    assert "Mann-Whitney AUC 0.512, p(slower)=0.21" in fail


def test_show_prints_every_kind_of_gate_with_its_verdict(recorded):
    out = recorded.cli(RID).stdout
    passed = block(out, "wave 1  node1  PASS")
    assert "apm (scrape) vs peers node2, node3" in passed and "latency  PASS  p95 121 ms vs 118 ms" in passed
    assert "reason:" not in passed  # the judge's reason only repeats its checks'
    halted = block(out, "wave 4  node4  INCONCLUSIVE")
    assert "vs its own baseline (before the switch)" in halted and "decision halt" in halted
    assert "reason: still inconclusive after 600s (policy halt): inconclusive: not enough traffic" in halted
    assert "not enough traffic: 120 canary requests of the 500 needed" in halted
    assert "error rate: canary 0.000% (0/120)" in halted and "vs reference" not in halted
    http = block(out, "wave 3  node3  PASS  http http://198.18.77.13:8080/health")
    assert "12 probes in 10.2 s after a 5 s bake" in http
    assert "answers: 200 x11, 503 x1 (expected 200)" in http and "last probe: 200 in 0.004 s" in http
    assert "reason: http://198.18.77.13:8080/health answered 200" in http
    empty = block(out, "wave 4  node5  FAIL  gate")
    assert "reason: node5 said fail" in empty and "no evidence recorded" in empty
    assert out.count("\nwave ") == 5  # five gate blocks, in recording order
    assert re.findall(r"^wave \d  node\d", out, re.MULTILINE) == [
        "wave 1  node1", "wave 2  node2", "wave 4  node4", "wave 3  node3", "wave 4  node5"]


def test_without_a_terminal_the_report_is_plain_and_fits_80_columns(recorded):
    # When shown on an 80-column terminal, or piped (plain text)
    result = recorded.cli(RID, columns=80)
    assert result.exit_code == 0 and "\x1b[" not in result.output
    text = result.stdout.splitlines()
    # Then no line is wider, none ends in blanks, and long reasons wrap under their own indent
    assert max(len(line) for line in text) <= 80 and not any(line.endswith(" ") for line in text)
    start = text.index("  errors  FAIL  error rate 5.120% vs 0.480% on the reference: significantly")
    assert text[start + 1] == "                above 0.624% (p=1.2e-12)"
    start = text.index("wave 4  node4  INCONCLUSIVE  apm (scrape) vs its own baseline (before the")
    assert text[start + 1] == "               switch)"


def test_a_rollout_without_gates_or_plan_says_so(project):
    # Given a rollback (no plan, no gates) still running over twelve hosts
    project.store.start_rollout("production", "1.3.0", "rollback", "bob", rollout_id="0000aaaa1111")
    for i in range(1, 13):
        project.store.record_host("0000aaaa1111", f"web-node{i:02}", "rolled_back")
    # When it is shown by a prefix, on 80 columns
    out = project.cli("0000", columns=80).stdout
    # Then its hosts are listed without waves, wrapping under the first host name
    assert "rollback 1.3.0 to production" in out and "status    running, exit code -" in out
    assert "finished  -\n" in out and "gates: none recorded" in out
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  hosts  rolled back: web-node01, "))
    assert lines[first + 1].startswith(" " * len("  hosts  rolled back: ") + "web-node")
    assert all(f"web-node{i:02}" in out for i in range(1, 13))


# -- finding the roll-out ------------------------------------------------------------------
def test_a_unique_prefix_finds_the_rollout(recorded):
    recorded.store.start_rollout("production", "1.5.0", "deploy", "bob", rollout_id="9" * 12)
    assert recorded.json("3f2")["id"] == RID
    assert recorded.json(RID, "--env", "production")["id"] == RID


def test_an_unknown_id_is_one_line_and_exit_2(recorded):
    result = recorded.cli("deadbeef")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrelease: error: no roll-out 'deadbeef'")
    # And a known id in another environment is not found there
    other = recorded.cli(RID, "--env", "next")
    assert other.exit_code == 2 and f"no roll-out '{RID}' of environment 'next'" in other.stderr


def test_an_ambiguous_prefix_is_one_line_and_exit_2(recorded):
    recorded.store.start_rollout("production", "1.5.0", "deploy", "bob", rollout_id="3f2a00000000")
    result = recorded.cli("3f2a")
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "roll-out id '3f2a' is ambiguous: 2 match" in lines[0]
    assert RID in lines[0] and "3f2a00000000" in lines[0]
    # And one more character settles it
    assert recorded.json("3f2a9")["id"] == RID


def test_a_prefix_is_matched_literally_not_as_a_pattern(project):
    project.store.start_rollout("production", "1.0.0", "deploy", "bob", rollout_id="abcdef000000")
    for pattern in ("abc_", "abc%", "ABC"):
        with pytest.raises(StateError, match="no roll-out"):
            project.store.find_rollout(pattern)
    with pytest.raises(StateError, match="a roll-out id is needed"):
        project.store.find_rollout("  ")


# -- JSON ----------------------------------------------------------------------------------
def test_json_is_the_stored_record_in_a_versioned_envelope(recorded):
    data = recorded.json(RID[:6])
    assert data["schema"] == "lrelease.rollout/v1"
    assert {"id", "env", "build", "previous_build", "action", "status", "actor", "reason", "started_at",
            "finished_at", "exit_code", "plan", "resumes", "hosts", "events", "gates"} <= set(data)
    assert (data["id"], data["status"], data["exit_code"]) == (RID, "rolled_back", 1)
    assert data["hosts"] == {"node1": "gate_passed", "node2": "rolled_back", "node3": "gate_passed",
                             "node4": "gate_failed", "node5": "gate_failed"}
    assert [(g["wave"], g["host"], g["verdict"]) for g in data["gates"]] == [
        (1, "node1", "pass"), (2, "node2", "fail"), (4, "node4", "inconclusive"), (3, "node3", "pass"),
        (4, "node5", "fail")]
    errors = data["gates"][1]["evidence"]["last"]["checks"][0]["evidence"]
    assert errors["ratio_ci95"] == [7.912, 14.381] and errors["p_fail"] == 1.2e-12
    assert data["gates"][4]["evidence"] == {}
    assert data["events"][0] == {"rollout_id": RID, "host": "node1", "phase": "staged",
                                 "at": "2024-05-01T22:00:14.000Z", "detail": {}}


# -- the evidence, whatever its shape ----------------------------------------------------------
def plain(lines: list[report.Line]) -> str:
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(report.render(lines))
    return buf.getvalue()


def metrics(name: str, requests: float, errors: float, median: float) -> HostMetrics:
    """Log-normal latencies in the demo app's histogram buckets."""
    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    pairs = [(b, requests * normal_cdf(math.log(b / median) / 0.55)) for b in bounds]
    return HostMetrics(name, requests, errors, latency=Latency.from_buckets([*pairs, (INF, requests)]))


def test_evidence_from_the_real_judge_is_shown_with_its_numbers():
    # Given evidence made by the gate's own code (so a renamed key breaks this test, not users):
    # a canary with 2% errors and slower, against four peers at 0.1%
    canary = {"node1": metrics("node1", 20000, 400, 0.2)}
    reference = {f"peer{i}": metrics(f"peer{i}", 20000, 20, 0.08) for i in range(4)}
    judgement = judge(canary, reference, JudgeConfig())
    bake = BakeOutcome(Step.ROLLBACK, judgement.verdict, judgement.reason, (judgement,), 31.5, 0.2, 0.01)
    evidence = {**bake.to_gate_result().evidence, "provider": "prometheus", "reference": ["peer0", "peer1"],
                "compared_with": "peers"}
    errors = next(c for c in judgement.checks if c.check == "errors").evidence
    latency = next(c for c in judgement.checks if c.check == "latency").evidence
    # When it is laid out
    text = plain(report.gate_block(GateOutcome(RID, 1, "node1", "fail", evidence, "2024-05-01T22:00:00.000Z")))
    # Then its numbers are there, formatted as the judge formats them in its reasons
    assert judgement.verdict is Verdict.FAIL
    assert "wave 1  node1  FAIL  apm (prometheus) vs peers peer0, peer1" in text
    assert f"looks 1/{JudgeConfig().max_looks}, bake 31.5 s" in text
    assert f"canary {errors['canary_rate']:.3%} (400/20000) vs reference {errors['reference_rate']:.3%}" in text
    assert f"ratio {errors['ratio']:.3g}, 95% CI {errors['ratio_ci95'][0]:.3g}-" in text
    assert f"fail if above {errors['fail_above_rate']:.3%}: p={errors['p_fail']:.2g}" in text
    assert f"pass if below {errors['pass_below_rate']:.3%}: p={errors['p_pass']:.2g}" in text
    assert f"p95: canary {latency['canary_p95_ms']:.0f} ms vs reference {latency['reference_p95_ms']:.0f} ms" in text
    assert f"fail if above {latency['fail_above_ms']:.0f} ms" in text and "Mann-Whitney AUC" in text


@pytest.mark.parametrize("evidence, expected", [
    ({"gate": "port", "attempts": 3}, "evidence of an unknown shape: attempts, gate (see --json)"),
    ({"gate": "apm"}, "wave 1  node1  PASS  apm"),
    ({"gate": "apm", "last": "odd", "history": "odd", "reference": "node2", "compared_with": "peers"},
     "apm vs its peers"),
    ({"gate": "apm", "looks": "two", "last": {"checks": ["junk", {"check": "errors", "evidence": None},
                                                        {"check": "errors", "verdict": None, "evidence": {
                                                            "canary_rate": "n/a", "ratio": True,
                                                            "ratio_ci95": [1], "dispersion": 3}}]}},
     "error rate: canary n/a"),
    ({"gate": "apm", "last": {"checks": [{"check": "latency", "evidence": {
        "canary_p99_ms": 5.25, "fail_above_ms": None, "mann_whitney": []}}]}}, "p99: canary 5.2 ms"),
    ({"gate": "http", "status_counts": [], "samples": [{"status": None, "error": "ConnectionError: refused"}]},
     "last probe: no answer: ConnectionError: refused"),
])
def test_odd_or_partial_evidence_never_breaks_the_report(evidence, expected):
    text = plain(report.gate_block(GateOutcome(RID, 1, "node1", "pass", evidence, "")))
    assert expected in text


def test_numbers_are_formatted_whatever_was_stored():
    assert (report.pct(0.0512), report.pct(None), report.pct("x")) == ("5.120%", "?", "x")
    assert (report.pval(1.234e-12), report.pval(float("nan")), report.pval(10**400)[:4]) == ("1.2e-12", "nan", "1000")
    assert (report.ms(5.25), report.ms(141.62), report.ms(True)) == ("5.2 ms", "142 ms", "True")
    assert (report.seconds(0.4123), report.seconds(62.04), report.seconds(3725)) == ("0.412 s", "1 min 2 s",
                                                                                           "1 h 2 min")


# -- an Inconclusive gate: never shown as a failure, its reason whole ------------------------------
LONG_REASON = ("still inconclusive after 1800s (policy halt): inconclusive: errors: not enough traffic: 40 canary "
               "requests of the 200 needed; latency: not enough latency data: 40 canary requests of the 200 needed")


def record_halt(project: Project) -> str:
    """A deploy of 2.0.0 halted on its canary: the APM gate could not decide on node1."""
    s, rid = project.store, "a1b2c3d4e5f6"
    s.start_rollout("production", "2.0.0", "deploy", "bob", plan=PLAN, rollout_id=rid)
    s.record_host(rid, "node1", "switched")
    evidence = apm("inconclusive", [{"check": "errors", "verdict": "inconclusive", "reason": "not enough traffic"}],
                   step="halt", looks=4)
    s.record_gate(rid, 1, "node1", "inconclusive", evidence)
    s.record_host(rid, "node1", "gate_failed", {"host": "node1", "wave": 1, "verdict": "inconclusive",
                                                "evidence": evidence, "reason": LONG_REASON})
    s.finish_rollout(rid, "halted", 5)
    return rid


def test_show_and_history_print_an_inconclusive_gate_as_inconclusive_never_failed(project):
    # Given a roll-out halted because the gate could not decide on node1
    rid = record_halt(project)
    # When it is shown and the history is listed
    shown = project.cli(rid).stdout
    history = CliRunner(env={"COLUMNS": "200"}).invoke(
        cli, ["history", "--env", "production", "--config", str(project.path)], catch_exceptions=False).stdout
    # Then show says INCONCLUSIVE, in the waves and in the gate's block, with the whole reason
    assert "wave 1  gate inconclusive: node1" in shown
    assert "wave 1  node1  INCONCLUSIVE  apm (scrape)" in shown
    assert LONG_REASON in " ".join(shown.split())
    assert "FAIL" not in shown.upper().replace("FAIL IF", "").replace("GATE_FAILED", "")
    # And history says the halt was an Inconclusive gate, not a failure
    assert "halted (gate INCONCLUSIVE)" in history and "FAIL" not in history


def test_the_end_of_a_run_prints_each_inconclusive_gate_with_its_reason_whole():
    # Given the gate records of a halted run, as the outcome carries them
    gates = [HostEvent("r", "node1", "gate_failed", "", {"host": "node1", "wave": 1, "verdict": "inconclusive",
                                                         "reason": LONG_REASON}),
             HostEvent("r", "node2", "gate_failed", "", {"host": "node2", "wave": 1, "verdict": "fail",
                                                         "reason": "errors 5%"})]
    # When they are laid out
    out = laid_out(report.inconclusive(gates), width=80)
    # Then only the Inconclusive one, its reason whole, wrapped under its start
    assert out.startswith("  node1: gate INCONCLUSIVE (wave 1): still inconclusive after 1800s")
    assert " ".join(out.split()) == f"node1: gate INCONCLUSIVE (wave 1): {LONG_REASON}"
    assert all(len(line) <= 80 for line in out.splitlines()) and "node2" not in out


def laid_out(lines, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(report.render(lines))
    return buffer.getvalue()


# -- `status`: its exit code says whether the fleet is consistent (read from real hosts) -----------
# Hosts are this machine (Ansible's local connection: every one reads the same deploy root), and
# one that cannot be reached (ssh to a closed loopback port), so status.yml really runs.
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def status_project(root: Path, *, unreachable: bool = False, build: str | None = "1.0.0") -> Path:
    deploy_root = root / "app"
    (deploy_root / "releases").mkdir(parents=True)
    if build:
        release = deploy_root / "releases" / build
        release.mkdir()
        (release / ".lrelease-manifest.json").write_text(json.dumps({"build": build, "sha256": "ab" * 32}))
        (deploy_root / "current").symlink_to(f"releases/{build}")
    nodes = {f"node{i}": {"environment": "production", "address": f"127.0.0.{i}", "vars": dict(LOCAL)} for i in (1, 2)}
    if unreachable:
        nodes["node3"] = {"environment": "production", "address": "127.0.0.3",
                          "vars": {"ansible_port": 1, "ansible_python_interpreter": sys.executable}}
    (root / "fleet.yml").write_text(yaml.safe_dump({"nodes": nodes}))
    config = {"version": 1, "app": "shop", "fleet": "fleet.yml", "state_dir": "state", "environments": {
        "production": {"deploy_root": str(deploy_root), "service": {"systemd": "shop"}}}}
    (root / "lrelease.yml").write_text(yaml.safe_dump(config))
    return root / "lrelease.yml"


def status(path: Path, *args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["status", "--env", "production", *args, "--config", str(path)],
                                                    catch_exceptions=False)


def test_status_exits_0_on_a_consistent_fleet_and_5_when_not_on_the_expected_build(tmp_path):
    # Given two hosts on 1.0.0
    path = status_project(tmp_path)
    # When status runs with the build they are on, then with another
    on_it, off_it = status(path, "--expected-build", "1.0.0"), status(path, "--expected-build", "2.0.0", "--json")
    # Then a consistent fleet on the expected build exits 0
    assert on_it.exit_code == 0, on_it.output
    assert "production: consistent, on 1.0.0" in on_it.stdout and on_it.stderr == ""
    # And a fleet not on the expected build exits 5, saying which hosts are on what
    assert off_it.exit_code == 5, off_it.output
    data = json.loads(off_it.stdout)
    assert (data["consistent"], data["on_expected_build"], data["expected_build"]) == (True, False, "2.0.0")
    assert "lrelease: status: not every host is on 2.0.0: node1 on 1.0.0, node2 on 1.0.0 (exit 5)" in off_it.stderr


def test_status_exits_5_when_a_host_does_not_answer_or_has_no_build(tmp_path):
    # Given two hosts with no release at all and a third that cannot be reached
    result = status(status_project(tmp_path, unreachable=True, build=None))
    # Then status says NOT consistent and exits 5, naming each problem
    assert result.exit_code == 5, result.output
    assert "production: NOT consistent" in result.stdout and "unreachable" in result.stdout
    assert result.stderr == ("lrelease: status: unreachable: node3; the fleet is not consistent (no build: node1, "
                             "node2) (exit 5)\n")


def test_status_refuses_a_bad_expected_build_in_one_line_before_reading_anything(tmp_path):
    path = status_project(tmp_path)
    result = status(path, "--expected-build", "1.0.0\n")
    assert result.exit_code == 2
    assert result.stderr == "lrelease: error: --expected-build: build: a build id (letters, digits, '.', '_', '+', '-'), got '1.0.0\\n'\n"
    assert not (tmp_path / "state").exists()
