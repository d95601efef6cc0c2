"""Waves: which hosts switch together, how much capacity stays on the old build, how long.

Pure functions, no I/O. :func:`plan_waves` reproduces Ansible's ``serial`` batching exactly
(``PlaybookExecutor._get_serialized_batches`` in ansible-core): each value is either a host
count or ``"N%"`` of the *total* host count (rounded down, at least 1), and the last value
repeats until every host has a wave. The playbooks get the same ``serial`` list, so the plan
shown before a roll-out is the batching Ansible will do.

A plan changed after the fact (:func:`skip_done` on resume) no longer follows from the
original ``serial`` list; :attr:`Plan.serial` gives explicit wave sizes that make Ansible
batch exactly as planned, given the same host order (the generated inventories keep it).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

WaveSpec = int | str
_PCT_RE = re.compile(r"([0-9]{1,3})%\Z")  # whole string (fullmatch): no "50%\n"
MAX_WAVE = 10_000  # hosts in one wave given as a count
PAUSE = "pause"  # in a wave list: the roll-out awaits promotion there (a marker between waves, not a wave)


def check_wave(value: object) -> WaveSpec:
    """Return ``value`` if it is an int from 1 to MAX_WAVE or a string ``"N%"`` with N from 1 to 100.

    Ansible also accepts 0 or negative ("all remaining hosts"); lrelease refuses them so a
    typo cannot turn a careful roll-out into one big wave. Raises ValueError otherwise.
    """
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WAVE:
        return value
    if isinstance(value, str):
        match = _PCT_RE.fullmatch(value)
        if match and 1 <= int(match.group(1)) <= 100:
            return value
    raise ValueError(f'an integer from 1 to {MAX_WAVE} or a percentage "1%" to "100%"')


def split_pauses(values: Sequence[object]) -> tuple[tuple[WaveSpec, ...], tuple[int, ...]]:
    """``[1, "pause", "50%", "100%"]`` -> the ``serial`` values ``(1, "50%", "100%")`` and the
    waves after which the roll-out pauses ``(1,)``. A pause stands between two waves: not first,
    not last (the last value repeats: no wave boundary is known after it), never two in a row.
    The values themselves are checked by :func:`check_wave`."""
    waves: list[WaveSpec] = []
    pauses: list[int] = []
    for i, value in enumerate(values):
        if value == PAUSE:
            if not waves or i == len(values) - 1 or values[i + 1] == PAUSE:
                raise ValueError("a pause stands between two waves (not first, not last, never two in a row)")
            pauses.append(len(waves))
        else:
            waves.append(value)  # type: ignore[arg-type]
    return tuple(waves), tuple(pauses)


def wave_size(spec: WaveSpec, total: int) -> int:
    """Hosts in a wave for one ``serial`` value (Ansible's ``pct_to_int``, minimum 1)."""
    if isinstance(spec, str):
        return int((int(spec[:-1]) / 100.0) * total) or 1
    return int(spec)


@dataclass(frozen=True)
class Wave:
    """One batch: these hosts switch together, then the gate runs on them."""

    index: int  # 1-based, in order
    hosts: tuple[str, ...]
    switched_before: int  # hosts of the fleet already on the new build when this wave starts
    in_service_after: int  # hosts still on the old build, serving, while this wave switches
    in_service_pct: float  # the same as a percentage of fleet capacity (one share per host)

    @property
    def size(self) -> int:
        return len(self.hosts)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "hosts": list(self.hosts),
            "size": self.size,
            "switched_before": self.switched_before,
            "in_service_after": self.in_service_after,
            "in_service_pct": self.in_service_pct,
        }


