"""The statistical judge: Pass / Fail / Inconclusive with evidence, from hand-built host metrics."""

from __future__ import annotations

import json
import math

import pytest

from lrelease.apm import Health, HostMetrics
from lrelease.apm.latency import INF, Latency
from lrelease.errors import ConfigError
from lrelease.gate import Verdict
from lrelease.gate.judge import judge
from lrelease.gate.judge_config import ErrorCheck, JudgeConfig, LatencyCheck
from lrelease.gate.stats import normal_cdf

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def latency(requests: float, median: float = 0.08, sigma: float = 0.55) -> Latency:
    """Log-normal latencies as the demo app's histogram would show them."""
    pairs = [(b, requests * normal_cdf(math.log(b / median) / sigma)) for b in BOUNDS]
    return Latency.from_buckets([*pairs, (INF, requests)])


def host(name: str, requests: float, errors: float, median: float = 0.08, **extra) -> HostMetrics:
    return HostMetrics(host=name, requests=requests, errors=errors, latency=latency(requests, median), **extra)


def peers(n: int, requests: float, errors: list[float] | float, median: float = 0.08) -> dict[str, HostMetrics]:
    errs = errors if isinstance(errors, list) else [errors] * n
    return {f"peer{i}": host(f"peer{i}", requests, errs[i], median) for i in range(n)}


CONFIG = JudgeConfig()  # defaults: margin 1.3, detect 2x, floor 0.1pp, p95 +20% / +50%, 10 looks


def check(judgement, name):
    return next(c for c in judgement.checks if c.check == name)


# -- hard checks -----------------------------------------------------------------------------
def test_an_unreachable_canary_fails_at_once_without_statistics():
    # Given a canary whose metrics endpoint does not answer, and excellent-looking peers
    canary = {"node1": HostMetrics("node1", no_data=True, reachable=False, detail="connection refused")}
    # When judged
    result = judge(canary, peers(5, 1000, 1), CONFIG)
    # Then it fails on the hard check alone
    assert result.verdict is Verdict.FAIL
    assert [c.check for c in result.checks] == ["health"] and "unreachable" in result.reason


def test_a_failing_health_endpoint_fails_at_once():
    health = {"node1": HostMetrics("node1", no_data=True, health=Health("fail", 503, "HTTP 503, body says fail"))}
    result = judge({"node1": host("node1", 1000, 1)}, peers(5, 1000, 1), CONFIG, health=health)
    assert result.verdict is Verdict.FAIL and "health check fails" in result.reason


def test_a_warning_health_endpoint_does_not_fail():
    health = {"node1": HostMetrics("node1", no_data=True, health=Health("warn", 200, "warn"))}
    result = judge({"node1": host("node1", 20000, 200)}, peers(5, 20000, 200), CONFIG, health=health)
    assert result.verdict is not Verdict.FAIL


# -- not enough to go on ---------------------------------------------------------------------
@pytest.mark.parametrize(("canary", "reference", "why"), [
    ({"node1": HostMetrics("node1", no_data=True, detail="no requests series")}, peers(5, 1000, 5), "no data"),
    ({"node1": host("node1", 50, 0)}, peers(5, 1000, 5), "not enough traffic"),
    ({"node1": host("node1", 1000, 5)}, {}, "not enough reference traffic"),
    ({"node1": host("node1", 300, 1)}, peers(5, 300, 1), "not yet enough errors"),
])
def test_too_little_to_go_on_is_inconclusive_never_a_pass(canary, reference, why):
    result = judge(canary, reference, CONFIG)
    assert result.verdict is Verdict.INCONCLUSIVE and why in result.reason


# -- errors ----------------------------------------------------------------------------------
def test_the_sandbox_bad_build_fails_on_the_first_look():
    # Given the canary at 5% errors and five peers at ~0.5%, 300 requests each (one minute of sandbox load)
    canary = {"node1": host("node1", 300, 15)}
    reference = peers(5, 300, [2, 1, 2, 1, 2])
    # When judged at the first look
    result = judge(canary, reference, CONFIG, look=1)
    # Then the errors check fails, with the evidence a human needs
    errors = check(result, "errors")
    assert result.verdict is Verdict.FAIL and errors.verdict is Verdict.FAIL
    ev = errors.evidence
    assert ev["canary_rate"] == 0.05 and ev["reference_rate"] == pytest.approx(8 / 1500, abs=1e-6)
    assert ev["ratio"] == pytest.approx(9.375, rel=1e-3) and ev["p_fail"] < result.evidence["alpha_this_look"]
    assert ev["fail_test"].startswith("conditional binomial")


