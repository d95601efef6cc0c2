"""Exact tails and rank statistics, checked against exact arithmetic and published tables."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from lrelease.gate.stats import (
    betainc,
    binom_cdf,
    binom_sf,
    dispersion_within_slices,
    mann_whitney_buckets,
    normal_cdf,
    normal_ppf,
    pearson_dispersion,
    studentize,
    t_cdf,
    t_ppf,
)


def exact_sf(k: int, n: int, p: float) -> float:
    q = Fraction(str(p))  # the decimal, not the float's binary expansion (keeps the sums fast)

    def term(i: int) -> Fraction:
        return math.comb(n, i) * q ** i * (1 - q) ** (n - i)

    if k < n / 2:  # fewer terms on the other side
        return float(1 - sum(term(i) for i in range(k)))
    return float(sum(term(i) for i in range(k, n + 1)))


@pytest.mark.parametrize(("k", "n", "p"), [
    (3, 10, 0.2), (15, 3000, 0.005), (50, 100, 0.5), (30, 1000, 0.02), (1, 1, 0.3), (0, 5, 0.3), (6, 6, 0.9),
    (200, 400, 0.45),
])
def test_binomial_tails_match_exact_sums(k, n, p):
    assert binom_sf(k, n, p) == pytest.approx(exact_sf(k, n, p), rel=1e-9, abs=1e-15)
    assert binom_cdf(k, n, p) == pytest.approx(1 - exact_sf(k + 1, n, p), rel=1e-9, abs=1e-15)


def test_tails_are_continuous_in_effective_counts():
    # Effective (dispersion-deflated) counts are not integers; the tail moves smoothly between them
    values = [binom_sf(k / 4, 40.0, 0.1) for k in range(40)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert binom_sf(4.0, 40.0, 0.1) == pytest.approx(exact_sf(4, 40, 0.1))


@pytest.mark.parametrize(("a", "b", "x", "expected"), [
    (1.0, 1.0, 0.3, 0.3),  # uniform
    (2.0, 3.0, 0.4, 0.5248),  # published table value
    (0.5, 0.5, 0.5, 0.5),  # arcsine, symmetric
])
def test_incomplete_beta_known_values(a, b, x, expected):
    assert betainc(a, b, x) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(("p", "z"), [(0.975, 1.959964), (0.5, 0.0), (0.001, -3.090232), (0.9999, 3.719016)])
def test_normal_quantiles(p, z):
    assert normal_ppf(p) == pytest.approx(z, abs=1e-6)
    assert normal_cdf(normal_ppf(p)) == pytest.approx(p, rel=1e-9)


# Standard normal quantiles published to full double precision (Wichura 1988, AS241, which
# statistics.NormalDist implements): a coarser approximation swapped in would fail here.
@pytest.mark.parametrize(("p", "z"), [
    (0.975, 1.959963984540054),
    (0.995, 2.5758293035489004),
    (0.9, 1.2815515655446004),
    (0.025, -1.959963984540054),
    (1e-10, -6.361340902404056),
])
def test_normal_ppf_matches_published_quantiles_to_full_precision(p, z):
    # Given a probability whose standard normal quantile is published to full precision
    # When it is inverted
    # Then the quantile agrees to ~1e-15 relative (statistics.NormalDist), and the cdf maps it back
    assert normal_ppf(p) == pytest.approx(z, rel=1e-14, abs=1e-15)
    assert normal_cdf(z) == pytest.approx(p, rel=1e-13)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5])
def test_normal_ppf_outside_0_1_is_refused(p):
    with pytest.raises(ValueError, match="0 < p < 1"):
        normal_ppf(p)


@pytest.mark.parametrize(("p", "df", "t"), [
    (0.975, 1, 12.7062), (0.975, 4, 2.7764), (0.999, 4, 7.1732), (0.95, 10, 1.8125), (0.995, 30, 2.7500),
])
def test_student_t_quantiles_match_tables(p, df, t):
    assert t_ppf(p, df) == pytest.approx(t, abs=1e-4)
    assert t_cdf(t_ppf(p, df), df) == pytest.approx(p, abs=1e-9)


def test_studentizing_a_p_value():
    # With no extra-Poisson dispersion there is nothing uncertain: the p-value stays
    assert studentize(1e-4, 1.0, 4) == 1e-4
    # Known dispersion (no df) stays too
    assert studentize(1e-4, 3.0, None) == 1e-4
    # Estimated from few hosts, small p-values grow, more so with fewer degrees of freedom
    assert 1e-4 < studentize(1e-4, 3.0, 20) < studentize(1e-4, 3.0, 4) < 0.05
    # Tiny p-values stay finite and ordered
    assert 0 < studentize(1e-300, 5.0, 4) < studentize(1e-20, 5.0, 4)


def test_pearson_dispersion():
    # Identical hosts (counts exactly as expected): no overdispersion at all
    assert pearson_dispersion([10, 10, 10], [1000, 1000, 1000], 0.01) == pytest.approx(0.0)
    # Hosts at 5, 10, 15 errors in 1000: X^2 = (25 + 0 + 25) / 9.9 -> / 2 df
    assert pearson_dispersion([5, 10, 15], [1000, 1000, 1000], 0.01) == pytest.approx(50 / 9.9 / 2)
    # Not estimable with one host, or no events
    assert pearson_dispersion([5], [100], 0.05) is None
    assert pearson_dispersion([0, 0], [100, 100], 0.0) is None


def test_dispersion_within_slices_ignores_what_all_hosts_share_at_a_moment():
    # Given two looks: in the second every host's errors triple at once (a global blip)
    calm = [(10.0, 1000.0), (10.0, 1000.0), (10.0, 1000.0)]
    blip = [(30.0, 1000.0), (30.0, 1000.0), (30.0, 1000.0)]
    # Then within-look dispersion sees no host-to-host difference (the comparison cancels the blip)
    phi, df = dispersion_within_slices([calm, blip])
    assert phi == pytest.approx(0.0) and df == 4
    # But one host's own bad minute shows
    phi, _ = dispersion_within_slices([calm, [(60.0, 1000.0), (10.0, 1000.0), (10.0, 1000.0)]])
    assert phi > 5


def test_mann_whitney_on_buckets_matches_a_hand_computed_u():
    # canary: 2 in bucket 0, 3 in bucket 1; control: 3 in bucket 0, 1 in bucket 1
    auc, z, p = mann_whitney_buckets([2, 3], [3, 1])
    # U = 2*(0 + 3/2) + 3*(3 + 1/2) = 3 + 10.5 = 13.5 of 5*4 = 20 pairs
    assert auc == pytest.approx(13.5 / 20)
    assert z > 0 and 0 < p < 0.5
    same = mann_whitney_buckets([5, 5], [5, 5])
    assert same[0] == pytest.approx(0.5) and same[1] == pytest.approx(0.0)


def test_units_expecting_fewer_events_than_min_expected_give_no_dispersion_estimate():
    # Given three hosts expected to hold 2 errors each (one wildly off: 6 instead of 2)
    counts, exposures = [0.0, 0.0, 6.0], [1000.0, 1000.0, 1000.0]
    # Then X^2 from so few expected events is not read as dispersion when 5 are asked for
    assert pearson_dispersion(counts, exposures, 0.002, min_expected=5) is None
    # While the same spread with ten times the traffic is (and without the rule, as before)
    assert pearson_dispersion([0.0, 0.0, 60.0], [10000.0] * 3, 0.002, min_expected=5) > 5
    assert pearson_dispersion(counts, exposures, 0.002) > 5


def test_slices_expecting_too_few_events_are_summed_over_consecutive_looks_until_they_do():
    # Given six looks of two hosts, each look expecting 1 error per host (Poisson-like: 1 and 1)
    look = [(1.0, 500.0), (1.0, 500.0)]
    # When 5 events per unit are asked for
    phi, df = dispersion_within_slices([look] * 6, min_expected=5)
    # Then the looks are summed five at a time: one slice of 5 and 5 (1 df); the sixth look,
    # left alone with 1 per host, counts for nothing
    assert (phi, df) == (0.0, 1)
    # And requests slower than a threshold far beyond the reference's p95 (expected: next to none),
    # where one host had a hiccup of 4 slow requests in a look, give no estimate at all
    tails = [[(4.0, 1000.0), (0.01, 1000.0)]]
    assert dispersion_within_slices(tails, min_expected=5) is None
    assert dispersion_within_slices(tails)[0] > 3  # what it read as before the rule
