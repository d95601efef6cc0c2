"""One judgement per wave: the first host's gate task judges every host of the wave (one fetch
and one reference summary per look) and the other tasks take their results from the board —
with each host's verdict and evidence what its own judgement would have given."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from lrelease.apm import HostMetrics, HostRef, Window
from lrelease.apm import scrape as scrape_module
from lrelease.gate import GateRequest, Verdict
from lrelease.gate import canary as apm_gate
from lrelease.gate import judge as judge_module
from lrelease.gate.bake import run_bake, run_wave_bake
from lrelease.gate.judge_config import JudgeConfig
from lrelease.gate.wave import WaveBoard
from lrelease.sandbox.demoapp import gate as demo_gate
from lrelease.sandbox.demoapp.app import Metrics
from tests.unit.loopback import serve
from tests.unit.test_gate_health import FakeClock
from tests.unit.test_judge import host

CONFIG = JudgeConfig(bake_seconds=60, max_bake_seconds=300, interval_seconds=60)  # 5 looks
WAVE = [HostRef(f"node{i}", url=f"http://n{i}") for i in range(1, 5)]
# node1 good, node2 twice the errors, node3 five times, node4 a little worse than the peers
RATES = {"node1": 0.01, "node2": 0.02, "node3": 0.05, "node4": 0.012}


class Scripted:
    """Hosts serving ``per_minute`` requests at their error rate (peers: a spread around 1%);
    counts what it is asked."""

    name = "scripted"

    def __init__(self, per_minute: float, rates: dict[str, float]):
        self.per_minute, self.rates = per_minute, rates
        self.fetched: Counter = Counter()  # host -> times fetched
        self.fetches = 0

    def mark(self, hosts: Sequence[HostRef]) -> None:
        pass

    def fetch(self, hosts: Sequence[HostRef], window: Window) -> dict[str, HostMetrics]:
        self.fetches += 1
        self.fetched.update(h.name for h in hosts)
        n = self.per_minute * window.seconds / 60.0
        return {h.name: host(h.name, n, n * self.rates.get(h.name, 0.01), median=0.08 if h.name != "node4" else 0.09)
                for h in hosts}


def peers(count: int) -> tuple[list[HostRef], dict[str, float]]:
    refs = [HostRef(f"peer{i}", url=f"http://p{i}") for i in range(count)]
    return refs, {r.name: 0.008 + 0.0005 * (i % 9) for i, r in enumerate(refs)}


def comparable(outcome) -> dict:
    """The outcome as stored, without the judge's own CPU seconds (never the same twice)."""
    data = json.loads(json.dumps(outcome.to_gate_result().to_dict()))
    data["evidence"].pop("judge_seconds")
    return data


@pytest.mark.parametrize("count", [12, 3], ids=["many peers", "few peers, with the hosts' past"])
def test_each_host_of_a_judged_wave_gets_the_judgement_it_would_get_alone(count):
    # Given a wave of four hosts (good, 2x errors, 5x errors, slightly slower) and its peers
    refs, rates = peers(count)
    rates.update(RATES)
    baseline = Window(10_000.0 - 600, 10_000.0) if count < 10 else None
    # When each host is baked on its own, and when the wave is baked at once
    alone = {}
    for h in WAVE:
        clock = FakeClock(10_000.0)
        alone[h.name] = run_bake(Scripted(3000, rates), [h], refs, CONFIG, baseline=baseline, clock=clock,
                                 sleep=clock.sleep)
    clock = FakeClock(10_000.0)
    told = []
    together = run_wave_bake(Scripted(3000, rates), WAVE, refs, CONFIG, baselines={h.name: baseline for h in WAVE},
                             clock=clock, sleep=clock.sleep, on_decided=lambda name, outcome: told.append(name))
    # Then every host has the same verdict, looks and evidence, number for number
    assert {n: o.verdict for n, o in together.items()} == {n: o.verdict for n, o in alone.items()}
    assert len({o.verdict for o in together.values()}) > 1  # not all alike: the hosts are told apart
    for name in alone:
        assert comparable(together[name]) == comparable(alone[name])
    # And each host was told as soon as it was decided, once
    assert sorted(told) == sorted(n for n in alone) and len(told) == len(set(told))
    assert told[0] == min(alone, key=lambda n: len(alone[n].looks))