def test_a_good_build_with_enough_traffic_passes():
    canary = {"node1": host("node1", 30000, 300)}
    reference = peers(5, 30000, [290, 310, 305, 295, 300])
    result = judge(canary, reference, CONFIG, look=3)
    assert result.verdict is Verdict.PASS, result.reason
    assert check(result, "errors").evidence["p_pass"] < result.evidence["beta_this_look"]


@pytest.mark.parametrize(("canary_errors", "verdict"), [
    (300, Verdict.PASS),  # same rate as the peers
    (390, Verdict.PASS),  # +30%: inside the margin, and 2x is ruled out
    (600, Verdict.FAIL),  # 2x
    (1200, Verdict.FAIL),  # 4x
])
def test_the_margin_and_the_detectable_ratio(canary_errors, verdict):
    result = judge({"node1": host("node1", 30000, canary_errors)}, peers(5, 30000, 300), CONFIG, look=5)
    assert check(result, "errors").verdict is verdict


def test_the_sandbox_good_build_passes_quickly_with_a_one_point_floor():
    # Given sandbox traffic (300 requests a minute per node, 0.5% errors) three minutes after the
    # switch, and a gate where error-rate differences under 1 percentage point do not matter
    config = JudgeConfig(errors=ErrorCheck(floor=0.01), max_bake_seconds=900)  # 5 looks of 3 minutes
    canary, reference = {"node1": host("node1", 900, 4)}, peers(5, 900, [5, 4, 5, 4, 5])
    # Then the first look already rules out a rate of 1.5% and passes; the bad build still fails
    assert check(judge(canary, reference, config, look=1), "errors").verdict is Verdict.PASS
    assert check(judge({"node1": host("node1", 900, 45)}, reference, config, look=1), "errors").verdict is Verdict.FAIL


def test_a_difference_below_the_floor_never_fails():
    # Given rare errors: the canary at 0.15%, peers at 0.05% (3x, but only 0.1 percentage point)
    canary = {"node1": host("node1", 100000, 150)}
    reference = peers(5, 100000, 50)
    result = judge(canary, reference, CONFIG, look=10)
    errors = check(result, "errors")
    # Then it does not fail: the floor (0.1 pp) dominates the ratio, and the test says so
    assert errors.verdict is not Verdict.FAIL
    assert errors.evidence["fail_test"].startswith("one-sample") and "floor" in errors.evidence["fail_test"]
    # While 0.5% against 0.05% (0.45 pp) does fail
    worse = judge({"node1": host("node1", 100000, 500)}, reference, CONFIG, look=10)
    assert check(worse, "errors").verdict is Verdict.FAIL


def test_no_errors_anywhere_passes_once_there_is_enough_traffic():
    result = judge({"node1": host("node1", 50000, 0)}, peers(5, 50000, 0), CONFIG, look=2)
    assert check(result, "errors").verdict is Verdict.PASS


def test_overdispersed_peers_keep_a_noisy_canary_from_failing():
    # Given peers whose error counts vary far more than chance (bursty hosts)
    calm = peers(5, 20000, [200, 201, 199, 200, 200])
    bursty = peers(5, 20000, [120, 300, 150, 280, 150])
    canary = {"node1": host("node1", 20000, 330)}
    # When the same canary (+65%) is judged against each
    against_calm = check(judge(canary, calm, CONFIG, look=10), "errors")
    against_bursty = check(judge(canary, bursty, CONFIG, look=10), "errors")
    # Then calm peers make it a significant regression; bursty ones show it is within their noise
    assert against_calm.verdict is Verdict.FAIL
    assert against_bursty.verdict is not Verdict.FAIL
    assert against_bursty.evidence["dispersion"]["phi"] > 5


