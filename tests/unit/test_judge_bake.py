"""One wave's bake: looks on a fake clock, a scripted provider, and the policy at the maximum bake."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial

import pytest

from lrelease.apm import Health, HostMetrics, HostRef, ProviderError, Window
from lrelease.gate import Verdict
from lrelease.gate.bake import Step, next_step, run_bake
from lrelease.gate.judge import Judgement
from lrelease.gate.judge_config import JudgeConfig
from tests.unit.test_gate_health import FakeClock
from tests.unit.test_judge import host

CONFIG = JudgeConfig(bake_seconds=60, max_bake_seconds=300, interval_seconds=60)  # 5 looks
CANARY = [HostRef("node1", url="http://n1")]
PEERS = [HostRef(f"peer{i}", url=f"http://p{i}") for i in range(5)]


Clock = partial(FakeClock, 10_000.0)  # the switch happened at t=10,000


class Scripted:
    """A provider whose hosts serve ``per_minute`` requests with the given error rates; it can
    raise a ProviderError from a given minute on (Prometheus stopped)."""

    name = "scripted"

    def __init__(self, clock: FakeClock, per_minute: float, rates: dict[str, float], down_after: float | None = None):
        self.clock, self.per_minute, self.rates, self.down_after = clock, per_minute, rates, down_after
        self.marked: list[str] = []
        self.windows: list[Window] = []

    def mark(self, hosts: Sequence[HostRef]) -> None:
        self.marked = [h.name for h in hosts]

    def fetch(self, hosts: Sequence[HostRef], window: Window) -> dict[str, HostMetrics]:
        self.windows.append(window)
        if self.down_after is not None and window.end - 10_000.0 > self.down_after:
            raise ProviderError("prometheus", "cannot reach http://127.0.0.1:9090/api/v1/query: ConnectionError")
        minutes = window.seconds / 60.0
        before_switch = window.end <= 10_000.0  # the old build everywhere: 1% errors
        return {h.name: host(h.name, self.per_minute * minutes,
                             self.per_minute * minutes * (0.01 if before_switch else self.rates.get(h.name, 0.01)))
                for h in hosts}


def bake(provider, clock, config=CONFIG, **kw):
    return run_bake(provider, CANARY, PEERS, config, clock=clock, sleep=clock.sleep, **kw)


def test_a_bad_canary_is_rolled_back_at_the_first_look():
    # Given a canary at 5% errors and peers at 0.5%, 300 requests a minute each
    clock = Clock()
    provider = Scripted(clock, 300, {"node1": 0.05, **{p.name: 0.005 for p in PEERS}})
    # When the wave bakes
    outcome = bake(provider, clock)
    # Then the first look (after the 60 s bake) fails it and the step is rollback
    assert outcome.step is Step.ROLLBACK and outcome.verdict is Verdict.FAIL
    assert len(outcome.looks) == 1 and clock.slept == [60.0]
    assert provider.marked == ["node1", *[p.name for p in PEERS]]
    evidence = json.loads(json.dumps(outcome.to_gate_result().to_dict()))["evidence"]
    assert evidence["step"] == "rollback" and evidence["last"]["verdict"] == "fail"


def test_a_good_canary_passes_once_the_evidence_suffices():
    clock = Clock()
    provider = Scripted(clock, 3000, {})  # all at 1%
    outcome = bake(provider, clock)
    assert outcome.step is Step.PASS and outcome.verdict is Verdict.PASS
    assert 1 <= len(outcome.looks) <= CONFIG.max_looks


def test_too_little_traffic_halts_for_a_human_at_the_maximum_bake():
    # Given so little traffic that nothing can be told apart
    clock = Clock()
    provider = Scripted(clock, 20, {})
    seen = []
    outcome = bake(provider, clock, on_look=lambda look, j: seen.append((look, j.verdict)))
    # Then every look is inconclusive, the bake runs to its maximum, and the policy (halt) applies
    assert outcome.step is Step.HALT and outcome.verdict is Verdict.INCONCLUSIVE
    assert [v for _, v in seen] == [Verdict.INCONCLUSIVE] * CONFIG.max_looks
    assert clock.now - 10_000.0 == pytest.approx(CONFIG.max_bake_seconds)
    assert "still inconclusive after 300s (policy halt)" in outcome.reason


def test_the_rollback_policy_rolls_back_an_inconclusive_wave():
    clock = Clock()
    config = JudgeConfig(bake_seconds=60, max_bake_seconds=120, interval_seconds=60, policy="rollback")
    outcome = bake(Scripted(clock, 20, {}), clock, config)
    assert outcome.step is Step.ROLLBACK and outcome.verdict is Verdict.FAIL


def test_prometheus_stopping_mid_bake_is_inconclusive_never_a_pass():
    # Given a provider that answers for 90 s, then fails at every look
    clock = Clock()
    provider = Scripted(clock, 20, {}, down_after=90)
    outcome = bake(provider, clock)
    # Then the later looks are inconclusive with the provider's error, and the wave halts
    assert outcome.step is Step.HALT
    last = outcome.looks[-1]
    assert last.checks[0].check == "provider" and "cannot reach" in last.reason


def test_a_failing_health_check_fails_the_wave_whatever_the_metrics():
    clock = Clock()

    class Sick:
        name = "http"

        def mark(self, hosts):
            pass

        def fetch(self, hosts, window):
            return {h.name: HostMetrics(h.name, no_data=True, health=Health("fail", 503, "HTTP 503")) for h in hosts}

    outcome = bake(Scripted(clock, 3000, {}), clock, health=Sick())
    assert outcome.step is Step.ROLLBACK and "health check fails" in outcome.reason


def test_the_last_wave_uses_baseline_slices_fetched_once():
    # Given no peers left and a 10-minute baseline before the switch
    clock = Clock()
    provider = Scripted(clock, 3000, {"node1": 0.05})
    baseline = Window(10_000.0 - 600, 10_000.0)
    outcome = run_bake(provider, CANARY, [], CONFIG, baseline=baseline, baseline_slices=10, clock=clock,
                       sleep=clock.sleep)
    # Then the canary is judged against its own past, sliced in ten, and fails (5% vs 1%)
    assert outcome.step is Step.ROLLBACK
    assert outcome.looks[-1].evidence["reference"] == "baseline"
    slices = [w for w in provider.windows if w.end <= 10_000.0]
    assert len(slices) == 10 and slices[0].start == baseline.start and slices[-1].end == baseline.end


@pytest.mark.parametrize(("peers", "past_fetched"), [(1, True), (2, True), (9, True), (10, False)])
def test_a_wave_with_few_reference_hosts_adds_every_hosts_own_past_to_the_dispersion(peers, past_fetched):
    # Given a good canary, fewer than 10 peers (or 10), and the 10 minutes before the switch
    clock = Clock()
    provider = Scripted(clock, 3000, {})
    baseline = Window(10_000.0 - 600, 10_000.0)
    reference = [HostRef(f"peer{i}", url=f"http://p{i}") for i in range(peers)]
    # When the wave bakes
    outcome = run_bake(provider, CANARY, reference, CONFIG, baseline=baseline, baseline_slices=10, clock=clock,
                       sleep=clock.sleep)
    # Then it is still compared with its peers over the same minutes (and passes)
    assert outcome.step is Step.PASS and outcome.looks[-1].evidence["reference"] == "peers"
    # and with fewer than 3 peers, every host's past before the switch was fetched once, in ten slices,
    # and the evidence says the dispersion used it
    past = [w for w in provider.windows if w.end <= 10_000.0]
    used = outcome.looks[-1].evidence["dispersion_reference"]
    if past_fetched:
        assert len(past) == 10 and past[0].start == baseline.start and past[-1].end == baseline.end
        assert used.endswith(f"plus 10 slices before the switch of {peers + 1} host(s) on the old build "
                             f"({', '.join(sorted(['node1', *(p.name for p in reference)]))})")
    else:
        assert past == [] and "before the switch" not in used


def test_a_configured_dispersion_needs_no_past():
    # Given two peers but a dispersion fixed in the settings
    clock = Clock()
    provider = Scripted(clock, 3000, {})
    config = JudgeConfig(bake_seconds=60, max_bake_seconds=300, interval_seconds=60, dispersion=1.0)
    outcome = run_bake(provider, CANARY, PEERS[:2], config, baseline=Window(10_000.0 - 600, 10_000.0), clock=clock,
                       sleep=clock.sleep)
    # Then nothing before the switch is fetched, and the configured value is used
    assert [w for w in provider.windows if w.end <= 10_000.0] == []
    assert outcome.step is Step.PASS
    assert outcome.looks[-1].checks[0].evidence["dispersion"] == {"phi": 1.0, "from": "configured"}


def test_a_provider_without_history_reads_every_host_on_its_cadence_while_baking():
    # Given a provider that only knows what it reads, every 20 s, and a good canary
    clock = Clock()
    provider = Scripted(clock, 3000, {})
    provider.sample_seconds = 20.0
    marks: list[float] = []
    provider.mark = lambda hosts: marks.append(clock.now - 10_000.0)
    # When the wave bakes 60 s to its first look (which passes)
    outcome = bake(provider, clock)
    # Then every host was read at the switch and every 20 s meanwhile, and the look came on time
    assert outcome.step is Step.PASS
    assert marks == [0.0, 20.0, 40.0]
    assert provider.windows == [Window(10_000.0, 10_060.0)]


def test_the_gate_reports_its_own_time():
    clock = Clock()
    outcome = bake(Scripted(clock, 300, {"node1": 0.05}), clock)
    assert outcome.gate_seconds == 0.0  # the fake clock only moves while sleeping
    assert 0.0 <= outcome.judge_seconds < 0.5


@pytest.mark.parametrize(("verdict", "look", "policy", "step"), [
    (Verdict.PASS, 1, "halt", Step.PASS),
    (Verdict.FAIL, 1, "halt", Step.ROLLBACK),
    (Verdict.INCONCLUSIVE, 1, "halt", Step.WAIT),
    (Verdict.INCONCLUSIVE, 5, "halt", Step.HALT),
    (Verdict.INCONCLUSIVE, 5, "rollback", Step.ROLLBACK),
])
def test_next_step(verdict, look, policy, step):
    config = JudgeConfig(bake_seconds=60, max_bake_seconds=300, interval_seconds=60, policy=policy)
    assert next_step(Judgement(verdict, "", ()), look, config) is step
