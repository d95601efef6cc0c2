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

``run_wave_bake`` bakes a whole wave at once and decides for each of its hosts on its own — what
``run_bake`` would decide for that host alone — with each look's fetch, reference increments and
the judge's reference side done once for the wave (the gate's one judgement per wave:
``lrelease.gate.wave``).

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
    looked = None if on_look is None else (lambda _unit, look, judgement: on_look(look, judgement))
    return _bake(provider, {"": list(canary)}, reference, config, baselines={"": baseline},
                 baseline_slices=baseline_slices, health=health, clock=clock, sleep=sleep, on_look=looked,
                 since=since)[""]


def run_wave_bake(provider: Provider, canaries: Sequence[HostRef], reference: Sequence[HostRef], config: JudgeConfig,
                  *, baselines: Mapping[str, Window | None] | None = None, baseline_slices: int = BASELINE_SLICES,
                  health: Provider | None = None, clock: Callable[[], float] = time.time,
                  sleep: Callable[[float], None] = time.sleep,
                  on_look: Callable[[str, int, Judgement], None] | None = None,
                  on_decided: Callable[[str, BakeOutcome], None] | None = None) -> dict[str, BakeOutcome]:
    """Bake one wave and decide for each of its canary hosts on its own — the verdict
    ``run_bake([host], reference, ...)`` would give it — with the work of a look done once for
    the wave: one mark and one sampler for all its hosts, one health check and one fetch of the
    canaries and the reference per look, the reference's increments and the judge's reference
    side (its sums, pooled latency and dispersion estimates: ``judge(shared=...)``) once per
    look. ``baselines``: each canary's own window before its switch (see ``run_bake``'s
    ``baseline``). A host is judged until its verdict is final; ``on_decided(host, outcome)``
    tells as soon as it is (the gate hands it to that host's task); the bake goes on while any
    host of the wave is undecided."""
    baselines = baselines or {}
    return _bake(provider, {h.name: [h] for h in canaries}, reference, config,
                 baselines={h.name: baselines.get(h.name) for h in canaries}, baseline_slices=baseline_slices,
                 health=health, clock=clock, sleep=sleep, on_look=on_look, on_decided=on_decided)


def _bake(provider: Provider, units: Mapping[str, list[HostRef]], reference: Sequence[HostRef], config: JudgeConfig,
          *, baselines: Mapping[str, Window | None], baseline_slices: int, health: Provider | None,
          clock: Callable[[], float], sleep: Callable[[float], None],
          on_look: Callable[[str, int, Judgement], None] | None = None,
          on_decided: Callable[[str, BakeOutcome], None] | None = None,
          since: float | None = None) -> dict[str, BakeOutcome]:
    """The bake loop for one or more units of canary hosts (each judged on its own, its hosts
    pooled) against one reference."""
    begun = clock()
    started = begun if since is None else min(since, begun)
    first_due = started + config.bake_seconds if since is None else begun
    busy = _Stopwatch(clock)
    every_host = [h for unit in units.values() for h in unit]
    with busy:
        provider.mark([*every_host, *reference])
    shared = _SharedLook(provider, reference, health)
    lookers = {name: _Looker(shared, unit, config, baselines.get(name), baseline_slices)
               for name, unit in units.items()}
    looks: dict[str, list[Judgement]] = {name: [] for name in units}
    outcomes: dict[str, BakeOutcome] = {}
    for look in range(1, config.max_looks + 1):
        due = first_due + (look - 1) * config.interval_seconds
        undecided = [name for name in units if name not in outcomes]
        hosts = [h for name in undecided for h in units[name]]
        _wait(due, provider, [*hosts, *reference], clock, sleep)
        with busy:
            window = Window(started, max(clock(), started))
            shared.look(window, hosts)
            judged = {name: lookers[name].look(look, window) for name in undecided}
        for name, judgement in judged.items():
            looks[name].append(judgement)
            if on_look is not None:
                on_look(name, look, judgement)
            step = next_step(judgement, look, config)
            if step is Step.WAIT:
                continue
            verdict = {Step.PASS: Verdict.PASS, Step.ROLLBACK: Verdict.FAIL, Step.HALT: Verdict.INCONCLUSIVE}[step]
            reason = judgement.reason
            end = clock()
            if judgement.verdict is Verdict.INCONCLUSIVE:
                after = f"{config.max_bake_seconds:g}s" if since is None else f"{end - started:.0f}s of evidence"
                reason = f"still inconclusive after {after} (policy {config.policy}): {reason}"
            outcomes[name] = BakeOutcome(step, verdict, reason, tuple(looks[name]), end - begun, busy.total,
                                         lookers[name].judge_cpu, started_at=started, evidence_seconds=end - started,
                                         continued_from=None if since is None else begun - started)
            if on_decided is not None:
                on_decided(name, outcomes[name])
        if len(outcomes) == len(units):
            return outcomes
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