def test_per_look_increments_sharpen_the_dispersion_estimate():
    # Given totals that look calm but looks that show bursts on single hosts
    reference = peers(5, 20000, 200)
    slices = [peers(5, 10000, [40, 160, 100, 100, 100]), peers(5, 10000, [160, 40, 100, 100, 100])]
    canary = {"node1": host("node1", 20000, 330)}
    plain = check(judge(canary, reference, CONFIG, look=10), "errors")
    sharper = check(judge(canary, reference, CONFIG, look=10, reference_slices=slices), "errors")
    assert plain.evidence["dispersion"]["phi"] == 1.0 and plain.verdict is Verdict.FAIL
    # (8 df of bursts: the raw per-look estimate ~16, moderated towards 1 by the Poisson prior)
    assert sharper.evidence["dispersion"]["estimates"]["per_look"] > 10
    assert sharper.evidence["dispersion"]["phi"] > 5 and sharper.verdict is not Verdict.FAIL


def test_with_one_reference_host_every_hosts_own_past_gives_the_dispersion():
    # Given one peer, and a canary at 1.8x its rate (360 vs 200 errors of 20,000)
    canary, reference = {"node1": host("node1", 20000, 360)}, peers(1, 20000, 200)
    # and both hosts' ten slices before the switch (both on the old build), far more spread than Poisson
    past = [{"node1": host("node1", 2000, a), "peer0": host("peer0", 2000, b)} for a, b in [(5, 35), (35, 5)] * 5]
    # When judged with the one peer alone, and with the hosts' past as well
    alone = judge(canary, reference, CONFIG, look=10)
    with_past = judge(canary, reference, CONFIG, look=10, past_slices=past)
    # Then alone there is no degree of freedom: Poisson is assumed (the floor applies), and 1.8x fails
    assert check(alone, "errors").evidence["dispersion"]["phi"] == 1.0
    assert "Poisson" in check(alone, "errors").evidence["dispersion"]["from"]
    assert alone.evidence["dispersion_reference"] == "1 reference host(s)"
    assert check(alone, "errors").verdict is Verdict.FAIL
    # With the past, 10 df show the noise, and the same 1.8x is within it; the evidence says what was used
    assert check(with_past, "errors").evidence["dispersion"]["phi"] > 5
    assert check(with_past, "errors").verdict is not Verdict.FAIL
    assert with_past.evidence["dispersion_reference"] == (
        "1 reference host(s), plus 10 slices before the switch of 2 host(s) on the old build (node1, peer0)")


def test_two_poisson_reference_hosts_no_longer_halt_a_good_build():
    # Given the live halt: a good canary against two peers with 30 and 52 errors of 6,000 (raw phi 5.94)
    canary, reference = {"node2": host("node2", 6000, 41)}, peers(2, 6000, [30, 52])
    # When judged at the last look of an 80 s bake (the sandbox's 4 looks of 20 s)
    config = JudgeConfig(bake_seconds=20, max_bake_seconds=80, interval_seconds=20)
    errors = check(judge(canary, reference, config, look=4), "errors")
    # Then the dispersion is moderated to under 1.5 with 11 df, and the good build passes
    assert errors.evidence["dispersion"]["phi"] < 1.5 and errors.evidence["dispersion"]["df"] == 11
    assert errors.verdict is Verdict.PASS, errors.reason


def test_repeated_looks_spend_the_error_budget_by_the_data_seen():
    # The looks' weights add up to 1: the bake as a whole keeps alpha and beta
    assert sum(CONFIG.look_weight(k) for k in range(1, CONFIG.max_looks + 1)) == pytest.approx(1.0)
    assert CONFIG.alpha_at(1) < CONFIG.alpha_at(10)
    # So the same borderline evidence that is not enough at the first look is at the last
    canary, reference = {"node1": host("node1", 4000, 48)}, peers(5, 4000, 20)  # p_fail ~5e-4
    assert check(judge(canary, reference, CONFIG, look=1), "errors").verdict is Verdict.INCONCLUSIVE
    assert check(judge(canary, reference, CONFIG, look=10), "errors").verdict is Verdict.FAIL


