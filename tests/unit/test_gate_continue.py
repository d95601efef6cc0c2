"""`resume` of a roll-out halted as Inconclusive: the judgement goes on from the evidence it had
(the bake loop, the decider's soundness checks, the scrape readings, the halted judgements a
resume hands back) instead of starting the same judgement from zero."""

from __future__ import annotations

import pytest
import yaml

from lrelease.apm import HostRef, Window
from lrelease.apm.scrape import ScrapeProvider, ScrapeSettings
from lrelease.config import load_config
from lrelease.errors import ConfigError
from lrelease.gate.bake import Step, run_bake
from lrelease.gate.canary import _continuation, _halted
from lrelease.rollout import Releaser
from tests.unit.test_apm_scrape import Clock, pages
from tests.unit.test_gate_health import FakeClock
from tests.unit.test_judge_bake import CANARY, CONFIG, PEERS, Scripted
from tests.unit.test_report import CONFIG as PROJECT

QUIET = 200  # requests per host per minute: too few for the 300 s bake to tell a good build


def halted_bake():
    """A good build on a quiet service: the bake runs to its maximum and halts."""
    clock = FakeClock(10_000.0)
    provider = Scripted(clock, QUIET, {})
    outcome = run_bake(provider, CANARY, PEERS, CONFIG, clock=clock, sleep=clock.sleep)
    assert outcome.step is Step.HALT
    return clock, provider, outcome


def test_a_halted_judgement_goes_on_from_the_evidence_it_had():
    # Given a wave halted Inconclusive after its 300 s bake, and a human resuming a minute later
    clock, provider, halted = halted_bake()
    assert halted.started_at == 10_000.0 and halted.evidence_seconds == pytest.approx(300.0)
    clock.sleep(60)
    resumed_at, seen = clock.now, len(provider.windows)
    # When the judgement goes on from when its bake started
    continued = run_bake(provider, CANARY, PEERS, CONFIG, clock=clock, sleep=clock.sleep, since=halted.started_at)
    # Then its first look comes at once, over the window from the original start (the minute
    # while halted included), every later look too, and the evidence it had lets it pass
    windows = provider.windows[seen:]
    assert windows[0] == Window(10_000.0, resumed_at)
    assert len(windows) == len(continued.looks) > 1 and all(w.start == 10_000.0 for w in windows)
    assert continued.step is Step.PASS
    assert continued.started_at == 10_000.0 and continued.continued_from == pytest.approx(360.0)
    assert continued.evidence_seconds > 360.0
    evidence = continued.to_gate_result().evidence
    assert evidence["started_at"] == 10_000.0 and evidence["evidence_seconds"] == pytest.approx(continued.evidence_seconds)


def test_the_same_judgement_from_zero_halts_again():
    # Given the same quiet service, judged from zero at the resume (what resume did before)
    clock, _, _ = halted_bake()
    clock.sleep(60)
    fresh = run_bake(Scripted(clock, QUIET, {}), CANARY, PEERS, CONFIG, clock=clock, sleep=clock.sleep)
    # Then it halts again: 300 s of this traffic cannot tell, whenever they start
    assert fresh.step is Step.HALT and fresh.continued_from is None


def test_a_continued_judgement_keeps_its_own_looks_and_says_how_much_evidence_it_has():
    # Given a service so quiet that even the continued judgement cannot decide
    clock = FakeClock(10_000.0)
    provider = Scripted(clock, 20, {})
    halted = run_bake(provider, CANARY, PEERS, CONFIG, clock=clock, sleep=clock.sleep)
    # When it goes on
    again = run_bake(provider, CANARY, PEERS, CONFIG, clock=clock, sleep=clock.sleep, since=halted.started_at)
    # Then it takes its own planned looks (a new maximum bake), the first at once, and halts
    # again saying how much evidence it judged
    assert again.step is Step.HALT and len(again.looks) == CONFIG.max_looks
    assert again.elapsed == pytest.approx(CONFIG.max_bake_seconds - CONFIG.bake_seconds)
    assert "still inconclusive after 540s of evidence (policy halt)" in again.reason


REFERENCE = [HostRef("node2", url="http://n2"), HostRef("node3", url="http://n3")]
HALTED = {"started_at": 10_000.0, "switched_at": 9_990.0, "reference": ["node3", "node2"], "seconds": 80,
          "wave": 1, "rollout": "aaaa00000001"}


class Sound:
    name = "scripted"

    def __init__(self, why=None):
        self.why, self.asked = why, []

    def continuable(self, hosts, since):
        self.asked.append(([h.name for h in hosts], since))
        return self.why


