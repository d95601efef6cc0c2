"""The ``apm`` gate decider: the hosts just switched against the hosts still on the old build.

The action plugin gives it, per host of a wave: the host itself (the canary), the hosts of the
play that have not switched yet (the reference, a free control group measured over the same
minutes), the moment the wave started, and the ``gate:`` settings. With no reference left (the
last wave) the canary is compared with its own window before the switch; with fewer than
``FEW_REFERENCE_HOSTS`` reference hosts, that window (of every host) joins the dispersion
estimate. The bake loop, the statistics and the policy live in ``bake`` and ``judge``; this
module only wires them up.
"""

from __future__ import annotations

import time
from typing import Any

from lrelease.apm import HostRef, Window, make_provider
from lrelease.gate import GateRequest, GateResult, register
from lrelease.gate.bake import run_bake
from lrelease.gate.judge import FEW_REFERENCE_HOSTS
from lrelease.gate.settings import GateSettings

BASELINE_MIN_SECONDS = 60.0


def _host(data: Any) -> HostRef:
    return HostRef(name=str(data["name"]), url=str(data.get("url", "")), query_name=str(data.get("query_name", "")))


def decide(request: GateRequest) -> GateResult:
    params = request.params
    settings = GateSettings.from_vars(params["apm"])
    where = "lrelease gate (lrelease_gate_apm)"
    judge = settings.judge_config(where)
    provider = make_provider(settings.provider, settings.provider_settings, where=where)
    health = make_provider("http", {"path": params.get("health_path", "/health")}, where=where)
    canary = [_host(params["canary"])]
    reference = [_host(r) for r in params.get("reference", [])]
    baseline = None
    if len(reference) < FEW_REFERENCE_HOSTS:
        switched_at = float(params.get("switched_at") or time.time())
        span = max(BASELINE_MIN_SECONDS, judge.max_bake_seconds)
        baseline = Window(switched_at - span, switched_at)
    outcome = run_bake(provider, canary, reference, judge, baseline=baseline, health=health)
    result = outcome.to_gate_result()
    evidence = dict(result.evidence)
    evidence.update(provider=settings.provider, reference=[h.name for h in reference],
                    compared_with="peers" if reference else "baseline")
    return GateResult(result.verdict, evidence, result.reason)


register("apm", decide)