def test_a_judged_wave_fetches_each_host_once_per_look_and_summarises_the_reference_once(monkeypatch):
    # Given a wave of four hosts against twelve peers, the judge's dispersion estimates counted
    refs, rates = peers(12)
    rates.update({h.name: 0.01 for h in WAVE})  # alike: every look of the bake is made
    estimates = Counter()
    real = judge_module.estimate
    monkeypatch.setattr(judge_module, "estimate", lambda *a, **kw: estimates.update(["wave"]) or real(*a, **kw))
    provider = Scripted(50, rates)
    clock = FakeClock(10_000.0)
    # When the wave bakes
    outcomes = run_wave_bake(provider, WAVE, refs, CONFIG, clock=clock, sleep=clock.sleep)
    looks = {len(o.looks) for o in outcomes.values()}
    # Then one fetch per look read every host once
    assert looks == {CONFIG.max_looks}
    assert provider.fetches == CONFIG.max_looks
    assert set(provider.fetched.values()) == {CONFIG.max_looks}
    # And the judge's reference side took as many estimates as one host judged alone does
    monkeypatch.setattr(judge_module, "estimate", lambda *a, **kw: estimates.update(["alone"]) or real(*a, **kw))
    clock = FakeClock(10_000.0)
    run_bake(Scripted(50, rates), WAVE[:1], refs, CONFIG, clock=clock, sleep=clock.sleep)
    assert estimates["alone"] > 0 and estimates["wave"] == estimates["alone"]


# --- through the gate's entry point: one task per host, a real scrape server --------------------


def demo_fleet(hosts: int):
    """/h<i>/metrics: the demo app's page, 400 more requests (2% 5xx) at each read; /h<i>/health: ok."""
    pages, metrics = [], Metrics("1.0.0")
    for _ in range(12):
        for i in range(400):
            metrics.observe("/", 500 if i % 50 == 0 else 200, 0.001 * (i % 40))
        pages.append(metrics.render())
    served: Counter = Counter()
    lock = threading.Lock()

    def answer(req):
        if req.path.endswith("/health"):
            return 200, {"status": "ok"}
        with lock:
            n = served[req.path]
            served[req.path] += 1
        return 200, pages[min(n, len(pages) - 1)], {"Content-Type": "text/plain; version=0.0.4"}

    return serve(answer), served


def gate_request(tmp: Path, base: str, me: str, wave: list[str], refs: list[str], looks: int) -> GateRequest:
    judge = {"bake_seconds": 0.3, "interval_seconds": 0.3, "max_bake_seconds": 0.3 * looks,
             "errors": {"detect_ratio": 1.35}, "latency": {"detect": 0.21}}  # no look can pass: all are made
    apm = {"provider": "scrape", "judge": judge,
           "provider_settings": {**demo_gate.SCRAPE, "state_path": str(tmp / "readings.json")}}
    ref = [{"name": h, "url": f"{base}/{h}"} for h in refs]
    return GateRequest(host=me, url=f"{base}/{me}/health", params={
        "apm": apm, "canary": {"name": me, "url": f"{base}/{me}"}, "reference": ref,
        "wave": [{"name": h, "url": f"{base}/{h}"} for h in wave], "board": str(tmp / "board"), "run": "test",
        "health_path": "/health", "health_check": {"expect_status": "2xx", "body_json": {}, "body_contains": ""}})