class _SharedLook:
    """What every unit of a bake shares at a look: one health check of the canary hosts still
    judged, one fetch of them and the reference, the reference's per-look increments (for the
    dispersion estimate) and the judge's reference side (``judge(shared=...)``, peers only)."""

    def __init__(self, provider: Provider, reference: Sequence[HostRef], health: Provider | None):
        self.provider, self.reference, self.health = provider, reference, health
        self.previous: dict[str, HostMetrics] = {}
        self.slices: list[dict[str, HostMetrics]] = []
        self.checked: Mapping[str, HostMetrics] = {}
        self.fetched: Mapping[str, HostMetrics] = {}
        self.error: ProviderError | None = None
        self.judge_memo: dict[str, Any] = {}

    def look(self, window: Window, canary: Sequence[HostRef]) -> None:
        self.error, self.judge_memo = None, {}
        try:
            self.checked = self.health.fetch(canary, window) if self.health is not None else {}
            self.fetched = self.provider.fetch([*canary, *self.reference], window)
            if self.reference:
                self._slice({h.name: self.fetched[h.name] for h in self.reference})
        except ProviderError as exc:
            self.error = exc

    def _slice(self, totals: dict[str, HostMetrics]) -> None:
        if self.previous:
            self.slices.append({h: increase_between(self.previous[h], m) for h, m in totals.items() if h in self.previous})
        else:
            self.slices.append(totals)  # the first look's increment is its total
        self.previous = totals


class _Looker:
    """Judges one unit (canary hosts pooled) at each look from what the look fetched; keeps the
    baseline (fetched once) and, with few reference hosts, every host's past."""

    def __init__(self, shared: _SharedLook, canary: Sequence[HostRef], config: JudgeConfig,
                 baseline: Window | None, baseline_slices: int):
        self.shared, self.provider, self.canary, self.reference = shared, shared.provider, canary, shared.reference
        self.config, self.baseline, self.baseline_slices = config, baseline, max(1, baseline_slices)
        self.baseline_units: dict[str, HostMetrics] | None = None
        self.past: list[dict[str, HostMetrics]] | None = None
        self.slice_seconds = 0.0  # mean length of the baseline's slices
        self.judge_cpu = 0.0

    def look(self, look: int, window: Window) -> Judgement:
        shared = self.shared
        try:
            if shared.error is not None:
                raise shared.error
            checked = {h.name: shared.checked[h.name] for h in self.canary if h.name in shared.checked}
            canary = {h.name: shared.fetched[h.name] for h in self.canary}
            kind, units, past = "peers", None, []
            reference: Mapping[str, HostMetrics] = {h.name: shared.fetched[h.name] for h in self.reference}
            if self.reference:
                past = self._past()
            elif self.baseline is not None:
                reference, kind = self._baseline(), "baseline"
                units = window.seconds / self.slice_seconds if self.slice_seconds else None
        except ProviderError as exc:
            check = CheckResult("provider", Verdict.INCONCLUSIVE, str(exc),
                                {"provider": exc.provider, "status": exc.status})
            return Judgement(Verdict.INCONCLUSIVE, f"inconclusive: {exc}", (check,),
                             {"look": look, "max_looks": self.config.max_looks})
        # The reference side is the same for every unit of the look unless each has its own past.
        memo = shared.judge_memo if kind == "peers" and not past else None
        cpu0 = time.process_time()
        judgement = judge(canary, reference, self.config, look=look, reference_kind=kind, health=checked,
                          reference_slices=shared.slices, canary_units=units, past_slices=past, shared=memo)
        self.judge_cpu += time.process_time() - cpu0
        return judgement

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