def test_the_decider_continues_when_the_hosts_are_the_same_and_the_provider_sees_no_restart():
    # Given node1's halted judgement against node2 and node3, the same peers now, no restart seen
    provider = Sound()
    # When the decider weighs it
    since, info = _continuation(_halted(HALTED, "node1"), provider, [HostRef("node1")], REFERENCE)
    # Then it goes on from the halted bake's start, says so, and asked the provider about every host
    assert since == 10_000.0
    assert info["continued"] is True
    assert info["note"] == "continuing the judgement of wave 1 from 80 s of evidence"
    assert provider.asked == [(["node1", "node2", "node3"], 10_000.0)]


def test_the_decider_starts_from_zero_when_the_reference_hosts_changed():
    # Given the peers are no longer the same (node3 left the fleet): then it starts from zero, saying why
    since, info = _continuation(_halted(HALTED, "node1"), Sound(), [HostRef("node1")], REFERENCE[:1])
    assert since is None and info["continued"] is False
    assert info["note"] == "judging wave 1 from zero: its reference hosts changed (node2, node3 then, node2 now)"


def test_the_decider_starts_from_zero_when_the_provider_saw_a_restart():
    # Given the provider saw the app restart since the halted bake began: then from zero, saying why
    why = "node1's app restarted since (its counters start again from zero)"
    since, info = _continuation(_halted(HALTED, "node1"), Sound(why), [HostRef("node1")], REFERENCE)
    assert since is None and info["note"] == f"judging wave 1 from zero: {why}"


def test_providers_with_history_need_no_check():
    # Given a provider that answers any past window itself (no ``continuable``): it goes on
    since, info = _continuation(_halted(HALTED, "node1"), object(), [HostRef("node1")], REFERENCE)  # type: ignore[arg-type]
    assert since == 10_000.0 and info["continued"] is True


def test_no_halted_judgement_is_a_plain_bake():
    # Given no halted judgement for this host: nothing changes
    assert _continuation(_halted(None, "node1"), Sound(), [HostRef("node1")], REFERENCE) == (None, None)


@pytest.mark.parametrize("bad", ["yesterday", {"switched_at": 1.0}, {"started_at": "soon"}])
def test_a_malformed_halted_judgement_names_the_variable_and_the_host(bad):
    # Given a hand-written lrelease_gate_continue entry that is not a halted judgement: one clear error
    with pytest.raises(ConfigError, match=r"lrelease_gate_continue.*node1"):
        _halted(bad, "node1")


# -- scrape: the readings kept, and restarts ------------------------------------------------
# The recorded pages are the demo app's (its own metric names).
SETTINGS = ScrapeSettings(requests_metric="demoapp_http_requests_total", code_label="code",
                          latency_metric="demoapp_http_request_duration_seconds", exclude={"path": "/metrics|/health"})


def scrape(*names: str, clock: Clock) -> ScrapeProvider:
    return ScrapeProvider(SETTINGS, get=pages(*names), clock=clock)


def test_scrape_continues_from_readings_of_the_same_processes():
    # Given a reading kept when the bake started, and the same process answering later
    clock = Clock(1000.0)
    provider = scrape("demoapp_t0.txt", "demoapp_t1.txt", clock=clock)
    host = HostRef("node1", url="http://10.0.0.1:8080")
    provider.mark([host])
    clock.now = 1060.0
    # Then the judgement can go on from the kept reading, and the window from then is answered
    assert provider.continuable([host], 1000.0) is None
    assert provider.fetch([host], Window(1000.0, 1060.0))["node1"].requests == 610


def test_scrape_refuses_to_continue_over_a_restart():
    # Given a reading kept when the bake started, and a restarted process now
    clock = Clock(1000.0)
    provider = scrape("demoapp_t1.txt", "demoapp_restarted.txt", clock=clock)
    host = HostRef("node1", url="http://10.0.0.1:8080")
    provider.mark([host])
    clock.now = 1100.0
    # Then it says so: its counters no longer go back to the kept reading
    assert provider.continuable([host], 1000.0) == "node1's app restarted since (its counters start again from zero)"


def test_scrape_refuses_to_continue_without_the_readings():
    # Given no reading from when the halted bake started (another readings file, or none)
    clock = Clock(5000.0)
    provider = scrape("demoapp_t1.txt", clock=clock)
    host = HostRef("node1", url="http://10.0.0.1:8080")
    assert provider.continuable([host], 1000.0) == "no reading of node1 was kept from the start of that judgement"


