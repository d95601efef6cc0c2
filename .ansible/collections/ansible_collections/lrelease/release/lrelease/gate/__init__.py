"""Health gates: after a host takes a build, decide whether it may keep it.

A gate decider is a function ``(GateRequest) -> GateResult``. The Ansible action plugin
``lrelease_gate`` (lrelease/ansible/action) only parses its task arguments, calls ``evaluate``
and returns the result, so the playbooks keep the hook point while the decision lives here.
This stage ships the ``http`` decider (the app's /health, see ``health``) and ``port`` (does the
app accept connections; the switch waits for it after a restart); the APM-statistics
gate registers another decider under its own name without touching the playbooks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from lrelease.errors import ConfigError


class Verdict(str, Enum):
    """What a gate concluded about one host."""

    PASS = "pass"
    FAIL = "fail"
    # Reserved for statistical gates that cannot decide (too little traffic): the roll-out halts.
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class GateRequest:
    """One host to judge. ``params`` carries decider-specific settings (e.g. ``expect_status``)."""

    host: str
    url: str
    bake_seconds: float = 0.0
    timeout: float = 30.0
    interval: float = 1.0
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"gate for {self.host}"
        for key in ("bake_seconds", "timeout"):
            if getattr(self, key) < 0:
                raise ConfigError(where, key, f"a number of seconds >= 0, got {getattr(self, key)}")
        if self.interval <= 0:
            raise ConfigError(where, "interval", f"a number of seconds > 0, got {self.interval}")


@dataclass(frozen=True)
class GateResult:
    """The verdict and the evidence it rests on (JSON-friendly; shown to humans and stored)."""

    verdict: Verdict
    evidence: Mapping[str, Any]
    reason: str

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "reason": self.reason, "evidence": dict(self.evidence)}


Decider = Callable[[GateRequest], GateResult]


def _http(request: GateRequest) -> GateResult:
    from lrelease.gate import health  # imported lazily: requests is only needed when used

    return health.decide(request)


def _port(request: GateRequest) -> GateResult:
    from lrelease.gate import health

    return health.decide_port(request)


_DECIDERS: dict[str, Decider] = {"http": _http, "port": _port}
DECIDERS: Mapping[str, Decider] = MappingProxyType(_DECIDERS)


def register(kind: str, decider: Decider) -> None:
    """Make ``decider`` available to ``lrelease_gate`` as ``kind``."""
    _DECIDERS[kind] = decider


def evaluate(request: GateRequest, kind: str = "http") -> GateResult:
    """Judge one host with the decider registered as ``kind``."""
    try:
        decider = _DECIDERS[kind]
    except KeyError:
        raise ConfigError("lrelease gate", "kind", f"one of {', '.join(sorted(_DECIDERS))}, got {kind!r}") from None
    return decider(request)
