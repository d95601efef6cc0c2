"""The statistical judge: is the just-switched canary worse than the hosts still on the old build?

``judge(canary, reference, config, look=k)`` returns Pass, Fail or Inconclusive, per check and
overall, with the evidence (counts, rates, ratio, p-values, dispersion). The reference is the
hosts not yet switched, measured over the same minutes (so a global traffic change cancels
out) or, for the last wave, the same hosts' window before their switch (``reference_kind=
"baseline"``). The order of business:

1. **Hard checks** — a canary host unreachable or its health endpoint failing: Fail at once.
2. **Errors** — Fail when the canary's 5xx rate is *significantly* above
   ``max(margin x reference, reference + floor)``; Pass when a rate of
   ``max(detect_ratio x reference, reference + floor)`` is *significantly* ruled out; otherwise
   Inconclusive (keep baking). When the ratio dominates, the test is the exact conditional
   test for two Poisson rates (given the total errors, the canary's share is binomial with
   ``p = rho n_c / (rho n_c + n_ref)``); when the absolute floor dominates (rare errors), a
   one-sample exact binomial test against the reference rate plus the floor.
   Overdispersion: counts from real hosts vary more than Poisson (host differences, bursts);
   every count is divided by a factor ``phi`` estimated from the reference units before the
   exact test (quasi-likelihood effective counts; see ``dispersion``: never below 1, moderated
   towards 1 by a Poisson prior when it rests on few degrees of freedom, and with fewer than
   ``FEW_REFERENCE_HOSTS`` reference hosts also measured on every host's own past).
3. **Latency** — the same three-way logic on the tail: with ``Q`` the reference's quantile
   (p95), Fail when significantly more than 5% of canary requests are slower than
   ``max(Q (1 + margin), Q + floor)``; Pass when significantly fewer than 5% are slower than
   ``max(Q (1 + detect), Q + floor)``: an exact one-sample test on the count of slow requests
   (binomial, or negative binomial when the reference hosts' tail counts are overdispersed),
   read from the histogram with a log-normal shape inside each bucket (``apm.latency``). A
   Mann-Whitney rank test is reported alongside (and decides with ``method: mannwhitney``).
4. **Plain thresholds** (``max_rate``, ``max_ms``) alone or with the comparison: Pass at or
   under the threshold, Fail when significantly over, else Inconclusive.

Repeated looks: look k of M runs its Fail test at ``alpha * w_k`` and its Pass test at
``beta * w_k`` with ``w_k = k / (M (M + 1) / 2)`` — a Bonferroni split over the planned looks,
weighted by the data each has seen — so over the whole bake a good build fails with
probability <= alpha per check, and a build at the detectable regression passes with
probability <= beta, however often the gate looked.
Not enough traffic (fewer than ``min_requests``, or too few errors to rule anything out) is
Inconclusive: the caller extends the bake, then applies the policy — never a silent pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lrelease.apm import HostMetrics
from lrelease.apm.latency import INF, Latency, cumulative_at, pool
from lrelease.gate import GateResult, Verdict
from lrelease.gate.dispersion import PRIOR_DF, Dispersion, estimate
from lrelease.gate.judge_config import ErrorCheck, JudgeConfig, LatencyCheck
from lrelease.gate.stats import (
    binom_cdf,
    binom_sf,
    mann_whitney_buckets,
    negbin_cdf,
    negbin_sf,
)

FEW_REFERENCE_HOSTS = 10  # fewer reference hosts than this: every host's own past joins the dispersion estimate
# The Poisson prior's weight for baseline time slices: half the hosts' (PRIOR_DF). A slice's spread
# includes what every host shares at that time, which is real and not Poisson, so its data may
# speak sooner; read alone (no prior), six slices of little traffic once said phi 2.4 and halted a
# good build. bench/gate_simulation.py: the last wave's false halts and power (docs/apm-gate.md).
BASELINE_PRIOR_DF = 5.0
SHAPE = "lognormal"  # within-bucket model for decisions (see apm.latency); evidence also shows PromQL's linear
_ORDER = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.FAIL: 2}
Part = tuple[Verdict, str]
T = TypeVar("T")


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    return max(verdicts, key=_ORDER.__getitem__, default=Verdict.PASS)


@dataclass(frozen=True)
class CheckResult:
    check: str  # "health", "traffic", "provider", "errors", "latency"
    verdict: Verdict
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "verdict": self.verdict.value, "reason": self.reason,
                "evidence": dict(self.evidence)}


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    checks: tuple[CheckResult, ...]
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "reason": self.reason,
                "checks": [c.to_dict() for c in self.checks], **dict(self.evidence)}

    def to_gate_result(self) -> GateResult:
        return GateResult(self.verdict, self.to_dict(), self.reason)


@dataclass(frozen=True)
class _Setup:
    """What every test of one look shares."""

    config: JudgeConfig
    alpha: float  # this look's Fail level
    beta: float  # this look's Pass level
    canary_units: float  # reference-unit equivalents in the canary total (hosts, or baseline slices)
    prior_df: float = PRIOR_DF  # the Poisson prior's weight in the dispersion estimate (less for time slices)


def judge(canary: Mapping[str, HostMetrics], reference: Mapping[str, HostMetrics], config: JudgeConfig, *,
          look: int = 1, reference_kind: str = "peers", health: Mapping[str, HostMetrics] | None = None,
          reference_slices: Sequence[Mapping[str, HostMetrics]] = (),
          canary_units: float | None = None,
          past_slices: Sequence[Mapping[str, HostMetrics]] = (),
          shared: dict[str, Any] | None = None) -> Judgement:
    """Judge the canary hosts (pooled) against the reference units at look ``look`` (1-based).

    ``canary`` and ``reference`` hold totals since the bake started; the reference is the hosts
    not yet switched (``reference_kind="peers"``) or the canary hosts' own time slices before the
    switch (``"baseline"``, one unit per slice). ``reference_slices`` optionally holds the
    reference hosts' per-look increments (``apm.increase_between``); they sharpen the dispersion
    estimate. ``canary_units``: how many reference-sized units the canary total spans (default:
    its host count for peers, ``look`` for one-look-long baseline slices). ``health`` adds
    hard-check results per canary host. ``past_slices``: with few reference hosts, the canary
    hosts' and the reference hosts' own time slices before the switch (every host on the old
    build, one entry per host), which join the dispersion estimate only — the comparison stays
    against the reference over the same minutes.

    ``shared``: a dict the caller keeps for one look and hands to the judgement of every canary
    of a wave judged against the same ``reference``, ``reference_slices``, ``past_slices``,
    ``reference_kind`` and ``config``: what depends on the reference alone (its evidence, sums,
    pooled latency, dispersion estimates) is computed by the first judgement and reused by the
    others — the same numbers, once per look instead of once per canary."""
    alpha, beta = config.alpha_at(look), config.beta_at(look)
    evidence: dict[str, Any] = {
        "look": look, "max_looks": config.max_looks, "alpha_this_look": _p(alpha), "beta_this_look": _p(beta),
        "reference": reference_kind,
        "canary_hosts": {h: m.to_dict() for h, m in canary.items()},
        "reference_hosts": _memo(shared, "reference_hosts", lambda: {h: m.to_dict() for h, m in reference.items()}),
    }
    hard = _hard_checks(canary, health or {})
    if hard is not None:
        return Judgement(Verdict.FAIL, hard.reason, (hard,), evidence)
    blind = [h for h, m in canary.items() if m.no_data]
    if not canary or blind:
        details = "; ".join(f"{h}: {canary[h].detail or 'no data'}" for h in blind) or "no canary hosts"
        check = CheckResult("traffic", Verdict.INCONCLUSIVE, f"no data for canary host(s): {details}")
        return Judgement(Verdict.INCONCLUSIVE, check.reason, (check,), evidence)
    usable, slices, excluded, described = _memo(shared, "reference", lambda: _reference_side(
        reference, reference_kind, reference_slices, past_slices))
    evidence["reference_excluded"] = excluded
    evidence["dispersion_reference"] = described
    units = canary_units or (float(len(canary)) if reference_kind == "peers" else float(max(look, 1)))
    # Baseline units are time slices; their moderation is weaker (BASELINE_PRIOR_DF).
    setup = _Setup(config, alpha, beta, units, BASELINE_PRIOR_DF if reference_kind == "baseline" else PRIOR_DF)
    checks: list[CheckResult] = []
    if config.errors is not None:
        checks.append(check_errors(list(canary.values()), usable, config.errors, setup, slices, shared))
    if config.latency is not None:
        checks.append(check_latency(list(canary.values()), usable, config.latency, setup, slices, shared))
    verdict = worst(c.verdict for c in checks)
    reason = "; ".join(f"{c.check}: {c.reason}" for c in checks if c.verdict is verdict)
    return Judgement(verdict, f"{verdict.value}: {reason}", tuple(checks), evidence)


def _memo(shared: dict[str, Any] | None, key: str, make: Callable[[], T]) -> T:
    """``make()``, kept in ``shared`` under ``key`` for the next canary of the same look (or
    computed afresh without ``shared``)."""
    if shared is None:
        return make()
    if key not in shared:
        shared[key] = make()
    return shared[key]


def _reference_side(reference: Mapping[str, HostMetrics], kind: str,
                    reference_slices: Sequence[Mapping[str, HostMetrics]],
                    past_slices: Sequence[Mapping[str, HostMetrics]]) -> tuple[list[HostMetrics], list[list[HostMetrics]], list[str], str]:
    """The usable reference units, the usable units of every slice, the excluded hosts and the
    words for where the dispersion comes from."""
    usable = [m for m in reference.values() if not m.no_data and m.reachable]
    slices = [[m for m in part.values() if not m.no_data and m.reachable] for part in [*past_slices, *reference_slices]]
    excluded = sorted(h for h, m in reference.items() if m.no_data or not m.reachable)
    return usable, slices, excluded, _dispersion_reference(kind, len(usable), len(reference_slices), past_slices)


def _dispersion_reference(kind: str, units: int, looks: int, past: Sequence[Mapping[str, HostMetrics]]) -> str:
    """Which units the dispersion was estimated from, in words (the comparison's reference is ``kind``)."""
    what = f"{units} baseline slices" if kind == "baseline" else f"{units} reference host(s)"
    if looks:
        what += f" and their increments over {looks} look(s)"
    if past:
        hosts = sorted({h for part in past for h in part})
        what += (f", plus {len(past)} slices before the switch of {len(hosts)} host(s) on the old build "
                 f"({', '.join(hosts)})")
    return what


def _hard_checks(canary: Mapping[str, HostMetrics], health: Mapping[str, HostMetrics]) -> CheckResult | None:
    problems: list[str] = []
    for host in sorted(set(canary) | set(health)):
        for metrics in (canary.get(host), health.get(host)):
            if metrics is None:
                continue
            if not metrics.reachable:
                problems.append(f"{host} is unreachable ({metrics.detail or 'no answer'})")
            elif metrics.health is not None and metrics.health.failing:
                problems.append(f"{host} health check fails ({metrics.health.detail})")
    if not problems:
        return None
    problems = list(dict.fromkeys(problems))
    return CheckResult("health", Verdict.FAIL, "; ".join(problems), {"problems": problems})


def _combine(check: str, parts: list[Part], ev: dict[str, Any]) -> CheckResult:
    verdict = worst(v for v, _ in parts)
    return CheckResult(check, verdict, "; ".join(t for v, t in parts if v is verdict), ev)


# -- errors --------------------------------------------------------------------------------
def check_errors(canary: list[HostMetrics], reference: list[HostMetrics], cfg: ErrorCheck, setup: _Setup,
                 slices: Sequence[list[HostMetrics]] = (), shared: dict[str, Any] | None = None) -> CheckResult:
    config = setup.config
    n_c, x_c = sum(m.requests for m in canary), sum(m.errors for m in canary)
    n_r, x_r = _memo(shared, "errors.sums", lambda: (sum(m.requests for m in reference),
                                                     sum(m.errors for m in reference)))
    ev: dict[str, Any] = {"canary_requests": _r(n_c), "canary_errors": _r(x_c),
                          "canary_rate": _r(x_c / n_c, 6) if n_c else None}
    if n_c < config.min_requests:
        return CheckResult("errors", Verdict.INCONCLUSIVE,
                           f"not enough traffic: {n_c:.0f} canary requests of the {config.min_requests} needed", ev)
    parts: list[Part] = []
    disp = Dispersion(phi=config.dispersion, how="configured") if config.dispersion else Dispersion()
    if cfg.compare:
        rate = x_r / n_r if n_r else 0.0
        disp = _memo(shared, "errors.dispersion", lambda: estimate(
            [m.errors for m in reference], [m.requests for m in reference], rate,
            [[(m.errors, m.requests) for m in part] for part in slices], config.dispersion, setup.prior_df))
        ev.update({"reference_requests": _r(n_r), "reference_errors": _r(x_r), "reference_rate": _r(rate, 6),
                   "dispersion": disp.to_dict()})
        if n_r < config.min_requests:
            parts.append((Verdict.INCONCLUSIVE,
                          f"not enough reference traffic: {n_r:.0f} requests of the {config.min_requests} needed"))
        else:
            parts.append(_compare_rates(x_c, n_c, x_r, n_r, disp, cfg, setup, ev))
    if cfg.max_rate is not None:
        parts.append(_rate_threshold(x_c, n_c, disp, cfg.max_rate, setup, ev))
    return _combine("errors", parts, ev)


def _compare_rates(x_c: float, n_c: float, x_r: float, n_r: float, disp: Dispersion, cfg: ErrorCheck,
                   setup: _Setup, ev: dict[str, Any]) -> Part:
    rate_c, rate_r = x_c / n_c, x_r / n_r
    ev["ratio"] = _r(rate_c / rate_r, 4) if rate_r > 0 else None
    if x_c > 0 and x_r > 0:  # a 95% interval of the ratio for humans (log scale, dispersion-inflated)
        half = 1.96 * math.sqrt(disp.phi * (1 / x_c + 1 / x_r))
        ev["ratio_ci95"] = [_r(rate_c / rate_r * math.exp(-half), 4), _r(rate_c / rate_r * math.exp(half), 4)]
    unit = n_c / setup.canary_units
    p_fail, fail_at, fail_test = _rate_tail(x_c, n_c, x_r, n_r, disp, unit, cfg.margin, cfg.floor,
                                            upper=True)
    p_pass, pass_at, pass_test = _rate_tail(x_c, n_c, x_r, n_r, disp, unit, cfg.detect_ratio, cfg.floor,
                                            upper=False)
    ev.update({"fail_above_rate": _r(fail_at, 6), "p_fail": _p(p_fail), "fail_test": fail_test,
               "pass_below_rate": _r(pass_at, 6), "p_pass": _p(p_pass), "pass_test": pass_test})
    shown = f"{rate_c:.3%} vs {rate_r:.3%} on the reference"
    if p_fail < setup.alpha:
        return Verdict.FAIL, f"error rate {shown}: significantly above {fail_at:.3%} (p={p_fail:.2g})"
    if p_pass < setup.beta:
        return Verdict.PASS, f"error rate {shown}: {pass_at:.3%} or worse ruled out (p={p_pass:.2g})"
    return Verdict.INCONCLUSIVE, (f"error rate {shown}: not yet enough errors to tell "
                                  f"(fail p={p_fail:.2g} vs {setup.alpha:.2g}, pass p={p_pass:.2g} vs {setup.beta:.2g})")


def _rate_tail(x_c: float, n_c: float, x_r: float, n_r: float, disp: Dispersion, unit: float,
               ratio: float, floor: float, *, upper: bool) -> tuple[float, float, str]:
    """Tail probability of the canary's errors if its rate were the boundary max(ratio*r, r + floor).

    ``upper``: P(as many or more) — small means significantly above (Fail). Otherwise P(as few
    or fewer) — small means significantly below (Pass). The canary's dispersion is scaled to its
    expected count at the boundary; the reference keeps its own."""
    rate_r = x_r / n_r
    boundary = min(max(ratio * rate_r, rate_r + floor), 1.0)
    phi_c = disp.for_unit(boundary, unit)
    if rate_r > 0 and ratio * rate_r >= rate_r + floor:
        # Ratio dominates: the exact conditional test for two Poisson rates. Given all errors,
        # the canary's (effective) share is binomial with p = rho n_c / (rho n_c + n_r).
        phi_r = disp.phi
        k, n = x_c / phi_c, x_c / phi_c + x_r / phi_r
        share = (ratio * n_c / phi_c) / (ratio * n_c / phi_c + n_r / phi_r)
        p = binom_sf(k, n, share) if upper else binom_cdf(k, n, share)
        return disp.studentize(p, phi_c), boundary, f"conditional binomial, ratio {ratio:g}"
    p = _one_sample(x_c, n_c, boundary, phi_c, upper=upper)  # the floor dominates: one-sample exact test
    kind = "binomial" if phi_c <= 1.0 + 1e-9 else "negative binomial"
    return disp.studentize(p, phi_c), boundary, f"one-sample {kind}, floor {floor:g}"


def _rate_threshold(x_c: float, n_c: float, disp: Dispersion, limit: float, setup: _Setup,
                    ev: dict[str, Any]) -> Part:
    rate = x_c / n_c
    phi = disp.for_unit(limit, n_c / setup.canary_units)
    p = disp.studentize(_one_sample(x_c, n_c, limit, phi, upper=True), phi)
    ev.update({"max_rate": limit, "p_over_max_rate": _p(p)})
    if rate <= limit:
        return Verdict.PASS, f"error rate {rate:.3%} within max_rate {limit:.3%}"
    if p < setup.alpha:
        return Verdict.FAIL, f"error rate {rate:.3%} significantly above max_rate {limit:.3%} (p={p:.2g})"
    return Verdict.INCONCLUSIVE, f"error rate {rate:.3%} above max_rate {limit:.3%}, not yet significantly"


# -- latency -------------------------------------------------------------------------------
def check_latency(canary: list[HostMetrics], reference: list[HostMetrics], cfg: LatencyCheck, setup: _Setup,
                  slices: Sequence[list[HostMetrics]] = (), shared: dict[str, Any] | None = None) -> CheckResult:
    config = setup.config
    lat_c = pool(m.latency for m in canary)
    q = cfg.quantile
    name = f"p{q * 100:g}"
    if lat_c is None or lat_c.count < config.min_requests:
        seen = lat_c.count if lat_c else 0
        return CheckResult("latency", Verdict.INCONCLUSIVE,
                           f"not enough latency data: {seen:.0f} canary requests of the {config.min_requests} needed")
    ev: dict[str, Any] = {"quantile": q, "canary": lat_c.to_dict(), f"canary_{name}_ms": _ms(lat_c.quantile(q, SHAPE)),
                          "interpolation": SHAPE}
    parts: list[Part] = []
    tails = _memo(shared, "latency.tails", lambda: _Tails(setup, reference, slices))
    if cfg.compare:
        lat_r = _memo(shared, "latency.pooled", lambda: pool(m.latency for m in reference))
        q_r = _memo(shared, f"latency.q{q!r}", lambda: lat_r.quantile(q, SHAPE) if lat_r is not None else None)
        if lat_r is None or q_r is None or lat_r.count < config.min_requests:
            parts.append((Verdict.INCONCLUSIVE, "not enough reference latency data"))
        else:
            ev.update({"reference": lat_r.to_dict(), f"reference_{name}_ms": _ms(q_r)})
            parts.append(_compare_latency(lat_c, lat_r, q_r, tails, cfg, setup, ev))
    if cfg.max_ms is not None:
        parts.append(_latency_threshold(lat_c, cfg, tails, setup, ev))
    return _combine("latency", parts, ev)


class _Tails:
    """Dispersion of "requests slower than t" counts across the reference units, for each
    threshold t a test uses (the far tail varies differently from the p95)."""

    def __init__(self, setup: _Setup, reference: list[HostMetrics], slices: Sequence[list[HostMetrics]]):
        self.config, self.prior_df, self.reference, self.slices = setup.config, setup.prior_df, reference, slices
        self._found: dict[float, Dispersion] = {}  # threshold -> estimate (the canaries of a look share them)

    def at(self, threshold: float) -> Dispersion:
        if threshold not in self._found:
            self._found[threshold] = self._at(threshold)
        return self._found[threshold]

    def _at(self, threshold: float) -> Dispersion:
        def tails(metrics: Iterable[HostMetrics]) -> list[tuple[float, float]]:
            found = [m.latency for m in metrics if m.latency is not None and m.latency.has_distribution]
            return [(lat.count_above(threshold, SHAPE) or 0.0, lat.count) for lat in found]

        totals = tails(self.reference)
        trials = sum(n for _, n in totals)
        share = sum(x for x, _ in totals) / trials if trials else 0.0
        return estimate([x for x, _ in totals], [n for _, n in totals], share,
                        [tails(part) for part in self.slices], self.config.dispersion, self.prior_df)


def _tail_test(lat: Latency, threshold: float, tail: float, tails: _Tails, units: float,
               *, upper: bool) -> tuple[float, float, Dispersion]:
    """P(this many or more / this few or fewer canary requests slower than ``threshold``) if
    exactly ``tail`` of them were; returns (p, observed share, dispersion)."""
    n = lat.count
    above = lat.count_above(threshold, SHAPE) or 0.0
    disp = tails.at(threshold)
    phi = disp.for_unit(tail, n / units)
    p = _one_sample(above, n, tail, phi, upper=upper)
    return disp.studentize(p, phi), above / n, disp


def _one_sample(events: float, trials: float, rate: float, phi: float, *, upper: bool) -> float:
    """Exact one-sample tail: binomial when the counts are Poisson-like (phi = 1), else the
    negative binomial with the same mean and variance phi x mean (the gamma-Poisson that an
    overdispersion factor describes; dividing counts by phi instead would give the tail a
    Poisson shape it does not have)."""
    if phi <= 1.0 + 1e-9:
        return binom_sf(events, trials, rate) if upper else binom_cdf(events, trials, rate)
    mean = trials * rate
    return negbin_sf(events, mean, phi) if upper else negbin_cdf(events, mean, phi)


def _compare_latency(lat_c: Latency, lat_r: Latency, q_r: float, tails: _Tails, cfg: LatencyCheck,
                     setup: _Setup, ev: dict[str, Any]) -> Part:
    q, tail = cfg.quantile, 1.0 - cfg.quantile
    name = f"p{q * 100:g}"
    floor = cfg.floor_ms / 1000.0
    fail_at = max(q_r * (1 + cfg.margin), q_r + floor)
    pass_at = max(q_r * (1 + cfg.detect), q_r + floor)
    q_c = lat_c.quantile(q, SHAPE) or 0.0
    ev.update({"fail_above_ms": _ms(fail_at), "pass_below_ms": _ms(pass_at)})
    shown = f"{name} {q_c * 1000:.0f} ms vs {q_r * 1000:.0f} ms on the reference"
    rank = _rank_test(lat_c, lat_r)
    if rank is not None:
        ev["mann_whitney"] = {"auc": _r(rank[0], 4), "z": _r(rank[1], 3), "p_slower": _p(rank[2])}
    if not lat_c.has_distribution:  # quantiles only (Datadog, New Relic): a plain comparison
        ev["test"] = "plain quantile comparison (the provider gave no distribution)"
        if q_c > fail_at:
            return Verdict.FAIL, f"{shown}: above {fail_at * 1000:.0f} ms"
        return Verdict.PASS, f"{shown}: within {fail_at * 1000:.0f} ms"
    p_fail, share_fail, d_fail = _tail_test(lat_c, fail_at, tail, tails, setup.canary_units, upper=True)
    p_pass, share_pass, d_pass = _tail_test(lat_c, pass_at, tail, tails, setup.canary_units, upper=False)
    ev.update({"test": f"exact binomial on the share slower than the threshold (at most {tail:.0%} if fine)",
               "canary_share_above_fail": _r(share_fail, 5), "p_fail": _p(p_fail), "dispersion_fail": d_fail.to_dict(),
               "canary_share_above_pass": _r(share_pass, 5), "p_pass": _p(p_pass), "dispersion_pass": d_pass.to_dict()})
    if cfg.method == "mannwhitney" and rank is not None:
        if rank[2] < setup.alpha and q_c > fail_at:
            return Verdict.FAIL, f"{shown}: slower by rank test (p={rank[2]:.2g}) and above {fail_at * 1000:.0f} ms"
        if q_c <= fail_at:
            return Verdict.PASS, f"{shown}: within {fail_at * 1000:.0f} ms"
        return Verdict.INCONCLUSIVE, f"{shown}: above {fail_at * 1000:.0f} ms, not yet significantly"
    if p_fail < setup.alpha:
        return Verdict.FAIL, (f"{shown}: {share_fail:.1%} of canary requests slower than "
                              f"{fail_at * 1000:.0f} ms, significantly above {tail:.0%} (p={p_fail:.2g})")
    if p_pass < setup.beta:
        return Verdict.PASS, f"{shown}: a {name} of {pass_at * 1000:.0f} ms or more ruled out (p={p_pass:.2g})"
    return Verdict.INCONCLUSIVE, f"{shown}: not yet enough requests to tell (fail p={p_fail:.2g}, pass p={p_pass:.2g})"


def _latency_threshold(lat_c: Latency, cfg: LatencyCheck, tails: _Tails, setup: _Setup, ev: dict[str, Any]) -> Part:
    q, limit = cfg.quantile, (cfg.max_ms or 0.0) / 1000.0
    q_c = lat_c.quantile(q, SHAPE) or 0.0
    name = f"p{q * 100:g}"
    ev["max_ms"] = cfg.max_ms
    if q_c <= limit:
        return Verdict.PASS, f"{name} {q_c * 1000:.0f} ms within max_ms {cfg.max_ms:g}"
    if not lat_c.has_distribution:
        return Verdict.FAIL, f"{name} {q_c * 1000:.0f} ms above max_ms {cfg.max_ms:g}"
    p, _, _ = _tail_test(lat_c, limit, 1.0 - q, tails, setup.canary_units, upper=True)
    ev["p_over_max_ms"] = _p(p)
    if p < setup.alpha:
        return Verdict.FAIL, f"{name} {q_c * 1000:.0f} ms significantly above max_ms {cfg.max_ms:g} (p={p:.2g})"
    return Verdict.INCONCLUSIVE, f"{name} {q_c * 1000:.0f} ms above max_ms {cfg.max_ms:g}, not yet significantly"


def _rank_test(lat_c: Latency, lat_r: Latency) -> tuple[float, float, float] | None:
    """Mann-Whitney on the two distributions (histograms brought to common bounds; samples as is)."""
    if lat_c.buckets and lat_r.buckets:
        bounds = sorted({le for le, _ in lat_c.buckets} | {le for le, _ in lat_r.buckets})
        per = []
        for lat in (lat_c, lat_r):
            cum = [lat.count if le == INF else cumulative_at(le, lat.buckets) for le in bounds]
            per.append([c - p for c, p in zip(cum, [0.0, *cum[:-1]])])
        return mann_whitney_buckets(per[0], per[1])
    if lat_c.samples and lat_r.samples:
        values = sorted(set(lat_c.samples) | set(lat_r.samples))
        index = {v: i for i, v in enumerate(values)}
        per = [[0.0] * len(values) for _ in range(2)]
        for j, lat in enumerate((lat_c, lat_r)):
            for s in lat.samples:
                per[j][index[s]] += 1
        return mann_whitney_buckets(per[0], per[1])
    return None


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _p(value: float) -> float:
    return float(f"{value:.3g}")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)