# -- what a resume hands back ---------------------------------------------------------------
@pytest.fixture
def releaser(tmp_path):
    (tmp_path / "lrelease.yml").write_text(yaml.safe_dump(PROJECT))
    r = Releaser(load_config(tmp_path / "lrelease.yml"), actor="pytest")
    yield r
    r.store.close()


def apm(verdict_started: float, reference: list[str], **extra) -> dict:
    return {"gate": "apm", "started_at": verdict_started, "switched_at": verdict_started - 5,
            "evidence_seconds": 80.0, "reference": reference, **extra}


def test_resume_hands_back_each_halted_judgement_of_the_chain(releaser):
    # Given a roll-out whose wave 1 passed and wave 2 halted on node2 ...
    store = releaser.store
    store.start_rollout("production", "1.4.0", "deploy", "pytest", rollout_id="aaaa00000001")
    store.record_gate("aaaa00000001", 1, "node1", "pass", apm(1000.0, ["node2", "node3"]))
    store.record_gate("aaaa00000001", 2, "node2", "inconclusive", apm(1100.0, ["node3"]))
    store.finish_rollout("aaaa00000001", "halted", 5)
    old = store.rollout("aaaa00000001")
    # Then a resume hands node2's judgement back, in the roll-out's own wave numbering
    assert releaser.halted_judgements(old) == {"node2": {
        "started_at": 1100.0, "switched_at": 1095.0, "reference": ["node3"], "seconds": 80.0, "wave": 2,
        "rollout": "aaaa00000001"}}

    # Given that resume halted again on node2 (its wave 1, going on from the same start)
    store.start_rollout("production", "1.4.0", "resume", "pytest", rollout_id="aaaa00000002", resumes="aaaa00000001")
    store.record_gate("aaaa00000002", 1, "node2", "inconclusive", apm(
        1100.0, ["node3"], evidence_seconds=260.0, continued={"continued": True, "wave": 2}))
    store.finish_rollout("aaaa00000002", "halted", 5)
    # Then the next resume goes on from the same start, with all the evidence, still "wave 2"
    again = releaser.halted_judgements(store.rollout("aaaa00000002"))
    assert again["node2"]["started_at"] == 1100.0 and again["node2"]["seconds"] == 260.0
    assert again["node2"]["wave"] == 2 and again["node2"]["rollout"] == "aaaa00000002"


def test_a_judgement_that_later_passed_or_an_http_gate_is_not_handed_back(releaser):
    store = releaser.store
    store.start_rollout("production", "1.4.0", "deploy", "pytest", rollout_id="aaaa00000001")
    store.record_gate("aaaa00000001", 1, "node1", "inconclusive", apm(1000.0, ["node2"]))
    store.record_gate("aaaa00000001", 1, "node1", "pass", apm(1000.0, ["node2"]))
    store.record_gate("aaaa00000001", 2, "node2", "inconclusive", {"gate": "http"})
    store.finish_rollout("aaaa00000001", "halted", 5)
    assert releaser.halted_judgements(store.rollout("aaaa00000001")) == {}


# -- what the operator sees -----------------------------------------------------------------
def test_the_live_view_says_the_judgement_continued():
    # Given the gate event of a judgement a resume went on with
    from tests.unit.test_progress import gate_event

    event = gate_event(100)
    note = "continuing the judgement of wave 2 from 80 s of evidence (+35 s while halted)"
    event.detail["evidence"]["continued"] = {"continued": True, "wave": 2, "note": note}
    # Then its one line starts by saying so, then gives the numbers
    from lrelease.cli.progress import _note

    line = _note(event)
    assert line.startswith(note + ": errors 0.50% vs 0.50% ")


# -- the last wave with few baseline slices (seen live: a good build halted) ------------------
def busy_host(name: str, requests: float, errors: float, slow: float):
    """A demo app on a busy machine: most answers within 10 ms, a share ``slow`` stalled 50-100 ms."""
    from lrelease.apm import HostMetrics
    from lrelease.apm.latency import INF, Latency

    fast = requests * (1 - slow)
    cumulative = [(0.005, fast * 0.7), (0.01, fast), (0.025, fast), (0.05, fast), (0.1, requests)]
    return HostMetrics(host=name, requests=requests, errors=errors,
                       latency=Latency.from_buckets([*cumulative, (INF, requests)]))


