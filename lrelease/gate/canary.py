"""The ``apm`` gate decider: the hosts just switched against the hosts still on the old build.

The action plugin gives it, per host of a wave: the host itself (the canary), the hosts of the
play that have not switched yet (the reference, a free control group measured over the same
minutes), the moment the wave started, and the ``gate:`` settings. With no reference left (the
last wave) the canary is compared with its own window before the switch; with fewer than
``FEW_REFERENCE_HOSTS`` reference hosts, that window (of every host) joins the dispersion
estimate. The window never reaches back past the end of the environment's previous roll-out
(``past_since``): a build rolled back minutes ago is not the old build. The bake loop, the statistics and the policy live in ``bake`` and ``judge``; this
module only wires them up.

After a halt, ``resume`` hands the host's halted judgement back (``continue``: when its bake
started, when the host switched, its reference hosts, the evidence it had, the wave): the
judgement goes on from the readings kept, provided the reference hosts are the same and the
provider sees no restart since (``scrape``: every host's process start time; providers with
history count restarts like PromQL's ``increase``). Otherwise it starts from zero and says why.
The last wave's baseline is always the window before the host's first switch, never before
the resume (the host already served the new build then).

One judgement per wave (``lrelease.gate.wave``): given the wave's hosts (``wave``, in play
order) and a ``board``, the task of the wave's first host judges every host of the wave
(``bake.run_wave_bake``) and leaves each other host's result on the board; their tasks return it
as their own. Without them (or with a halted judgement to go on with) a task judges its host alone.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lrelease import secrets
from lrelease.apm import HostRef, Provider, Window, make_provider
from lrelease.errors import ConfigError, ExitCode, LreleaseError
from lrelease.gate import GateRequest, GateResult, Verdict, register
from lrelease.gate.bake import BakeOutcome, run_bake, run_wave_bake
from lrelease.gate.judge import FEW_REFERENCE_HOSTS
from lrelease.gate.judge_config import JudgeConfig
from lrelease.gate.settings import GateSettings
from lrelease.gate.wave import GRACE_SECONDS, WaveBoard

BASELINE_MIN_SECONDS = 60.0


def _host(data: Any) -> HostRef:
    return HostRef(name=str(data["name"]), url=str(data.get("url", "")), query_name=str(data.get("query_name", "")))


def decide(request: GateRequest) -> GateResult:
    params = request.params
    settings = GateSettings.from_vars(params["apm"])
    where = "lrelease gate (lrelease_gate_apm)"
    judge = settings.judge_config(where)
    canary = [_host(params["canary"])]
    reference = [_host(r) for r in params.get("reference", [])]
    halted = _halted(params.get("continue"), canary[0].name)
    wave = [_host(h) for h in params.get("wave") or []]
    board = None
    if len(wave) > 1 and halted is None and params.get("board"):
        # One judgement per wave (lrelease.gate.wave): the first host's task judges them all;
        # the others only wait for their result (no provider, no readings).
        board = WaveBoard(params["board"], str(params.get("run", "")), [h.name for h in wave],
                          [h.name for h in reference])
        if wave[0].name != canary[0].name:
            found = board.take(canary[0].name, time.time() + judge.max_bake_seconds + GRACE_SECONDS)
            if found is not None:
                return _from_board(found, wave[0].name)
            board = None  # nobody judged the wave (its first host's task died): judge this host alone
    if board is not None:
        return _judge_wave(board, wave, params, settings, reference)[canary[0].name]
    provider, health = _providers(settings, params)
    switched_at = float((halted or {}).get("switched_at") or params.get("switched_at") or time.time())
    baseline = _baseline(switched_at, reference, judge, params)
    since, continued = _continuation(halted, provider, canary, reference)
    outcome = run_bake(provider, canary, reference, judge, baseline=baseline, health=health, since=since)
    return _result(outcome, settings, reference, switched_at, continued, baseline)


def _providers(settings: GateSettings, params: Mapping[str, Any]) -> tuple[Provider, Provider]:
    """The APM provider, and the health check's (the hard check of every look)."""
    where = "lrelease gate (lrelease_gate_apm)"
    provider = make_provider(settings.provider, settings.provider_settings, where=where)
    health = make_provider("http", {"path": params.get("health_path", "/health"), **params.get("health_check", {})},
                           where=where)
    return provider, health


def _baseline(switched_at: float, reference: list[HostRef], judge: JudgeConfig, params: Mapping[str, Any]) -> Window | None:
    if len(reference) >= FEW_REFERENCE_HOSTS:
        return None
    return past_window(switched_at, max(BASELINE_MIN_SECONDS, judge.max_bake_seconds), params.get("past_since"))


def _result(outcome: BakeOutcome, settings: GateSettings, reference: list[HostRef], switched_at: float,
            continued: dict[str, Any] | None = None, baseline: Window | None = None) -> GateResult:
    result = outcome.to_gate_result()
    evidence = dict(result.evidence)
    evidence.update(provider=settings.provider, reference=[h.name for h in reference],
                    compared_with="peers" if reference else "baseline", switched_at=round(switched_at, 3))
    reason = result.reason
    if baseline is not None:  # the hosts' own past the judge was given (the last wave's baseline, or dispersion)
        evidence["before_switch"] = {"from": round(baseline.start, 3), "to": round(baseline.end, 3)}
        if not reference and result.verdict is Verdict.INCONCLUSIVE:
            # It starts no earlier than the host's last change of build: say how much past that left.
            reason += f" (its own past: the {baseline.seconds:.0f} s before the switch)"
    if continued is not None:
        if outcome.continued_from is not None:
            continued["note"] += f" (+{max(0.0, outcome.continued_from - continued['evidence_seconds']):.0f} s while halted)"
        evidence["continued"] = continued
        reason = f"{continued['note']}: {reason}"
    return GateResult(result.verdict, evidence, reason)


