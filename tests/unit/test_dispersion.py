"""The dispersion estimate: never below 1, pulled to 1 by few reference hosts, converging to the
true phi as they grow. Counts are drawn from a gamma-Poisson (negative binomial) with a known phi."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from lrelease.gate.dispersion import PRIOR_DF, Dispersion, estimate, moderate


def poisson(rng: random.Random, lam: float) -> int:
    """Exact Poisson draw by inversion (fine for the means used here, well under 700)."""
    u, k, term = rng.random(), 0, math.exp(-lam)
    total = term
    while u > total and k < 10_000:
        k += 1
        term *= lam / k
        total += term
    return k


def counts_with_phi(rng: random.Random, phi: float, hosts: int, requests: float = 4_000.0,
                    rate: float = 0.01) -> tuple[list[float], list[float]]:
    """One bake's error counts on ``hosts`` hosts: each host's mean drawn from a gamma with mean
    requests x rate and variance (phi - 1) x that mean, so the counts vary phi times as much as Poisson."""
    mean = requests * rate
    counts = []
    for _ in range(hosts):
        lam = rng.gammavariate(mean / (phi - 1.0), phi - 1.0) if phi > 1.0 else mean
        counts.append(float(poisson(rng, lam)))
    return counts, [requests] * hosts


def estimate_from(counts: list[float], exposures: list[float], slices=()) -> Dispersion:
    return estimate(counts, exposures, sum(counts) / sum(exposures), slices)


def test_with_many_reference_hosts_the_estimate_converges_to_the_true_phi():
    rng = random.Random(11)
    for phi in (1.0, 2.0, 3.0):
        # Given 400 reference hosts whose counts vary phi times as much as Poisson
        counts, exposures = counts_with_phi(rng, phi, hosts=400)
        # When the dispersion is estimated from their totals
        found = estimate_from(counts, exposures)
        # Then it is close to the truth: the prior's 10 df weigh little against 399
        assert found.phi == pytest.approx(phi, rel=0.15, abs=0.1), found
        assert found.df == pytest.approx(PRIOR_DF + 399)


def test_the_estimate_moves_from_1_towards_the_true_phi_as_reference_hosts_grow():
    rng = random.Random(12)
    medians = []
    for hosts in (2, 5, 20, 100, 400):
        # Given true phi 3 and a growing number of reference hosts (100 bakes each)
        found = [estimate_from(*counts_with_phi(rng, 3.0, hosts)).phi for _ in range(100)]
        medians.append(statistics.median(found))
    # Then few hosts leave the estimate near 1 (pulled to the Poisson prior), many near 3,
    # and in between it climbs steadily
    assert medians[0] < 1.4
    assert medians[-1] == pytest.approx(3.0, rel=0.1)
    assert medians == sorted(medians), medians


def test_two_poisson_reference_hosts_rarely_read_as_overdispersed():
    # Given two reference hosts with Poisson counts (phi 1): a raw chi-square estimate from one
    # degree of freedom exceeds 3 about 8% of the time, which halted good builds
    rng = random.Random(13)
    draws = [counts_with_phi(rng, 1.0, hosts=2) for _ in range(2000)]
    raw = [estimate_from(*d).estimates for d in draws]
    moderated = [estimate_from(*d).phi for d in draws]
    assert 0.06 < sum(dict(e)["totals"] > 3 for e in raw) / len(raw) < 0.10
    # Then the moderated estimate never gets there (one df against the prior's ten), and
    # exceeds 1.6 (a raw 7.6, p 0.6%) in under 1% of the draws
    assert max(moderated) < 3.0
    assert sum(phi > 1.6 for phi in moderated) / len(moderated) < 0.01


@pytest.mark.parametrize("phi", [1.0, 1.5, 3.0])
@pytest.mark.parametrize("hosts", [2, 3, 5])
def test_the_estimate_is_never_below_1_across_random_draws(phi, hosts):
    rng = random.Random(hosts * 100 + int(phi * 10))
    for _ in range(300):
        # Given a bake's totals and its looks' increments (three looks, each a third of the traffic)
        looks = [counts_with_phi(rng, phi, hosts, requests=3_000.0) for _ in range(3)]
        counts = [sum(look[0][i] for look in looks) for i in range(hosts)]
        exposures = [9_000.0] * hosts
        slices = [list(zip(c, n)) for c, n in looks]
        # When estimated from the totals alone and from the totals and the looks
        for found in (estimate_from(counts, exposures), estimate_from(counts, exposures, slices)):
            # Then phi is at least 1 (a source cannot vary less than Poisson)
            assert found.phi >= 1.0, found


def test_the_branch_that_returned_a_phi_below_1_now_returns_1():
    # Given totals slightly more spread than the looks, both under Poisson (the live 0.484 case):
    # totals 50 and 48 errors; looks exactly alike (phi 0 per look)
    counts, exposures = [50.0, 48.0], [10_000.0, 10_000.0]
    slices = [[(25.0, 5_000.0), (24.0, 5_000.0)], [(25.0, 5_000.0), (24.0, 5_000.0)]]
    found = estimate_from(counts, exposures, slices)
    assert 0 < dict(found.estimates)["totals"] < 1
    assert found.phi == 1.0


def test_the_live_halt_case_two_reference_hosts_30_and_52_errors():
    # Given the wave that halted a good build: two reference hosts, 30 and 52 errors of ~6,000 requests
    found = estimate_from([30.0, 52.0], [6_000.0, 6_000.0])
    # Then the raw estimate is the 5.94 that halted it, and the one used is moderated to under 1.5
    assert dict(found.estimates)["totals"] == pytest.approx(5.94, abs=0.01)
    assert 1.0 <= found.phi < 1.5 and found.df == PRIOR_DF + 1
    assert "moderated" in found.how


def test_one_reference_unit_is_poisson_not_a_guess():
    # Given one reference host (no degree of freedom at all)
    found = estimate_from([40.0], [6_000.0])
    # Then Poisson is assumed, with no degrees of freedom to studentize by, and it says so
    assert found.phi == 1.0 and found.df is None and "Poisson" in found.to_dict()["from"]


def test_a_configured_dispersion_is_used_as_is():
    found = estimate([30.0, 52.0], [6_000.0, 6_000.0], 82 / 12_000, fixed=2.5)
    assert found.phi == 2.5 and found.df is None and found.how == "configured"


@pytest.mark.parametrize(("raw", "df", "expected"), [
    (5.9, 1, (PRIOR_DF + 5.9) / (PRIOR_DF + 1)),  # one df: mostly the prior
    (3.0, 1000, (PRIOR_DF + 3000) / (PRIOR_DF + 1000)),  # many df: mostly the data
    (0.3, 4, 1.0),  # below Poisson: floored at 1
    (7.0, 0, 1.0),  # no df: Poisson
])
def test_moderation_weighs_the_data_by_its_degrees_of_freedom(raw, df, expected):
    assert moderate(raw, df) == pytest.approx(expected)


def test_a_dispersion_below_1_cannot_be_built():
    with pytest.raises(ValueError):
        Dispersion(phi=0.484)