@pytest.mark.parametrize("slices", [2, 3])
def test_a_baseline_of_few_slices_is_moderated_towards_poisson_not_read_alone(slices):
    # Given the last wave's own past in only two or three slices (scrape on a busy controller:
    # the readings before the switch were sparse), their stalls differing by chance (2% and 3%),
    # and a canary as good as that past (2.5%, its errors too: as seen live, 19 in 5,967 now vs
    # 11 in 3,362 before)
    from lrelease.gate import Verdict
    from lrelease.gate.judge import judge
    from lrelease.gate.judge_config import ErrorCheck, JudgeConfig

    config = JudgeConfig(bake_seconds=20, interval_seconds=20, max_bake_seconds=80, errors=ErrorCheck(floor=0.01))
    baseline = {f"baseline@{i}": busy_host(f"baseline@{i}", 3362 / slices, 11 / slices, 0.02 + 0.01 * (i % 2))
                for i in range(slices)}
    canary = {"node4": busy_host("node4", 5967, 19, 0.025)}
    result = judge(canary, baseline, config, look=4, reference_kind="baseline", canary_units=3.5)
    # Then their one or two degrees of freedom do not stand alone (read with Student's t for
    # 1 df, the spread of two numbers keeps any pass out of reach: a halt): the Poisson prior
    # moderates them, and the good build passes
    checks = {c.check: c for c in result.checks}
    dispersion = checks["latency"].evidence["dispersion_pass"]
    assert "moderated by a Poisson prior" in dispersion["from"] and dispersion["df"] >= 5 + slices - 1
    assert checks["latency"].verdict is Verdict.PASS, checks["latency"].reason
    assert result.verdict is Verdict.PASS


# -- the action plugin hands each host its own halted judgement -----------------------------
def plugin_params(extra: dict) -> dict:
    from lrelease.ansible.action.lrelease_gate import _apm_params

    args = {"apm": {"provider": "prometheus", "provider_settings": {"url": "http://127.0.0.1:9"}, "judge": {}},
            "switched_at": 1.0, "health_path": "/health", "expect_status": [], "body_contains": "", "body_json": {}}
    task_vars = {"inventory_hostname": "node2", "ansible_play_hosts_all": ["node2", "node3"],
                 "ansible_play_batch": ["node2"], "hostvars": {"node2": {}, "node3": {}}, **extra}
    return _apm_params(args, task_vars)


def test_the_gate_task_gets_its_hosts_halted_judgement_only():
    # Given halted judgements of node1 and node2: node2's gate task gets its own, and only that
    halted = {"node2": HALTED, "node1": {**HALTED, "started_at": 1.0}}
    assert plugin_params({"lrelease_gate_continue": halted})["continue"] == HALTED
    assert plugin_params({"lrelease_gate_continue": {"node1": HALTED}})["continue"] is None
    assert plugin_params({})["continue"] is None


def test_a_gate_continue_var_that_is_not_a_mapping_is_refused_by_name():
    from lrelease.errors import LreleaseError

    # Given a list where a mapping of host -> judgement belongs: the host's gate fails naming the variable
    with pytest.raises(LreleaseError, match="lrelease_gate_continue: expected a mapping of host"):
        plugin_params({"lrelease_gate_continue": ["node2"]})


def test_the_window_before_a_switch_never_reaches_back_past_the_previous_roll_out():
    from lrelease.errors import ConfigError
    from lrelease.gate.canary import past_window

    # Given a switch at t=1000 and a gate whose window before it spans 80 s
    # Then with nothing before, the window is the whole 80 s
    assert (past_window(1000.0, 80.0).start, past_window(1000.0, 80.0).end) == (920.0, 1000.0)
    # And when an earlier roll-out (its canary rolled back) ended at t=970, the window starts there:
    # the rolled-back build's minutes are not the old build's
    assert past_window(1000.0, 80.0, 970.0).start == 970.0
    # And one that ended long before changes nothing; one that ended at the switch leaves no window
    assert past_window(1000.0, 80.0, "100").start == 920.0
    assert past_window(1000.0, 80.0, 999.5) is None
    # And a value that is no time is named
    with pytest.raises(ConfigError, match="lrelease_gate_past_since"):
        past_window(1000.0, 80.0, "yesterday")