# -- latency ---------------------------------------------------------------------------------
def test_the_sandbox_slow_build_fails_on_latency():
    # Given a canary adding 300 ms to every request (median 300 ms vs 5 ms)
    canary = {"node1": host("node1", 300, 1, median=0.305)}
    reference = peers(5, 300, 1, median=0.005)
    result = judge(canary, reference, CONFIG, look=1)
    latency_check = check(result, "latency")
    assert result.verdict is Verdict.FAIL and latency_check.verdict is Verdict.FAIL
    assert latency_check.evidence["canary_p95_ms"] > 300 and latency_check.evidence["reference_p95_ms"] < 20
    assert latency_check.evidence["mann_whitney"]["auc"] > 0.95


@pytest.mark.parametrize(("median", "verdict"), [
    (0.080, Verdict.PASS),
    (0.090, Verdict.PASS),  # +12%: within the +20% margin
    (0.120, Verdict.FAIL),  # +50%
])
def test_latency_margin(median, verdict):
    result = judge({"node1": host("node1", 20000, 0, median)}, peers(5, 20000, 0), CONFIG, look=5)
    assert check(result, "latency").verdict is verdict


def test_the_absolute_latency_floor_protects_very_fast_services():
    # +60% of 5 ms is 3 ms: under the 20 ms floor, never a failure
    result = judge({"node1": host("node1", 20000, 0, 0.008)}, peers(5, 20000, 0, 0.005), CONFIG, look=5)
    assert check(result, "latency").verdict is Verdict.PASS


def test_quantile_only_latency_is_a_plain_comparison():
    def q(name, p95):
        return HostMetrics(name, requests=5000, errors=0, latency=Latency(quantiles={0.95: p95}, count_hint=5000))
    fast = judge({"n": q("n", 0.21)}, {f"p{i}": q(f"p{i}", 0.2) for i in range(3)}, CONFIG)
    slow = judge({"n": q("n", 0.3)}, {f"p{i}": q(f"p{i}", 0.2) for i in range(3)}, CONFIG)
    assert check(fast, "latency").verdict is Verdict.PASS and check(slow, "latency").verdict is Verdict.FAIL
    assert "plain quantile comparison" in check(slow, "latency").evidence["test"]


def test_the_mann_whitney_method_decides_when_asked():
    config = JudgeConfig(latency=LatencyCheck(method="mannwhitney"))
    slow = judge({"n": host("n", 3000, 0, 0.2)}, peers(5, 3000, 0), config)
    same = judge({"n": host("n", 3000, 0, 0.08)}, peers(5, 3000, 0), config)
    assert check(slow, "latency").verdict is Verdict.FAIL and "rank test" in check(slow, "latency").reason
    assert check(same, "latency").verdict is Verdict.PASS


# -- thresholds, baseline, evidence ----------------------------------------------------------
@pytest.mark.parametrize(("requests", "errors", "verdict"), [
    (10000, 50, Verdict.PASS),  # 0.5% <= 1%
    (10000, 300, Verdict.FAIL),  # 3%, significantly over
    (300, 4, Verdict.INCONCLUSIVE),  # 1.3%, not significantly over
])
def test_a_plain_error_rate_threshold_alone(requests, errors, verdict):
    config = JudgeConfig(errors=ErrorCheck(compare=False, max_rate=0.01), latency=None)
    result = judge({"n": host("n", requests, errors)}, {}, config, look=10)
    assert result.verdict is verdict


def test_a_plain_p95_threshold_alone():
    config = JudgeConfig(errors=None, latency=LatencyCheck(compare=False, max_ms=250))
    assert judge({"n": host("n", 5000, 0, 0.08)}, {}, config).verdict is Verdict.PASS  # p95 ~200 ms
    assert judge({"n": host("n", 5000, 0, 0.2)}, {}, config).verdict is Verdict.FAIL  # p95 ~500 ms


def test_a_threshold_combined_with_the_comparison_can_fail_a_canary_its_peers_share():
    # Given canary and peers all at 3%: the comparison is fine, the absolute threshold is not
    config = JudgeConfig(errors=ErrorCheck(max_rate=0.01))
    result = judge({"n": host("n", 20000, 600)}, peers(5, 20000, 600), config, look=5)
    errors = check(result, "errors")
    assert errors.verdict is Verdict.FAIL and "max_rate" in errors.reason


