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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WaveSpec = int | str
_PCT_RE = re.compile(r"([0-9]{1,3})%\Z")  # whole string (fullmatch): no "50%\n"
MAX_WAVE = 10_000  # hosts in one wave given as a count


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


def plan_waves(hosts: Sequence[str], waves: Sequence[WaveSpec]) -> Plan:
    """Split ``hosts`` (in inventory order, canary first) into waves from a ``serial`` list.

    An empty ``waves`` means one wave with every host, as in Ansible. Raises ValueError for a
    value :func:`check_wave` refuses.
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
    return Plan(spec=spec, fleet_size=total, waves=_make_waves(batches, total, 0))


def skip_done(plan: Plan, done_hosts: Iterable[str]) -> Plan:
    """The plan for a resume: hosts already on the target build leave their waves, empty
    waves are dropped and the rest are renumbered. Done hosts count as switched (they serve
    the new build), so capacity figures stay true. Hosts not in the plan are ignored."""
    done = set(done_hosts) | set(plan.done)
    batches = [[h for h in wave.hosts if h not in done] for wave in plan.waves]
    batches = [b for b in batches if b]
    skipped = tuple(h for h in (*plan.done, *plan.hosts) if h in done)
    return Plan(spec=plan.spec, fleet_size=plan.fleet_size,
                waves=_make_waves(batches, plan.fleet_size, len(skipped)), done=skipped)


# Defaults measured on the sandbox (pipelining + ControlPersist); override per call.
DEFAULT_SWITCH_SECONDS = 4.0
DEFAULT_STAGE_SECONDS = 15.0
DEFAULT_FORKS = 24  # ansible.cfg


def estimate_seconds(plan: Plan, bake_seconds: float, *,
                     per_host_switch_seconds: float = DEFAULT_SWITCH_SECONDS,
                     stage_seconds: float = DEFAULT_STAGE_SECONDS,
                     forks: int = DEFAULT_FORKS) -> float:
    """A rough duration for showing before a roll-out, not a promise.

    ``stage_seconds`` once (staging runs on all hosts in parallel before any switch), then per
    wave: the switch (hosts of a wave run in parallel, ``forks`` at a time, so
    ``per_host_switch_seconds * ceil(size / forks)``) plus ``bake_seconds`` before the gate
    decides. An empty plan takes 0 seconds.
    """
    if not plan.waves:
        return 0.0
    if forks < 1:
        raise ValueError("forks must be >= 1")
    switching = sum(per_host_switch_seconds * math.ceil(w.size / forks) for w in plan.waves)
    return float(stage_seconds + switching + bake_seconds * len(plan.waves))
