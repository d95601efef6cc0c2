"""One wave's bake: wait, look, judge; repeat until Pass, Fail or the maximum bake.

``run_bake`` is the loop the gate runs after a wave switched: take a reading of every host
(``provider.mark``; only ``scrape`` needs it), wait ``bake_seconds``, then every
``interval_seconds`` fetch the window since the start and ``judge`` it. Pass or Fail ends the
bake; Inconclusive keeps baking up to ``max_bake_seconds``, then the policy decides: ``halt``
(pause for a human, exit 5, every host stays on a complete build) or ``rollback``. A provider
error (Prometheus stopped, keys refused) makes that look Inconclusive — never a pass.

The reference hosts' per-look increments are handed to the judge too (they sharpen its
dispersion estimate). With no reference hosts left (the last wave), ``baseline`` is a window
before these hosts' switch; it is fetched once, in about ``baseline_slices`` slices (so the
judge can see how much the traffic varies from slice to slice; ``scrape`` cuts them at the
readings it kept), and the canary is compared with itself then. With reference hosts but fewer
than ``FEW_REFERENCE_HOSTS``, the same window's slices of every host (canary and reference, all
still on the old build then) are handed to the judge for its dispersion estimate only. Clock
and sleep are injectable: tests run a whole bake in no time.

A judgement a halt left Inconclusive can go on (``since``: when its bake started): its window
still starts then, so the evidence already gathered counts, and the first look comes at once.
The continued judgement has its own planned looks (a new bake of ``max_bake_seconds``) and
spends ``alpha`` and ``beta`` over them afresh, as a judgement started from zero would — but
on all the evidence instead of a fresh window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from lrelease.apm import (
    HostMetrics,
    HostRef,
    Provider,
    ProviderError,
    Window,
    combine,
    increase_between,
    past_slices,
)
from lrelease.gate import GateResult, Verdict
from lrelease.gate.judge import FEW_REFERENCE_HOSTS, CheckResult, Judgement, judge
from lrelease.gate.judge_config import JudgeConfig

BASELINE_SLICES = 10  # the last wave's baseline is judged as this many slices of time (its units)


class Step(str, Enum):
    """What the roll-out does after a look."""

    PASS = "pass"  # the wave may stay; go on
    ROLLBACK = "rollback"  # put the wave back on the previous build (exit 1 once done)
    WAIT = "wait"  # keep baking and look again
    HALT = "halt"  # stop and pause for a human (exit 5)


def next_step(judgement: Judgement, look: int, config: JudgeConfig) -> Step:
    if judgement.verdict is Verdict.PASS:
        return Step.PASS
    if judgement.verdict is Verdict.FAIL:
        return Step.ROLLBACK
    if look < config.max_looks:
        return Step.WAIT
    return Step.ROLLBACK if config.policy == "rollback" else Step.HALT


@dataclass(frozen=True)
class BakeOutcome:
    step: Step
    verdict: Verdict
    reason: str
    looks: tuple[Judgement, ...]
    elapsed: float  # wall seconds from start to decision, bake included
    gate_seconds: float  # wall seconds spent fetching and judging (what the gate adds to the bake)
    judge_seconds: float  # CPU seconds inside the judge alone
    started_at: float = 0.0  # when the evidence begins (the bake's start, or the continued one's)
    evidence_seconds: float = 0.0  # the window judged last: from started_at to the decision
    continued_from: float | None = None  # seconds of evidence already there when a halted judgement went on

    def to_gate_result(self) -> GateResult:
        last = self.looks[-1].to_dict() if self.looks else {}
        evidence: dict[str, Any] = {
            "gate": "apm", "step": self.step.value, "looks": len(self.looks), "elapsed": round(self.elapsed, 3),
            "gate_seconds": round(self.gate_seconds, 4), "judge_seconds": round(self.judge_seconds, 4),
            "started_at": round(self.started_at, 3), "evidence_seconds": round(self.evidence_seconds, 1),
            "last": last, "history": [{"verdict": j.verdict.value, "reason": j.reason} for j in self.looks]}
        return GateResult(self.verdict, evidence, self.reason)


def run_bake(provider: Provider, canary: Sequence[HostRef], reference: Sequence[HostRef], config: JudgeConfig, *,
             baseline: Window | None = None, baseline_slices: int = BASELINE_SLICES, health: Provider | None = None,
             clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
             on_look: Callable[[int, Judgement], None] | None = None, since: float | None = None) -> BakeOutcome:
    """Bake one wave and decide. ``canary``: the hosts just switched; ``reference``: hosts still
    on the old build (may be empty; then ``baseline`` is needed for comparisons; with a few of
    them, ``baseline`` adds every host's own past to the dispersion estimate). ``since``: go on
    with a halted judgement whose bake started then (its readings kept, its hosts unchanged:
    the caller checks that); the first look comes at once, over the window from ``since``."""
    begun = clock()
    started = begun if since is None else min(since, begun)
    first_due = started + config.bake_seconds if since is None else begun
    busy = _Stopwatch(clock)
    with busy:
        provider.mark([*canary, *reference])
    looker = _Looker(provider, canary, reference, config, baseline, baseline_slices, health)
    looks: list[Judgement] = []
    for look in range(1, config.max_looks + 1):
        due = first_due + (look - 1) * config.interval_seconds
        _wait(due, provider, [*canary, *reference], clock, sleep)
        with busy:
            judgement = looker.look(look, Window(started, max(clock(), started)))
        looks.append(judgement)
        if on_look is not None:
            on_look(look, judgement)
        step = next_step(judgement, look, config)
        if step is Step.WAIT:
            continue
        verdict = {Step.PASS: Verdict.PASS, Step.ROLLBACK: Verdict.FAIL, Step.HALT: Verdict.INCONCLUSIVE}[step]
        reason = judgement.reason
        end = clock()
        if judgement.verdict is Verdict.INCONCLUSIVE:
            after = f"{config.max_bake_seconds:g}s" if since is None else f"{end - started:.0f}s of evidence"
            reason = f"still inconclusive after {after} (policy {config.policy}): {reason}"
        return BakeOutcome(step, verdict, reason, tuple(looks), end - begun, busy.total, looker.judge_cpu,
                           started_at=started, evidence_seconds=end - started,
                           continued_from=None if since is None else begun - started)
    raise AssertionError("unreachable: the last look always decides")  # pragma: no cover


def _wait(due: float, provider: Provider, hosts: Sequence[HostRef], clock: Callable[[], float],
          sleep: Callable[[float], None]) -> None:
    """Sleep until ``due``. A provider that only knows what it reads (``scrape``, with its
    ``sample_seconds``) reads every host on that cadence meanwhile, as a metrics server would
    scrape: the readings become the time slices of a later wave's baseline."""
    every = float(getattr(provider, "sample_seconds", 0) or 0)
    while True:
        left = due - clock()
        if left <= 0:
            return
        if every <= 0 or left <= every:
            sleep(left)
            return
        sleep(every)
        provider.mark(hosts)


class _Stopwatch:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock, self.total, self._t0 = clock, 0.0, 0.0

    def __enter__(self) -> None:
        self._t0 = self.clock()

    def __exit__(self, *exc: object) -> None:
        self.total += self.clock() - self._t0


class _Looker:
    """Fetches what one look needs and judges it; remembers the previous look's reference
    totals (for per-look increments) and the baseline (fetched once)."""

    def __init__(self, provider: Provider, canary: Sequence[HostRef], reference: Sequence[HostRef],
                 config: JudgeConfig, baseline: Window | None, baseline_slices: int, health: Provider | None):
        self.provider, self.canary, self.reference, self.config = provider, canary, reference, config
        self.baseline, self.baseline_slices, self.health = baseline, max(1, baseline_slices), health
        self.previous: dict[str, HostMetrics] = {}
        self.slices: list[dict[str, HostMetrics]] = []
        self.baseline_units: dict[str, HostMetrics] | None = None
        self.past: list[dict[str, HostMetrics]] | None = None
        self.slice_seconds = 0.0  # mean length of the baseline's slices
        self.judge_cpu = 0.0

    def look(self, look: int, window: Window) -> Judgement:
        try:
            checked = self.health.fetch(self.canary, window) if self.health is not None else {}
            fetched = self.provider.fetch([*self.canary, *self.reference], window)
            canary = {h.name: fetched[h.name] for h in self.canary}
            kind, units, past = "peers", None, []
            reference: Mapping[str, HostMetrics] = {h.name: fetched[h.name] for h in self.reference}
            if self.reference:
                self._slice(dict(reference))
                past = self._past()
            elif self.baseline is not None:
                reference, kind = self._baseline(), "baseline"
                units = window.seconds / self.slice_seconds if self.slice_seconds else None
        except ProviderError as exc:
            check = CheckResult("provider", Verdict.INCONCLUSIVE, str(exc),
                                {"provider": exc.provider, "status": exc.status})
            return Judgement(Verdict.INCONCLUSIVE, f"inconclusive: {exc}", (check,),
                             {"look": look, "max_looks": self.config.max_looks})
        cpu0 = time.process_time()
        judgement = judge(canary, reference, self.config, look=look, reference_kind=kind, health=checked,
                          reference_slices=self.slices, canary_units=units, past_slices=past)
        self.judge_cpu += time.process_time() - cpu0
        return judgement

    def _slice(self, totals: dict[str, HostMetrics]) -> None:
        if self.previous:
            self.slices.append({h: increase_between(self.previous[h], m) for h, m in totals.items() if h in self.previous})
        else:
            self.slices.append(totals)  # the first look's increment is its total
        self.previous = totals

    def _past(self) -> list[dict[str, HostMetrics]]:
        """With few reference hosts: every host in slices of the window before the switch, all on
        the old build then (fetched once; if the provider fails, this look goes without). Not
        needed when the dispersion is configured."""
        if self.baseline is None or self.config.dispersion is not None or len(self.reference) >= FEW_REFERENCE_HOSTS:
            return []
        if self.past is None:
            hosts = [*self.canary, *self.reference]
            try:
                self.past = [dict(self.provider.fetch(hosts, part))
                             for part in past_slices(self.provider, hosts, self.baseline, self.baseline_slices)]
            except ProviderError:
                return []
        return self.past

    def _baseline(self) -> dict[str, HostMetrics]:
        """The canary hosts before their switch, one unit per slice (fetched once; a slice with
        no data is left to the judge, which does not count it)."""
        if self.baseline_units is None:
            assert self.baseline is not None
            parts = past_slices(self.provider, self.canary, self.baseline, self.baseline_slices)
            units = {}
            for i, part in enumerate(parts):
                fetched = self.provider.fetch(self.canary, part)
                units[f"baseline@{i}"] = combine(f"baseline@{i}", [fetched[h.name] for h in self.canary])
            self.baseline_units = units
            self.slice_seconds = sum(p.seconds for p in parts) / len(parts) if parts else 0.0
        return self.baseline_units