def test_the_wrapper_hands_the_gate_the_end_of_the_environments_previous_roll_out(releaser):
    # Given production's earlier roll-out that ended at 12:00:05 (its canary rolled back), another
    # environment's later one, and a roll-out now running (a resume of a halted one)
    store = releaser.store
    assert releaser._past_since("production", store.start_rollout(
        "production", "1.3.0", "deploy", "pytest", rollout_id="aaaa00000010").id) is None  # nothing before it
    store.finish_rollout("aaaa00000010", "rolled_back", 1)
    store.start_rollout("staging", "1.4.0", "deploy", "pytest", rollout_id="aaaa00000011")
    store.finish_rollout("aaaa00000011", "succeeded", 0)
    store.start_rollout("production", "1.4.0", "deploy", "pytest", rollout_id="aaaa00000012")
    store.finish_rollout("aaaa00000012", "halted", 5)
    store.start_rollout("production", "1.4.0", "resume", "pytest", rollout_id="aaaa00000013", resumes="aaaa00000012")
    ended = store.rollout("aaaa00000010").finished_at
    # Then the gate's window starts no earlier than production's previous roll-out's end, not at
    # the halted roll-out this one resumes (its own earlier part) nor at staging's
    from datetime import datetime
    assert releaser._past_since("production", "aaaa00000013") == datetime.fromisoformat(ended).timestamp()


def test_the_window_before_a_switch_starts_after_the_last_change_any_host_reports():
    # Given staging's read of each play host (`current` and when it last changed): node3 was rolled
    # back at t=970 by a run this roll-out's state store never saw (another checkout, AWX, a human)
    def staged(current, at):
        return {"lrelease_stage_info": {"current": current, "current_changed_at": at}}

    hostvars = {"node2": staged("1.0.0", 500.0), "node3": staged("1.0.0", 970.0)}
    # Then the gate's window before the switch starts there, whether or not the wrapper gave a time
    assert plugin_params({"hostvars": hostvars, "lrelease_build": "2.0.0"})["past_since"] == 970.0
    assert plugin_params({"hostvars": hostvars, "lrelease_build": "2.0.0", "lrelease_gate_past_since": 900.0})[
        "past_since"] == 970.0
    # And a later end of the environment's previous roll-out still wins
    assert plugin_params({"hostvars": hostvars, "lrelease_build": "2.0.0", "lrelease_gate_past_since": 990.0})[
        "past_since"] == 990.0
    # And a host already on the build being deployed (the halted roll-out a resume continues
    # switched it) does not count: its change is this roll-out's own
    resumed = {"node2": staged("2.0.0", 995.0), "node3": staged("1.0.0", 970.0)}
    assert plugin_params({"hostvars": resumed, "lrelease_build": "2.0.0"})["past_since"] == 970.0
    # And with nothing known (no staging read, a fresh host with no `current`) there is no bound
    assert plugin_params({})["past_since"] is None
    fresh = {"node2": staged(None, None), "node3": {}}
    assert plugin_params({"hostvars": fresh, "lrelease_build": "2.0.0"})["past_since"] is None
    # And with ten or more hosts still to switch (the decider reads no window before the switch),
    # no host's staging result is read: the wrapper's time passes as it came
    many = [f"node{i}" for i in range(2, 13)]
    wide = {"ansible_play_hosts_all": many, "hostvars": {h: staged("1.0.0", 970.0) for h in many},
            "lrelease_build": "2.0.0"}
    assert plugin_params(wide)["past_since"] is None
    assert plugin_params({**wide, "lrelease_gate_past_since": 900.0})["past_since"] == 900.0
    # And a wrapper time that is no time is handed on for the decider to name
    assert plugin_params({"hostvars": hostvars, "lrelease_gate_past_since": "yesterday"})["past_since"] == "yesterday"


def test_a_host_judged_against_its_own_past_says_how_much_past_it_had():
    from types import SimpleNamespace

    from lrelease.gate import GateResult, Verdict
    from lrelease.gate.canary import _result

    # Given a judgement left undecided, and a host whose build changed 6 s before its switch
    settings = SimpleNamespace(provider="prometheus")
    undecided = SimpleNamespace(to_gate_result=lambda: GateResult(
        Verdict.INCONCLUSIVE, {}, "inconclusive: errors: not enough reference traffic"))
    alone = _result(undecided, settings, [], 1000.0, baseline=Window(994.0, 1000.0))
    # Then judged against its own past, the reason says how much past there was, and the evidence when
    assert alone.reason == "inconclusive: errors: not enough reference traffic (its own past: the 6 s before the switch)"
    assert alone.evidence["before_switch"] == {"from": 994.0, "to": 1000.0}
    # And against peers (the past only joined the dispersion) the reason is the judge's own
    peers = _result(undecided, settings, [HostRef(name="node2")], 1000.0, baseline=Window(994.0, 1000.0))
    assert peers.reason == "inconclusive: errors: not enough reference traffic"
    assert peers.evidence["before_switch"] == {"from": 994.0, "to": 1000.0}
