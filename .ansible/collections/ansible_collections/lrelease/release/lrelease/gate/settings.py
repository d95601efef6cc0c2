"""The ``gate:`` section of an environment in lrelease.yml: which APM provider and how to judge.

    gate:
      provider: scrape                 # scrape | prometheus | datadog | newrelic | http (see lrelease.apm)
      # provider: {kind: prometheus, url: "http://127.0.0.1:9090"}   # kind + its settings
      bake_seconds: 20                 # ... and every other key of the judge (judge_config.py)
      policy: halt

Without a ``gate:`` section the gate only checks the app's health endpoint. ``provider: http``
says so explicitly: the health-only gate (kind ``health``), with the environment's ``health:``
check (no settings of its own) after the gate's ``bake_seconds`` (the only other key it takes).
Any other provider is the APM gate (kind ``apm``); its section travels to the playbooks as the
extra var ``lrelease_gate_apm`` (a plain mapping, no secrets: providers name the environment
variables that hold them), so AWX gets the same gate as the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lrelease.apm import PROVIDERS, make_provider
from lrelease.gate.judge_config import JudgeConfig
from lrelease.schema import Checker, join


class _AnySecret(dict):
    """Stands in for the environment while checking settings: every variable "exists", so the
    structure is checked at load time and the secrets themselves only when the gate runs."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return "placeholder"

    def get(self, key: str, default: Any = None) -> str:
        return "placeholder"


@dataclass(frozen=True)
class GateSettings:
    provider: str
    provider_settings: Mapping[str, Any]
    judge: Mapping[str, Any]  # as written; JudgeConfig.from_mapping(judge) when used

    @property
    def kind(self) -> str:
        """The playbooks' gate kind (extra var ``lrelease_gate_kind``): ``health`` for the
        ``http`` provider (the health check only), ``apm`` for the others."""
        return "health" if self.provider == "http" else "apm"

    @property
    def bake_seconds(self) -> float:
        return float(self.judge["bake_seconds"])

    def judge_config(self, where: str = "lrelease gate") -> JudgeConfig:
        return JudgeConfig.from_mapping(self.judge, where)

    def to_vars(self) -> dict[str, Any]:
        return {"provider": self.provider, "provider_settings": dict(self.provider_settings), "judge": dict(self.judge)}

    @classmethod
    def from_vars(cls, data: Mapping[str, Any]) -> GateSettings:
        return cls(str(data["provider"]), dict(data.get("provider_settings") or {}), dict(data.get("judge") or {}))


def parse_gate(check: Checker, value: Any, key: str, *, default_bake: float) -> GateSettings:
    """Validate a ``gate:`` mapping (every error names the file and the key)."""
    data = dict(check.mapping(value, key, example="{provider: scrape, bake_seconds: 20}"))
    raw = data.pop("provider", "scrape")
    if isinstance(raw, str):
        kind, settings = raw, {}
    else:
        provider = dict(check.mapping(raw, join(key, "provider"), example="{kind: prometheus, url: ...}"))
        kind, settings = provider.pop("kind", None), provider
    if kind not in PROVIDERS:
        check.fail(join(key, "provider"), f"one of {', '.join(PROVIDERS)}, got {kind!r}")
    data.setdefault("bake_seconds", default_bake)
    if kind == "http":
        return _health_only(check, key, settings, data)
    make_provider(kind, settings, where=f"{check.where}: {join(key, 'provider')}", env=_AnySecret())
    JudgeConfig.from_mapping(data, check.where, key)
    return GateSettings(kind, settings, data)


def _health_only(check: Checker, key: str, settings: dict[str, Any], data: dict[str, Any]) -> GateSettings:
    """``provider: http``: the environment's ``health:`` check after ``bake_seconds``; nothing else."""
    for name in settings:
        check.fail(join(join(key, "provider"), name), "no settings with kind http: it checks the environment's "
                                                      "health: (path, port, expect_status, body_json, body_contains)")
    for name in data:
        if name != "bake_seconds":
            check.fail(join(key, name), "not a setting of the http gate (it judges health only: provider, "
                                        "bake_seconds); the APM providers take the judge's settings")
    bake = check.number(data["bake_seconds"], join(key, "bake_seconds"))
    return GateSettings("http", {}, {"bake_seconds": bake})
