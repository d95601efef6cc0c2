"""Latency from histograms: PromQL-compatible quantiles, the log-normal within-bucket model, pooling."""

from __future__ import annotations

import math

import pytest

from lrelease.apm import HostMetrics, combine, increase_between
from lrelease.apm.latency import INF, Latency, histogram_quantile, pool
from lrelease.gate.stats import normal_cdf

BUCKETS = ((0.05, 50.0), (0.1, 80.0), (0.5, 99.0), (INF, 100.0))


@pytest.mark.parametrize(("q", "expected"), [
    (0.5, 0.05),  # exactly at a bucket edge
    (0.25, 0.025),  # first bucket starts at 0
    (0.65, 0.075),  # halfway through the second bucket
    (0.95, 0.1 + 0.4 * 15 / 19),
    (0.995, 0.5),  # in the +Inf bucket: the highest finite bound, like PromQL
])
def test_histogram_quantile_matches_promql(q, expected):
    assert histogram_quantile(q, BUCKETS) == pytest.approx(expected)


def test_no_requests_has_no_quantile():
    assert histogram_quantile(0.95, ((0.1, 0.0), (INF, 0.0))) is None
    assert Latency().quantile(0.95) is None


def test_buckets_from_unordered_pairs_are_sorted_made_monotone_and_closed():
    # Given buckets out of order, one dipping (a counter reset in one series), no +Inf
    lat = Latency.from_buckets([(0.5, 9.0), (0.1, 10.0), (0.05, 4.0)])
    # Then they are sorted, never decrease, and end with +Inf
    assert lat.buckets == ((0.05, 4.0), (0.1, 10.0), (0.5, 10.0), (INF, 10.0))


def lognormal_buckets(median: float, sigma: float, total: float = 100000.0) -> Latency:
    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    pairs = [(b, total * normal_cdf(math.log(b / median) / sigma)) for b in bounds]
    return Latency.from_buckets([*pairs, (INF, total)])


@pytest.mark.parametrize("median", [0.045, 0.06, 0.08, 0.12])
def test_the_lognormal_model_recovers_a_lognormal_p95_where_linear_is_far_off(median):
    # Given log-normal latencies seen through the demo app's coarse buckets
    lat, true_p95 = lognormal_buckets(median, 0.55), median * math.exp(1.6449 * 0.55)
    # When the p95 is read both ways
    linear, lognormal = lat.quantile(0.95), lat.quantile(0.95, "lognormal")
    # Then the log-normal model is exact and the linear one (PromQL's) overestimates
    assert lognormal == pytest.approx(true_p95, rel=1e-3)
    assert linear > true_p95 * 1.05


def test_count_above_is_consistent_with_the_quantile_in_both_models():
    lat = lognormal_buckets(0.08, 0.55)
    for model in ("linear", "lognormal"):
        p95 = lat.quantile(0.95, model)
        assert lat.count_above(p95, model) == pytest.approx(0.05 * lat.count, rel=1e-3)


def test_samples_give_exact_counts_and_type7_quantiles():
    lat = Latency(samples=(0.1, 0.2, 0.3, 0.4, 0.5))
    assert lat.count_above(0.3) == 2 and lat.quantile(0.5) == 0.3 and lat.quantile(0.9) == pytest.approx(0.46)


def test_pooling_adds_histograms_and_concatenates_samples():
    a, b = Latency(buckets=BUCKETS), Latency(buckets=BUCKETS)
    assert pool([a, b, None]).buckets[-1] == (INF, 200.0)
    assert pool([Latency(samples=(1.0,)), Latency(samples=(2.0,))]).samples == (1.0, 2.0)
    assert pool([None]) is None


def test_pooling_quantile_only_latencies_weights_by_requests():
    fast = Latency(quantiles={0.95: 0.1}, count_hint=300)
    slow = Latency(quantiles={0.95: 0.4}, count_hint=100)
    assert pool([fast, slow]).quantile(0.95) == pytest.approx(0.175)


def test_increase_between_two_looks_subtracts_counts_and_buckets():
    early = HostMetrics("n1", requests=100, errors=1, latency=Latency(buckets=((0.1, 60.0), (INF, 100.0))), seconds=60)
    late = HostMetrics("n1", requests=250, errors=4, latency=Latency(buckets=((0.1, 130.0), (INF, 250.0))), seconds=120)
    step = increase_between(early, late)
    assert (step.requests, step.errors, step.seconds) == (150, 3, 60)
    assert step.latency.buckets == ((0.1, 70.0), (INF, 150.0))


def test_combine_adds_hosts_and_refuses_partial_data():
    a = HostMetrics("a", requests=10, errors=1, latency=Latency(buckets=BUCKETS))
    b = HostMetrics("b", requests=5, errors=0, latency=Latency(buckets=BUCKETS))
    both = combine("slice", [a, b])
    assert (both.requests, both.errors, both.latency.count) == (15, 1, 200.0)
    assert combine("slice", [a, HostMetrics("c", no_data=True)]).no_data


def test_float_counts_that_creep_up_past_the_quantiles_bucket_do_not_move_it():
    # Given Prometheus-style extrapolated counts: every request in the first bucket, and later
    # buckets a hair larger from float arithmetic
    lat = Latency.from_buckets([(0.005, 12200.0), (0.01, 12200.0), (0.025, 12200.000001), (INF, 12200.000002)])
    # Then the log-normal p95 is still read in the first bucket, like the linear one (4.75 ms)
    assert lat.quantile(0.95, "lognormal") == pytest.approx(0.00475, rel=1e-6)
    assert lat.quantile(0.95, "lognormal") == pytest.approx(lat.quantile(0.95), rel=1e-6)