@dataclass(frozen=True)
class Plan:
    """The waves of one roll-out over ``fleet_size`` hosts, ``done`` of which are skipped."""

    spec: tuple[WaveSpec, ...]  # the serial list the plan was made from
    fleet_size: int
    waves: tuple[Wave, ...]
    done: tuple[str, ...] = ()  # hosts already on the target build (resume), not in any wave
    pauses: tuple[int, ...] = ()  # after these waves (their index) the roll-out awaits promotion

    @property
    def hosts(self) -> tuple[str, ...]:
        """Hosts to switch, in switching order."""
        return tuple(h for wave in self.waves for h in wave.hosts)

    @property
    def serial(self) -> tuple[int, ...]:
        """Wave sizes as a ``serial`` list that reproduces this plan exactly in Ansible."""
        return tuple(wave.size for wave in self.waves)

    def to_dict(self) -> dict:
        """JSON-ready; keys are stable (the CLI's ``--json`` output carries them)."""
        return {
            "spec": list(self.spec),
            "serial": list(self.serial),
            "fleet_size": self.fleet_size,
            "hosts": list(self.hosts),
            "done": list(self.done),
            "waves": [wave.to_dict() for wave in self.waves],
            "pauses": list(self.pauses),
        }


def _dedupe(hosts: Iterable[str]) -> list[str]:
    """Keep the first of each host, as Ansible's unique host list does."""
    return list(dict.fromkeys(hosts))


def _make_waves(batches: Sequence[Sequence[str]], fleet_size: int, already: int) -> tuple[Wave, ...]:
    waves = []
    switched = already
    for i, batch in enumerate(batches, start=1):
        remaining = fleet_size - switched - len(batch)
        pct = round(100.0 * remaining / fleet_size, 1) if fleet_size else 0.0
        waves.append(Wave(i, tuple(batch), switched, remaining, pct))
        switched += len(batch)
    return tuple(waves)


def plan_waves(hosts: Sequence[str], waves: Sequence[WaveSpec], pauses: Sequence[int] = ()) -> Plan:
    """Split ``hosts`` (in inventory order, canary first) into waves from a ``serial`` list.

    An empty ``waves`` means one wave with every host, as in Ansible. Raises ValueError for a
    value :func:`check_wave` refuses. ``pauses``: after which waves the roll-out awaits
    promotion (:func:`split_pauses`); one after the last wave (a small fleet) is dropped.
    """
    spec = tuple(waves)
    for value in spec:
        try:
            check_wave(value)
        except ValueError as exc:
            raise ValueError(f"wave {value!r}: expected {exc}") from None
    todo = _dedupe(hosts)
    total = len(todo)
    batches: list[list[str]] = []
    values = spec or ("100%",)
    item = 0
    while todo:
        size = wave_size(values[item], total)
        batches.append(todo[:size])
        del todo[:size]
        item = min(item + 1, len(values) - 1)
    kept = tuple(sorted({p for p in pauses if 1 <= p < len(batches)}))
    return Plan(spec=spec, fleet_size=total, waves=_make_waves(batches, total, 0), pauses=kept)


def skip_done(plan: Plan, done_hosts: Iterable[str]) -> Plan:
    """The plan for a resume: hosts already on the target build leave their waves, empty
    waves are dropped and the rest are renumbered. Done hosts count as switched (they serve
    the new build), so capacity figures stay true. Hosts not in the plan are ignored. A pause
    after waves that are all done is behind the roll-out (the one a promotion goes on from):
    dropped; the others follow their wave's new number."""
    done = set(done_hosts) | set(plan.done)
    batches = [[h for h in wave.hosts if h not in done] for wave in plan.waves]
    left = [sum(1 for b in batches[:p] if b) for p in plan.pauses]  # the waves left up to each pause
    batches = [b for b in batches if b]
    skipped = tuple(h for h in (*plan.done, *plan.hosts) if h in done)
    pauses = tuple(sorted({n for n in left if 1 <= n < len(batches)}))
    return Plan(spec=plan.spec, fleet_size=plan.fleet_size,
                waves=_make_waves(batches, plan.fleet_size, len(skipped)), done=skipped, pauses=pauses)