def _judge_wave(board: WaveBoard, wave: list[HostRef], params: Mapping[str, Any], settings: GateSettings,
                reference: list[HostRef]) -> dict[str, GateResult]:
    """Judge every host of the wave (each on its own, against the same reference); publish each
    other host's result as soon as it is decided. A failure is published to the hosts still
    waiting, so their tasks fail with it at once."""
    judge = settings.judge_config("lrelease gate (lrelease_gate_apm)")
    me, now = wave[0].name, time.time()
    switched: dict[str, float] = {}
    results: dict[str, GateResult] = {}

    def decided(host: str, outcome: BakeOutcome) -> None:
        results[host] = _result(outcome, settings, reference, switched[host], baseline=baselines[host])
        if host != me:  # scrubbed as the plugin scrubs a result: nothing secret reaches the file
            board.publish(host, secrets.scrub_data(results[host].to_dict()))

    try:
        for h in params["wave"]:
            switched[str(h["name"])] = _seconds(h.get("switched_at") or params.get("switched_at") or now, h["name"])
        baselines = {h.name: _baseline(switched[h.name], reference, judge, params) for h in wave}
        provider, health = _providers(settings, params)
        run_wave_bake(provider, wave, reference, judge, health=health, on_decided=decided, baselines=baselines)
    except BaseException as exc:
        for host in wave[1:]:
            if host.name not in results:
                board.publish(host.name, {"error": secrets.scrub(
                    f"the gate of {me}, judging wave {', '.join(h.name for h in wave)}, failed: {exc}")})
        raise
    return results


def _seconds(value: Any, host: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError("lrelease gate", f"lrelease_wave_started_at of {host}",
                          f"seconds since the epoch, got {value!r}") from None


def _from_board(data: Mapping[str, Any], judged_by: str) -> GateResult:
    if "error" in data:
        raise GateWaveError(str(data["error"]))
    try:
        return GateResult(Verdict(data["verdict"]), dict(data["evidence"]), str(data["reason"]))
    except (KeyError, TypeError, ValueError):
        raise GateWaveError(f"the gate of {judged_by} left a result that is not one: {data!r}") from None


class GateWaveError(LreleaseError):
    """The task judging the wave failed; this host's task reports it."""

    exit_code = ExitCode.HALTED


def past_window(switched_at: float, span: float, since: Any = None) -> Window | None:
    """The window before the switch that stands for the hosts' old build: ``span`` seconds, but
    never reaching back past ``since`` (``lrelease_gate_past_since``: when an earlier roll-out of
    the environment last changed a host — its minutes may hold a build since rolled back, whose
    errors or latency would read as dispersion and blind the judge). None when nothing is left."""
    start = switched_at - span
    if since is not None:
        try:
            start = max(start, float(since))
        except (TypeError, ValueError):
            raise ConfigError("lrelease gate", "lrelease_gate_past_since", f"seconds since the epoch, got {since!r}") from None
    return Window(start, switched_at) if switched_at - start >= 1.0 else None


def _halted(data: Any, host: str) -> dict[str, Any] | None:
    """The host's halted judgement as handed back by a resume (extra var lrelease_gate_continue)."""
    if not data:
        return None
    where = "lrelease_gate_continue"
    if not isinstance(data, dict):
        raise ConfigError(where, host, f"a mapping (started_at, switched_at, reference, seconds, wave), got {data!r}")
    try:
        return {"started_at": float(data["started_at"]), "switched_at": float(data.get("switched_at") or 0) or None,
                "reference": sorted(str(h) for h in data.get("reference") or []),
                "seconds": float(data.get("seconds") or 0), "wave": data.get("wave"), "rollout": data.get("rollout")}
    except (KeyError, TypeError, ValueError):
        raise ConfigError(where, host, f"numbers for started_at, switched_at and seconds, got {data!r}") from None


def _continuation(halted: dict[str, Any] | None, provider: Provider, canary: list[HostRef],
                  reference: list[HostRef]) -> tuple[float | None, dict[str, Any] | None]:
    """Whether the halted judgement can go on: (its start, what the evidence says about it), or
    (None, why it starts from zero), or (None, None) when there is none."""
    if halted is None:
        return None, None
    wave = halted["wave"] if halted["wave"] is not None else "?"
    info: dict[str, Any] = {"wave": halted["wave"], "from_rollout": halted["rollout"],
                            "started_at": halted["started_at"], "evidence_seconds": halted["seconds"]}
    now = sorted(h.name for h in reference)
    why = None
    if halted["reference"] != now:
        why = (f"its reference hosts changed ({', '.join(halted['reference']) or 'none'} then, "
               f"{', '.join(now) or 'none'} now)")
    else:
        check = getattr(provider, "continuable", None)  # providers with history need no check
        why = check([*canary, *reference], halted["started_at"]) if check is not None else None
    if why:
        info.update(continued=False, note=f"judging wave {wave} from zero: {why}")
        return None, info
    info.update(continued=True, note=f"continuing the judgement of wave {wave} from {halted['seconds']:.0f} s of evidence")
    return halted["started_at"], info


register("apm", decide)
