#!/usr/bin/env python3
"""Thousands of gate decisions on simulated noisy traffic: how often does the judge catch a bad
build, and how often does it halt a good one? A naive fixed-threshold gate sees the same data.
Then the gate's own cost per wave, measured for real on loopback.

Traffic model (per host and minute; standard library ``random`` only; seedable):

- requests ~ Poisson(R x volume x host share): volume varies minute to minute (gamma, CV 20%),
  the share is fixed per host (gamma, CV 10%: uneven load balancing).
- 5xx ~ Poisson(requests x p0 x hour x host x burst x minute x build): the hour's level (gamma,
  CV 30%) and each minute's blip (CV 30%) are shared by every host; the host effect is fixed
  (CV 3%); bursts hit one host for one minute (CV 30%). Gamma-Poisson mixtures: overdispersed.
- latency per request log-normal (median 80 ms, sigma 0.55: p95 ~200 ms) x hour (CV 10%) x
  minute (CV 10%) x host (CV 3%) x build, seen as the demo app's histogram buckets (5 ms..5 s)
  exactly as the ``scrape`` provider would see them.
- builds: good; errors x2; latency x1.5 (p95 +50%).

Scenarios: the canary (1 host vs 5 peers), a middle wave (3 vs 3), the last wave (3 hosts vs
their own maximum bake before the switch, in ten slices). The gate looks every 3 minutes up
to 30 (10 looks; weighted Bonferroni) — the judge's defaults. "Halts" = anything but Pass: Fail
(rolled back) or still Inconclusive at the maximum bake (paused for a human). For bad builds that
is the power; for good builds the false-halt rate. The naive gate: "error rate <= 1.5 x normal
and p95 <= 1.25 x normal", with the normal levels known in advance, checked once after the first
look (as fixed-bake gates do) and, for fairness, once after the maximum bake.

Two traffic regimes are printed: a busy service (1200 requests/host/minute, 1% errors) and a
quiet one (300 requests/host/minute, 0.5% errors: a few hundred requests per host per minute,
like the sandbox). Targets: power >= 95% for 2x errors and >= 90% for +50% p95, false halts <= 1%.

Then small reference sets on the busy service, with the default settings: 1 canary vs 2 peers,
2 vs 1, 1 vs 1, each at overdispersion phi 1, 2 and 3 (one-minute bursts on single hosts tuned
so that one host's 5xx count in a minute varies phi times as much as Poisson; the 3% persistent
host differences stay). As the gate does with fewer than ten reference hosts, every host's own
30 minutes before the switch (ten slices) joins the dispersion estimate (in the first block too,
for 1 vs 5 and 3 vs 3). Reported per row: false
halts (a good build Inconclusive at the maximum bake), false rollbacks (a good build Failed) and
power (a 2x error build not passed; of which rolled back). Targets: false halts and false
rollbacks <= 1%, power >= 90%.

    python bench/gate_simulation.py                      # everything, 600 decisions per row (~2 min)
    python bench/gate_simulation.py --decisions 0 --skip-overhead   # the small-reference block only
    python bench/gate_simulation.py --rate 600 --p0 0.02 --max-bake 30 --decisions 300 --small-decisions 0
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrelease.apm import HostMetrics, increase_between
from lrelease.apm.latency import INF, Latency
from lrelease.gate import Verdict
from lrelease.gate.bake import BASELINE_SLICES
from lrelease.gate.judge import FEW_REFERENCE_HOSTS, judge
from lrelease.gate.judge_config import JudgeConfig
from lrelease.gate.stats import normal_cdf

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, INF)
MEDIAN, SIGMA = 0.080, 0.55
NOMINAL_P95 = MEDIAN * math.exp(1.6449 * SIGMA)


def gamma_unit(rng: random.Random, cv: float) -> float:
    """A gamma variable with mean 1 and the given coefficient of variation."""
    if cv <= 0:
        return 1.0
    shape = 1.0 / (cv * cv)
    return rng.gammavariate(shape, 1.0 / shape)


def poisson(rng: random.Random, lam: float) -> int:
    """Exact Poisson draw: multiplication for small means, PTRS (Hoermann 1993) for large ones."""
    if lam <= 0:
        return 0
    if lam < 30:
        limit, k, prod = math.exp(-lam), 0, rng.random()
        while prod > limit:
            k += 1
            prod *= rng.random()
        return k
    slam, loglam = math.sqrt(lam), math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b) <= -lam + k * loglam - math.lgamma(k + 1):
            return k


def bucket_probabilities(median: float) -> list[float]:
    cdf = [normal_cdf(math.log(le / median) / SIGMA) if le != INF else 1.0 for le in BOUNDS]
    return [c - p for c, p in zip(cdf, [0.0, *cdf[:-1]])]


@dataclass
class Host:
    share: float
    error_effect: float
    latency_effect: float
    requests: float = 0.0
    errors: float = 0.0
    buckets: list[float] | None = None

    def add_minute(self, rng: random.Random, rate: float, p0: float, volume: float, global_errors: float,
                   global_latency: float, error_mult: float, latency_mult: float, burst_cv: float) -> None:
        probs = bucket_probabilities(MEDIAN * self.latency_effect * global_latency * latency_mult)
        mean = rate * volume * self.share
        counts = [poisson(rng, mean * p) for p in probs]
        n = sum(counts)
        self.buckets = [a + b for a, b in zip(self.buckets or [0.0] * len(BOUNDS), counts)]
        errors = poisson(rng, n * p0 * self.error_effect * gamma_unit(rng, burst_cv) * global_errors * error_mult)
        self.requests += n
        self.errors += errors

    def metrics(self, name: str) -> HostMetrics:
        return _metrics(name, self.requests, self.errors, self.buckets or [0.0] * len(BOUNDS))


def _metrics(name: str, requests: float, errors: float, per_bucket: list) -> HostMetrics:
    cumulative, running = [], 0.0
    for le, count in zip(BOUNDS, per_bucket):
        running += count
        cumulative.append((le, running))
    return HostMetrics(host=name, requests=requests, errors=errors, latency=Latency(buckets=tuple(cumulative)))


@dataclass(frozen=True)
class Scenario:
    name: str
    canaries: int
    peers: int  # 0: compare with the canaries' own window before the switch


SCENARIOS = (Scenario("canary 1 vs 5 peers", 1, 5), Scenario("wave 3 vs 3 peers", 3, 3),
             Scenario("last wave 3 vs baseline", 3, 0))
SMALL = (Scenario("1 vs 2 peers", 1, 2), Scenario("2 vs 1 peer", 2, 1), Scenario("1 vs 1 peer", 1, 1))
OVERDISPERSION = (1.0, 2.0, 3.0)
BUILDS = {"good": (1.0, 1.0), "errors x2": (2.0, 1.0), "p95 +50%": (1.0, 1.5)}


@dataclass
class Traffic:
    rate: float = 1200.0  # requests per host per minute
    p0: float = 0.01  # normal 5xx rate
    volume_cv: float = 0.2
    share_cv: float = 0.1
    host_error_cv: float = 0.03
    burst_cv: float = 0.3
    global_error_cv: float = 0.3
    host_latency_cv: float = 0.03
    global_latency_cv: float = 0.1
    hour_error_cv: float = 0.3  # the hour's level (traffic mix, dependencies), the same for every host
    hour_latency_cv: float = 0.1

    def with_overdispersion(self, phi: float) -> Traffic:
        """The same traffic with one-minute bursts on single hosts tuned so that one host's 5xx count
        in a minute varies ``phi`` times as much as Poisson (given what all hosts share)."""
        per_minute = self.rate * self.p0
        return Traffic(**{**self.__dict__, "burst_cv": math.sqrt(max(0.0, phi - 1.0) / per_minute)})


def one_decision(rng: random.Random, scenario: Scenario, build: str, traffic: Traffic, config: JudgeConfig,
                 minutes_per_look: int) -> tuple[str, int, float, bool, bool]:
    """Returns (outcome, looks used, judge CPU seconds, naive halts after the first look, after the last)."""
    error_mult, latency_mult = BUILDS[build]
    # This hour's levels: every host, before and after the switch, shares them; a fixed threshold does not know them.
    p0 = traffic.p0 * gamma_unit(rng, traffic.hour_error_cv)
    latency_hour = gamma_unit(rng, traffic.hour_latency_cv)
    n_hosts = scenario.canaries + scenario.peers
    hosts = [Host(gamma_unit(rng, traffic.share_cv), gamma_unit(rng, traffic.host_error_cv),
                  gamma_unit(rng, traffic.host_latency_cv)) for _ in range(n_hosts)]
    canaries, peers = hosts[:scenario.canaries], hosts[scenario.canaries:]
    reference: dict[str, HostMetrics] = {}
    kind = "peers"
    baseline_minutes = round(config.max_bake_seconds / 60)  # as the gate does: the maximum bake before the switch
    per_slice = max(1, baseline_minutes // BASELINE_SLICES)
    past: list[dict[str, HostMetrics]] = []
    if not peers:  # the same hosts before their switch, on the old build, in the gate's slices
        kind = "baseline"
        for part, before in enumerate(the_past(rng, canaries, traffic, p0, latency_hour, baseline_minutes, per_slice)):
            reference[f"baseline@{part}"] = merged(f"baseline@{part}", before)
    elif len(peers) < FEW_REFERENCE_HOSTS:  # as the gate does: every host's own past joins the dispersion estimate
        past = [{f"h{i}": h.metrics(f"h{i}") for i, h in enumerate(before)}
                for before in the_past(rng, hosts, traffic, p0, latency_hour, baseline_minutes, per_slice)]
    cpu, outcome, used = 0.0, "", 0
    slices: list[dict[str, HostMetrics]] = []
    naive_first = False
    previous = {f"r{i}": h.metrics(f"r{i}") for i, h in enumerate(peers)}
    for look in range(1, config.max_looks + 1):
        for _ in range(minutes_per_look):
            glob = (gamma_unit(rng, traffic.volume_cv), gamma_unit(rng, traffic.global_error_cv),
                    latency_hour * gamma_unit(rng, traffic.global_latency_cv))
            for h in canaries:
                h.add_minute(rng, traffic.rate, p0, *glob, error_mult, latency_mult, traffic.burst_cv)
            for h in peers:
                h.add_minute(rng, traffic.rate, p0, *glob, 1.0, 1.0, traffic.burst_cv)
        canary = {f"c{i}": h.metrics(f"c{i}") for i, h in enumerate(canaries)}
        if peers:  # totals since the switch, and this look's increments (for the dispersion estimate)
            reference = {f"r{i}": h.metrics(f"r{i}") for i, h in enumerate(peers)}
            slices.append({name: increase_between(previous[name], m) for name, m in reference.items()})
            previous = reference
        if look == 1:
            naive_first = naive_halts(canary, traffic)
        if not outcome:
            t0 = time.process_time()
            verdict = judge(canary, reference, config, look=look, reference_kind=kind, reference_slices=slices,
                            canary_units=None if peers else look * minutes_per_look / per_slice,
                            past_slices=past).verdict
            cpu += time.process_time() - t0
            used = look
            if verdict is Verdict.PASS:
                outcome = "pass"
            elif verdict is Verdict.FAIL:
                outcome = "fail"
            elif look == config.max_looks:
                outcome = "inconclusive"
    return outcome, used, cpu, naive_first, naive_halts(canary, traffic)


def the_past(rng: random.Random, hosts: list[Host], traffic: Traffic, p0: float, latency_hour: float,
             minutes: int, per_slice: int) -> list[list[Host]]:
    """``hosts`` on the old build over the ``minutes`` before the switch, in slices of ``per_slice`` minutes."""
    parts = []
    for _ in range(max(1, minutes // per_slice)):
        before = [Host(h.share, h.error_effect, h.latency_effect) for h in hosts]
        for _ in range(per_slice):
            glob = (gamma_unit(rng, traffic.volume_cv), gamma_unit(rng, traffic.global_error_cv),
                    latency_hour * gamma_unit(rng, traffic.global_latency_cv))
            for h in before:
                h.add_minute(rng, traffic.rate, p0, *glob, 1.0, 1.0, traffic.burst_cv)
        parts.append(before)
    return parts


def merged(name: str, hosts: list[Host]) -> HostMetrics:
    """One unit pooling several hosts (a baseline time slice)."""
    parts = [h.metrics(name) for h in hosts]
    buckets: dict[float, float] = {}
    for m in parts:
        for le, c in m.latency.buckets:  # type: ignore[union-attr]
            buckets[le] = buckets.get(le, 0.0) + c
    return HostMetrics(host=name, requests=sum(m.requests for m in parts), errors=sum(m.errors for m in parts),
                       latency=Latency.from_buckets(buckets.items()))


def naive_halts(canary: dict[str, HostMetrics], traffic: Traffic) -> bool:
    requests = sum(m.requests for m in canary.values())
    errors = sum(m.errors for m in canary.values())
    buckets: dict[float, float] = {}
    for m in canary.values():
        for le, c in m.latency.buckets:  # type: ignore[union-attr]
            buckets[le] = buckets.get(le, 0.0) + c
    p95 = Latency.from_buckets(buckets.items()).quantile(0.95) or 0.0
    return (requests > 0 and errors / requests > 1.5 * traffic.p0) or p95 > 1.25 * NOMINAL_P95


REGIMES = (("busy service", Traffic(rate=1200, p0=0.01)), ("quiet service", Traffic(rate=300, p0=0.005)))
TARGETS = {"good": ("<=", 0.01), "errors x2": (">=", 0.95), "p95 +50%": (">=", 0.90)}


def run_block(title: str, traffic: Traffic, config: JudgeConfig, decisions: int, interval: int,
              scenarios: list[Scenario], rng: random.Random) -> tuple[float, int, float]:
    print(f"\n{title}: {traffic.rate:g} requests/host/minute, normal 5xx rate {traffic.p0:.1%}, normal p95 "
          f"{NOMINAL_P95 * 1000:.0f} ms, host differences {traffic.host_error_cv:.0%}; a look every {interval} min, "
          f"{config.max_looks} at most; alpha {config.alpha}, beta {config.beta}; {decisions} decisions per row")
    header = (f"{'scenario':<24} {'build':<9} | {'halts':>6} {'target':>8} | {'fail':>6} {'inconcl':>7} {'pass':>6} "
              f"{'looks':>5} | {'naive@1st':>9} {'naive@max':>9}")
    print(header)
    print("-" * len(header))
    cpu_total, count, worst = 0.0, 0, 0.0
    for scenario in scenarios:
        for build in BUILDS:
            tally = {"pass": 0, "fail": 0, "inconclusive": 0}
            naive_first = naive_last = looks = 0
            for _ in range(decisions):
                outcome, used, cpu, n1, n2 = one_decision(rng, scenario, build, traffic, config, interval)
                tally[outcome] += 1
                naive_first += n1
                naive_last += n2
                looks += used
                cpu_total += cpu
                worst = max(worst, cpu)
                count += 1
            halts = (tally["fail"] + tally["inconclusive"]) / decisions
            op, goal = TARGETS[build]
            met = halts <= goal if op == "<=" else halts >= goal
            print(f"{scenario.name:<24} {build:<9} | {halts:>6.1%} {op + f'{goal:.0%}':>6} {'ok' if met else '--':>1} | "
                  f"{tally['fail'] / decisions:>6.1%} {tally['inconclusive'] / decisions:>7.1%} "
                  f"{tally['pass'] / decisions:>6.1%} {looks / decisions:>5.1f} | "
                  f"{naive_first / decisions:>9.1%} {naive_last / decisions:>9.1%}")
    return cpu_total, count, worst


def run_small_block(traffic: Traffic, config: JudgeConfig, decisions: int, interval: int,
                    rng: random.Random) -> tuple[float, int, float]:
    """Waves judged against one or two reference hosts, at overdispersion 1 to 3 (the first regime: busy)."""
    print(f"\nsmall reference sets: {traffic.rate:g} requests/host/minute, 5xx {traffic.p0:.1%}, "
          f"host differences {traffic.host_error_cv:.0%}, one-minute bursts on single hosts such that a host's "
          f"5xx per minute vary phi x Poisson; default judge settings; {decisions} decisions per build and row")
    header = (f"{'reference':<13} {'phi':>3} | {'good: false halt':>16} {'false rollback':>14} {'looks':>5} | "
              f"{'2x errors: caught':>17} {'rolled back':>11} {'looks':>5} | target")
    print(header)
    print("-" * len(header))
    cpu_total, count, worst = 0.0, 0, 0.0
    for scenario in SMALL:
        for phi in OVERDISPERSION:
            noisy = traffic.with_overdispersion(phi)
            row: dict[str, tuple[dict[str, int], float]] = {}
            for build in ("good", "errors x2"):
                tally, looks = {"pass": 0, "fail": 0, "inconclusive": 0}, 0
                for _ in range(decisions):
                    outcome, used, cpu, _, _ = one_decision(rng, scenario, build, noisy, config, interval)
                    tally[outcome] += 1
                    looks += used
                    cpu_total += cpu
                    worst = max(worst, cpu)
                    count += 1
                row[build] = tally, looks / decisions
            (good, good_looks), (bad, bad_looks) = row["good"], row["errors x2"]
            halts, rollbacks = good["inconclusive"] / decisions, good["fail"] / decisions
            caught = (bad["fail"] + bad["inconclusive"]) / decisions
            met = halts <= 0.01 and rollbacks <= 0.01 and caught >= 0.90
            print(f"{scenario.name:<13} {phi:>3g} | {halts:>16.1%} {rollbacks:>14.1%} {good_looks:>5.1f} | "
                  f"{caught:>17.1%} {bad['fail'] / decisions:>11.1%} {bad_looks:>5.1f} | {'ok' if met else '--'}")
    print("target: false halts (Inconclusive at the maximum bake) <= 1%, false rollbacks (Fail) <= 1%, "
          "2x errors caught (not passed) >= 90%")
    return cpu_total, count, worst


def measure_gate_overhead(config: JudgeConfig) -> None:
    """A real bake, minus the waiting: the scrape provider reads six demo apps on 127.0.0.1 over
    HTTP at every look, the judge decides; the clock is fake, so only the gate's own work counts."""
    import threading

    from lrelease.apm import HostRef
    from lrelease.apm.scrape import ScrapeProvider, ScrapeSettings
    from lrelease.sandbox.demoapp import gate as demo_gate
    from lrelease.gate.bake import run_bake
    from lrelease.sandbox.demoapp.app import Metrics, Server, make_handler

    servers, metrics = [], []
    for i in range(6):
        m = Metrics("bench")
        server = Server(("127.0.0.1", 0), make_handler("bench", {"error_rate": 0.0, "latency_ms": 0.0}, m))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        metrics.append(m)
    hosts = [HostRef(f"node{i}", url=f"http://127.0.0.1:{s.server_address[1]}") for i, s in enumerate(servers)]
    now = [1_000_000.0]
    rng = random.Random(1)

    def sleep(seconds: float) -> None:  # traffic "happens" while the gate waits: 20 req/s per host
        for i, m in enumerate(metrics):
            for _ in range(int(seconds * 20)):
                m.observe("/", 500 if rng.random() < 0.01 else 200, rng.lognormvariate(math.log(0.08), 0.55))
        now[0] += seconds

    try:
        for label, cfg in (("as soon as the data decide", config),
                           ("all looks (quiet: inconclusive to the end)",
                            JudgeConfig(bake_seconds=config.bake_seconds, max_bake_seconds=config.max_bake_seconds,
                                        interval_seconds=config.interval_seconds, min_requests=10**9))):
            provider = ScrapeProvider(ScrapeSettings(**demo_gate.SCRAPE), clock=lambda: now[0])
            outcome = run_bake(provider, hosts[:1], hosts[1:], cfg,
                               clock=lambda: now[0], sleep=sleep)
            wall = _gate_wall_time(hosts, cfg)
            print(f"gate overhead per wave, {label}: {len(outcome.looks)} look(s), {wall:.3f} s wall "
                  f"(HTTP reads of 6 hosts + judge), judge CPU {outcome.judge_seconds * 1000:.1f} ms")
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _gate_wall_time(hosts: list, config: JudgeConfig) -> float:
    """Wall time of the same bake with a real clock for the gate's work and no real waiting."""
    from lrelease.apm.scrape import ScrapeProvider, ScrapeSettings
    from lrelease.sandbox.demoapp import gate as demo_gate
    from lrelease.gate.bake import run_bake

    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    def sleep(seconds: float) -> None:
        offset[0] += seconds

    outcome = run_bake(ScrapeProvider(ScrapeSettings(**demo_gate.SCRAPE), clock=clock), hosts[:1], hosts[1:], config,
                       clock=clock, sleep=sleep)
    return outcome.gate_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--decisions", type=int, default=600,
                        help="per scenario and build (default 600; 0 skips this block)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, help="one custom regime: requests per host per minute")
    parser.add_argument("--p0", type=float, help="one custom regime: normal 5xx rate")
    parser.add_argument("--host-cv", type=float, default=Traffic.host_error_cv,
                        help="persistent host-to-host differences in error rate and latency (CV)")
    parser.add_argument("--max-bake", type=int, default=30, help="maximum bake, minutes")
    parser.add_argument("--interval", type=int, default=3, help="minutes between looks (the first after one interval)")
    parser.add_argument("--scenarios", default="", help="comma-separated scenario numbers (1-3), default all")
    parser.add_argument("--small-decisions", type=int, default=600,
                        help="per row of the small-reference block (1 vs 2, 2 vs 1, 1 vs 1 at phi 1-3, busy service or "
                             "the custom regime); 0 skips it")
    parser.add_argument("--skip-overhead", action="store_true", help="do not measure the gate's cost on loopback")
    args = parser.parse_args(argv)
    config = JudgeConfig(bake_seconds=60 * args.interval, max_bake_seconds=60 * args.max_bake,
                         interval_seconds=60 * args.interval)
    scenarios = [SCENARIOS[int(i) - 1] for i in args.scenarios.split(",") if i] or list(SCENARIOS)
    regimes = list(REGIMES)
    if args.rate is not None or args.p0 is not None:
        regimes = [("custom", Traffic(rate=args.rate or Traffic.rate, p0=args.p0 or Traffic.p0))]
    rng = random.Random(args.seed)
    started = time.perf_counter()
    cpu_total, count, worst = 0.0, 0, 0.0
    for title, traffic in regimes if args.decisions > 0 else ():
        traffic = Traffic(**{**traffic.__dict__, "host_error_cv": args.host_cv, "host_latency_cv": args.host_cv})
        cpu, n, w = run_block(title, traffic, config, args.decisions, args.interval, scenarios, rng)
        cpu_total, count, worst = cpu_total + cpu, count + n, max(worst, w)
    if args.small_decisions > 0:
        busy = Traffic(**{**regimes[0][1].__dict__, "host_error_cv": args.host_cv, "host_latency_cv": args.host_cv})
        cpu, n, w = run_small_block(busy, config, args.small_decisions, args.interval, rng)
        cpu_total, count, worst = cpu_total + cpu, count + n, max(worst, w)
    print("\nhalts = fail (rolled back) + inconcl (paused for a human at the maximum bake); target: power for bad "
          "builds, false-halt rate for good ones; ok/-- = target met or not.")
    print(f"judge CPU per wave (all its looks): {cpu_total / count * 1000:.2f} ms on average, {worst * 1000:.2f} ms "
          f"at worst, over {count} simulated decisions in {time.perf_counter() - started:.0f} s")
    if not args.skip_overhead:
        measure_gate_overhead(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