def run_tasks(requests: list[GateRequest]) -> dict[str, object]:
    """Each host's gate task at once (threads here; processes under Ansible: the board is files)."""
    results: dict[str, object] = {}

    def task(req: GateRequest) -> None:
        try:
            results[req.host] = apm_gate.decide(req)
        except Exception as exc:  # noqa: BLE001  reported to the test
            results[req.host] = exc

    threads = [threading.Thread(target=task, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_the_wave_s_tasks_summarise_each_reference_host_once_per_look(tmp_path, monkeypatch):
    # Given a wave of three hosts against ten reference hosts, each host's gate task at once,
    # every summary of a host's readings counted
    wave, refs, looks = ["h10", "h11", "h12"], [f"h{i}" for i in range(10)], 3
    summaries: Counter = Counter()
    real = scrape_module.summarize_between
    lock = threading.Lock()

    def counted(name, *args, **kw):
        with lock:
            summaries[name] += 1
        return real(name, *args, **kw)

    monkeypatch.setattr(scrape_module, "summarize_between", counted)
    server, served = demo_fleet(13)
    with server as stub:
        # When the three tasks run the gate
        results = run_tasks([gate_request(tmp_path, stub.url, me, wave, refs, looks) for me in wave])
    # Then each host got its own result: the judgement of its own host, against the same reference
    assert set(results) == set(wave)
    for me, result in results.items():
        assert not isinstance(result, Exception), result
        assert result.verdict is Verdict.INCONCLUSIVE
        assert list(result.evidence["last"]["canary_hosts"]) == [me]
        assert result.evidence["reference"] == refs and result.evidence["looks"] == looks
    # And every host's readings were summarised once per look for the whole wave (not once per task)
    assert summaries == {h: looks for h in [*wave, *refs]}
    assert served == {f"/{h}/metrics": looks + 1 for h in [*wave, *refs]}  # the mark, then one read per look
    # And the board is left empty
    assert not (tmp_path / "board").exists() or not any((tmp_path / "board").iterdir())


def test_a_task_whose_wave_nobody_judges_judges_its_own_host(tmp_path, monkeypatch):
    # Given a host whose wave's first host never runs its gate task (its process died)
    monkeypatch.setattr(apm_gate, "GRACE_SECONDS", 0.2)
    server, _ = demo_fleet(4)
    with server as stub:
        req = gate_request(tmp_path, stub.url, "h3", ["h2", "h3"], ["h0", "h1"], 2)
        # When its task runs the gate
        result = apm_gate.decide(req)
    # Then it judged its own host after waiting its bake and the grace, with its own evidence
    assert result.evidence["looks"] == 2 and list(result.evidence["last"]["canary_hosts"]) == ["h3"]


def test_a_failure_of_the_judging_task_fails_the_waiting_tasks_at_once(tmp_path):
    # Given a wave whose provider settings are wrong (a metrics_path without its slash)
    server, _ = demo_fleet(4)
    with server as stub:
        reqs = [gate_request(tmp_path, stub.url, me, ["h2", "h3"], ["h0", "h1"], 2) for me in ("h2", "h3")]
        for req in reqs:
            req.params["apm"]["provider_settings"]["metrics_path"] = "metrics"
        # When both tasks run the gate
        results = run_tasks(reqs)
    # Then the judging task fails with the settings' error, and the waiting one with the same words
    assert "metrics_path" in str(results["h2"])
    assert isinstance(results["h3"], apm_gate.GateWaveError)
    assert "the gate of h2" in str(results["h3"]) and "metrics_path" in str(results["h3"])


def test_a_board_hands_a_result_once_and_gives_up_at_its_deadline(tmp_path):
    # Given a board with one result left for node2
    board = WaveBoard(tmp_path, "run-1", ["node1", "node2"], ["peer0"])
    board.publish("node2", {"verdict": "pass", "reason": "fine", "evidence": {"looks": 1}})
    clock = FakeClock(0.0)
    # When node2 takes it, and then waits for another
    first = board.take("node2", 10.0, clock=clock, sleep=clock.sleep)
    second = board.take("node2", 1.0, clock=clock, sleep=clock.sleep)
    # Then it gets it once; the second wait ends at its deadline with nothing; nothing is left
    assert first == {"verdict": "pass", "reason": "fine", "evidence": {"looks": 1}}
    assert second is None and 1.0 <= clock.now <= 1.0 + 1e-9
    assert not board.path.exists()
    # And a later run (a resume) of the same wave has a board of its own
    assert WaveBoard(tmp_path, "run-2", ["node1", "node2"], ["peer0"]).path != board.path


def test_a_board_removed_under_a_write_is_made_again(tmp_path, monkeypatch):
    # Given a board whose directory a task removes (it took the last result) right after the
    # writer made it, before the write: the first mkdir is undone at once
    board = WaveBoard(tmp_path, "run-1", ["node1", "node2", "node3"], ["peer0"])
    real_mkdir, undone = Path.mkdir, []

    def mkdir_then_removed(self, *args, **kw):
        real_mkdir(self, *args, **kw)
        if self == board.path and not undone:
            undone.append(self)
            self.rmdir()

    monkeypatch.setattr(Path, "mkdir", mkdir_then_removed)
    # When the writer leaves node3's result
    board.publish("node3", {"verdict": "pass", "reason": "fine", "evidence": {}})
    # Then the result is there all the same, for node3's task to take
    assert undone == [board.path]
    clock = FakeClock(0.0)
    assert board.take("node3", 1.0, clock=clock, sleep=clock.sleep) == {"verdict": "pass", "reason": "fine",
                                                                         "evidence": {}}