# Defaults measured on the sandbox (pipelining + ControlPersist); override per call.
DEFAULT_SWITCH_SECONDS = 4.0
DEFAULT_STAGE_SECONDS = 15.0
DEFAULT_FORKS = 24  # ansible.cfg
DEFAULT_LOOK_SECONDS = 1.0  # the gate task's own start-up and one look's fetch and judgement


@dataclass(frozen=True)
class GateTiming:
    """What the gate of each wave costs in time, from an environment's settings.

    ``kind`` ``http``: the gate bakes the environment's ``bake_seconds``, then polls the health
    endpoint until it answers (``timeout_seconds`` at most). ``apm`` (a ``gate:`` section): the
    APM gate's ``bake_seconds`` applies, not the environment's (the environment's is only its
    default, when ``gate:`` does not set one); the first look comes after that bake, then one
    every ``interval_seconds`` while the verdict is Inconclusive, up to ``max_bake_seconds``.
    How many looks a wave usually takes depends on the traffic: ``expected_looks`` is the mean of
    the gates recorded for the environment, ``look_seconds`` what a look costs. With nothing
    recorded it is the middle of what can happen, (1 + max_looks) / 2: a busy service's gate
    decides at its first look, a quiet one's may look until the maximum bake, and nothing yet says
    which this is. A wave of several hosts lasts until its slowest gate decides, so its looks are
    the expected *largest* of that many draws from the recorded looks (``looks_for``), not their
    mean. ``looks_range`` bounds what the recorded gates did (fewest to most looks; 1 to
    ``max_looks`` with nothing recorded): the range a roll-out usually lands in.
    """

    kind: str  # http | apm
    bake_seconds: float  # the bake that applies
    bake_from: str  # which setting it comes from, as shown to users
    timeout_seconds: float = 0.0  # http: how long the health endpoint may take after the bake
    interval_seconds: float = 0.0  # apm: between looks
    max_bake_seconds: float = 0.0  # apm: Inconclusive until then, then the policy applies
    max_looks: int = 1
    provider: str = ""  # apm: scrape, prometheus, ...
    policy: str = ""  # apm: halt | rollback
    health_path: str = ""  # the path polled (http), checked at every look (apm)
    expected_looks: float = 1.0  # apm: looks a wave usually takes (1 .. max_looks)
    look_seconds: float = DEFAULT_LOOK_SECONDS  # the gate's own work per look: fetch and judge
    looks_from: int = 0  # how many recorded gates expected_looks and look_seconds come from
    looks_seen: tuple[int, ...] = ()  # apm: the recorded gates' looks (each 1 .. max_looks)

    @classmethod
    def for_environment(cls, env: Any, history: Sequence[tuple[int, float]] = ()) -> GateTiming:
        """From an ``EnvironmentConfig`` (duck-typed: this module imports no config) and, for the
        APM gate, the recent gates of the environment: (looks, seconds of gate work) each."""
        gate = getattr(env, "gate", None)
        if gate is None:
            return cls("http", float(env.bake_seconds), "bake_seconds", timeout_seconds=float(env.gate_timeout_seconds),
                       health_path=str(env.health_path))
        if getattr(gate, "kind", "apm") == "health":  # gate: {provider: http}: the health check, the gate's bake
            return cls("http", float(gate.bake_seconds), "gate.bake_seconds", timeout_seconds=float(env.gate_timeout_seconds),
                       health_path=str(env.health_path))
        judge = gate.judge_config()
        own = float(judge.bake_seconds) != float(env.bake_seconds)
        bake_from = "gate.bake_seconds" if own else "bake_seconds (gate.bake_seconds unset or equal)"
        looks, work = (1.0 + int(judge.max_looks)) / 2, DEFAULT_LOOK_SECONDS
        past = [(n, s) for n, s in history if n >= 1 and math.isfinite(s) and s >= 0]
        if past:
            looks = min(max(sum(n for n, _ in past) / len(past), 1.0), float(judge.max_looks))
            work = sum(s for _, s in past) / sum(n for n, _ in past)
        return cls("apm", float(judge.bake_seconds), bake_from, interval_seconds=float(judge.interval_seconds),
                   max_bake_seconds=float(judge.max_bake_seconds), max_looks=int(judge.max_looks),
                   provider=str(gate.provider), policy=str(judge.policy), health_path=str(env.health_path),
                   expected_looks=looks, look_seconds=work, looks_from=len(past),
                   looks_seen=tuple(min(max(int(n), 1), int(judge.max_looks)) for n, _ in past))

    def looks_for(self, hosts: int = 1) -> float:
        """The looks a wave of ``hosts`` gates (side by side) usually takes: the expected largest of
        ``hosts`` draws from the recorded looks' empirical distribution F, sum of x (F(x)^k -
        F(x-1)^k); the mean for one host; ``expected_looks`` when nothing is recorded."""
        if not self.looks_seen or hosts <= 1:
            return self.expected_looks
        n, below, expected = len(self.looks_seen), 0.0, 0.0
        for x in range(1, max(self.looks_seen) + 1):
            at_most = sum(1 for v in self.looks_seen if v <= x) / n
            expected += x * (at_most ** hosts - below ** hosts)
            below = at_most
        return expected

    @property
    def looks_range(self) -> tuple[int, int]:
        """The fewest and the most looks a gate took in the recorded gates (1 and ``max_looks`` when
        none is recorded; 1 and 1 for the health check)."""
        if self.kind != "apm":
            return 1, 1
        if not self.looks_seen:
            return 1, self.max_looks
        return min(self.looks_seen), max(self.looks_seen)

    def wave_seconds(self, hosts: int = 1, looks: float | None = None) -> float:
        """The gate's usual time for a wave of ``hosts``: the bake, then the looks its slowest gate
        usually takes (or ``looks``). Looks are due at fixed times from the gate's start (bake,
        bake + interval, ...), so only the last one's own work adds to them."""
        if self.kind == "apm":
            looks = self.looks_for(hosts) if looks is None else looks
            return self.bake_seconds + (looks - 1) * self.interval_seconds + self.look_seconds
        return self.bake_seconds + self.look_seconds

    def wave_max_seconds(self) -> float:
        """The gate's longest time per wave: every look taken (apm), or the whole timeout (http)."""
        if self.kind == "apm":
            return self.max_bake_seconds + self.look_seconds
        return self.bake_seconds + self.timeout_seconds + self.look_seconds

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bake_seconds": self.bake_seconds, "bake_from": self.bake_from,
                "timeout_seconds": self.timeout_seconds, "interval_seconds": self.interval_seconds,
                "max_bake_seconds": self.max_bake_seconds, "max_looks": self.max_looks,
                "provider": self.provider, "policy": self.policy, "health_path": self.health_path,
                "expected_looks": self.expected_looks, "look_seconds": self.look_seconds,
                "looks_from": self.looks_from, "looks_range": list(self.looks_range)}