def test_the_last_wave_is_compared_with_its_own_baseline_slices():
    # Given no peers left: the reference is the canary hosts' own minutes before the switch
    baseline = {f"baseline@{i}": host(f"baseline@{i}", 3000, 30) for i in range(10)}
    canary = {f"node{i}": host(f"node{i}", 10000, 300) for i in range(3)}  # 3% vs 1% before
    result = judge(canary, baseline, CONFIG, look=3, reference_kind="baseline")
    assert result.evidence["reference"] == "baseline"
    assert result.verdict is Verdict.FAIL


def test_baseline_slices_are_pulled_towards_poisson_less_than_peers():
    # Given the last wave's own past in ten slices whose errors swing with the traffic of the moment
    # (what every host shares at a time: real, and not Poisson)
    baseline = {f"baseline@{i}": host(f"baseline@{i}", 3000, 15 if i % 2 else 45) for i in range(10)}
    canary = {f"node{i}": host(f"node{i}", 3000, 30) for i in range(3)}
    result = judge(canary, baseline, CONFIG, look=3, reference_kind="baseline")
    dispersion = check(result, "errors").evidence["dispersion"]
    # Then the slices' spread (9 df) is moderated by a prior worth 5 df: well above 1, below the raw figure
    assert 5 < dispersion["phi"] < dispersion["estimates"]["totals"] and dispersion["df"] == 14
    assert "prior worth 5 df" in dispersion["from"]
    # While the same units as peers are moderated harder, by a prior worth 10 df
    as_peers = check(judge(canary, baseline, CONFIG, look=3), "errors").evidence["dispersion"]
    assert 1 < as_peers["phi"] < dispersion["phi"] and as_peers["df"] == 19


def test_excluded_reference_hosts_are_listed():
    reference = {**peers(4, 20000, 200), "gone": HostMetrics("gone", no_data=True, reachable=False)}
    result = judge({"n": host("n", 20000, 200)}, reference, CONFIG, look=5)
    assert result.evidence["reference_excluded"] == ["gone"]


def test_the_result_is_a_json_friendly_gate_result():
    result = judge({"node1": host("node1", 300, 15)}, peers(5, 300, 1), CONFIG).to_gate_result()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "fail" and data["reason"].startswith("fail: errors:")
    assert {"checks", "look", "max_looks", "canary_hosts", "reference_hosts"} <= set(data["evidence"])
    assert {c["check"] for c in data["evidence"]["checks"]} == {"errors", "latency"}


# -- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(("data", "key"), [
    ({"alpha": 0.7}, "gate.alpha"),
    ({"beta": 0}, "gate.beta"),
    ({"policy": "ignore"}, "gate.policy"),
    ({"min_requests": 0}, "gate.min_requests"),
    ({"interval_seconds": 0}, "gate.interval_seconds"),
    ({"bake_seconds": 120, "max_bake_seconds": 60}, "gate.max_bake_seconds"),
    ({"dispersion": 0.5}, "gate.dispersion"),
    ({"errors": {"margin": 2.5}}, "gate.errors.detect_ratio"),
    ({"errors": {"margin": 0.9}}, "gate.errors.margin"),
    ({"errors": {"max_rate": 5}}, "gate.errors.max_rate"),
    ({"errors": {"compare": False}}, "gate.errors"),
    ({"latency": {"quantile": 0.3}}, "gate.latency.quantile"),
    ({"latency": {"method": "t-test"}}, "gate.latency.method"),
    ({"latency": {"detect": 0.1}}, "gate.latency.detect"),
    ({"errors": None, "latency": None}, "gate.errors"),
    ({"colour": "blue"}, "gate.colour"),
])
def test_bad_judge_settings_name_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        JudgeConfig.from_mapping(data, "lrelease.yml")
    assert err.value.key == key and err.value.where == "lrelease.yml"


def test_judge_settings_from_yaml_shapes():
    config = JudgeConfig.from_mapping({
        "bake_seconds": 120, "max_bake_seconds": 900, "interval_seconds": 60, "policy": "rollback",
        "dispersion": "auto", "errors": {"margin": 1.5, "max_rate": 0.05}, "latency": None}, "lrelease.yml")
    assert config.max_looks == 14 and config.policy == "rollback" and config.latency is None
    assert config.errors == ErrorCheck(margin=1.5, max_rate=0.05) and config.dispersion is None