@dataclass(frozen=True)
class Pace:
    """How long the work around the gates takes: staging (from the roll-out's start to its last
    host staged) and, per wave, everything but the gate's own bake and looks (drain, switch,
    restart, checks, the gate task's start, a share of the cleanup). Defaults measured on the
    sandbox; :meth:`from_runs` learns both from the roll-outs recorded for an environment (the
    median of the last few), so the estimate follows the fleet and the machine it runs on."""

    stage_seconds: float = DEFAULT_STAGE_SECONDS
    switch_seconds: float = DEFAULT_SWITCH_SECONDS  # per wave of up to ``forks`` hosts
    runs: int = 0  # recorded roll-outs it comes from (0: the defaults)

    @classmethod
    def from_runs(cls, runs: Iterable[Mapping[str, Any]]) -> Pace:
        """``runs``: per succeeded roll-out, ``started_at``, ``finished_at``, ``staged_at`` (ISO
        8601) and ``gate_seconds`` ({wave: the longest gate's elapsed seconds}); a run that does
        not add up is skipped."""
        stages, waves = [], []
        for run in runs:
            try:
                start, end, staged = (datetime.fromisoformat(str(run[k])).timestamp()
                                      for k in ("started_at", "finished_at", "staged_at"))
                gates = [float(v) for v in dict(run["gate_seconds"]).values()]
            except (KeyError, TypeError, ValueError):
                continue
            rest = end - staged - sum(gates)
            if not gates or staged < start or rest < 0 or not all(map(math.isfinite, gates)):
                continue
            stages.append(staged - start)
            waves.append(rest / len(gates))
        if not stages:
            return cls()
        return cls(statistics.median(stages), statistics.median(waves), len(stages))

    def to_dict(self) -> dict:
        return {"stage_seconds": self.stage_seconds, "switch_seconds": self.switch_seconds, "runs": self.runs}


@dataclass(frozen=True)
class Estimate:
    """A roll-out's expected duration (each gate taking its usual looks), the range it usually lands
    in (every gate taking the fewest, or the most, looks recorded: ``GateTiming.looks_range``) and
    its longest (every gate looking until its maximum bake), with each wave's share; seconds."""

    seconds: float
    max_seconds: float
    stage_seconds: float
    waves: tuple[float, ...]  # expected seconds of each wave: its switch and its gate
    gate: GateTiming
    pace: Pace = Pace()
    low_seconds: float = 0.0
    high_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"estimate_seconds": self.seconds, "estimate_low_seconds": self.low_seconds,
                "estimate_high_seconds": self.high_seconds, "estimate_max_seconds": self.max_seconds,
                "estimate_stage_seconds": self.stage_seconds, "estimate_wave_seconds": list(self.waves),
                "gate": self.gate.to_dict(), "pace": self.pace.to_dict()}


def estimate(plan: Plan, gate: GateTiming, pace: Pace = Pace(), *, forks: int = DEFAULT_FORKS) -> Estimate:
    """A rough duration for showing before a roll-out, not a promise.

    Staging once (it runs on all hosts in parallel before any switch), then per wave: the work
    around its gate (:class:`Pace`; hosts of a wave run in parallel, ``forks`` at a time, so
    ``switch_seconds * ceil(size / forks)``) plus the gate (:class:`GateTiming`: its bake and the
    looks its slowest host usually takes; at most every look up to the maximum bake). The gates of
    a wave's hosts run side by side. An empty plan takes 0 seconds.
    """
    if forks < 1:
        raise ValueError("forks must be >= 1")
    if not plan.waves:
        return Estimate(0.0, 0.0, 0.0, (), gate, pace)
    switching = [pace.switch_seconds * math.ceil(w.size / forks) for w in plan.waves]
    waves = tuple(float(s + gate.wave_seconds(w.size)) for s, w in zip(switching, plan.waves))
    longest = sum(s + gate.wave_max_seconds() for s in switching)
    stage = float(pace.stage_seconds)
    fewest, most = gate.looks_range
    low = stage + sum(s + gate.wave_seconds(w.size, fewest) for s, w in zip(switching, plan.waves))
    high = stage + sum(s + gate.wave_seconds(w.size, most) for s, w in zip(switching, plan.waves))
    return Estimate(stage + sum(waves), stage + longest, stage, waves, gate, pace, low, high)


def estimate_seconds(plan: Plan, bake_seconds: float, *,
                     per_host_switch_seconds: float = DEFAULT_SWITCH_SECONDS,
                     stage_seconds: float = DEFAULT_STAGE_SECONDS,
                     forks: int = DEFAULT_FORKS) -> float:
    """The expected duration with a plain bake of ``bake_seconds`` per wave and no gate work
    (:func:`estimate` is the full model)."""
    gate = GateTiming("http", float(bake_seconds), "bake_seconds", look_seconds=0.0)
    return estimate(plan, gate, Pace(stage_seconds, per_host_switch_seconds), forks=forks).seconds
