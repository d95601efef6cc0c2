"""Exact tails and rank statistics for the gate, in the standard library only.

The judge needs binomial tail probabilities for *effective* (dispersion-deflated, so non-integer)
counts, which the regularized incomplete beta function gives directly:
``P(X >= k) = I_p(k, n - k + 1)`` for ``X ~ Binomial(n, p)``, extended to real ``k`` and ``n``.
The continued fraction is the modified Lentz evaluation (Numerical Recipes, ``betacf``) with
``math.lgamma`` for the prefactor; it is accurate to ~1e-12 relative for the sizes a gate sees
(up to millions of requests) and costs well under a millisecond.

The normal distribution is ``statistics.NormalDist``. Everything here is pure and deterministic;
numpy/scipy are deliberately not needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

_TINY = 1e-300
_EPS = 1e-14


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta ``I_x(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    # I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    max_iter = 300 + int(20 * math.sqrt(max(a, b)))
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def binom_sf(k: float, n: float, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``, continuous in real ``k`` and ``n`` (k <= n)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return betainc(k, n - k + 1.0, p)


def binom_cdf(k: float, n: float, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, continuous in real ``k`` and ``n``."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return 1.0 - betainc(k + 1.0, n - k, p)


_STANDARD_NORMAL = NormalDist()  # the standard library's: erfc for the cdf, Wichura's AS241 for the ppf


def normal_cdf(z: float) -> float:
    return _STANDARD_NORMAL.cdf(z)


def normal_ppf(p: float) -> float:
    """Inverse standard normal CDF (``statistics.NormalDist.inv_cdf``: AS241, ~1e-16 relative)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"normal_ppf needs 0 < p < 1, got {p}")
    return _STANDARD_NORMAL.inv_cdf(p)


def pearson_dispersion(counts: Sequence[float], exposures: Sequence[float], rate: float,
                       min_expected: float = 0.0) -> float | None:
    """Overdispersion factor from between-unit variation: Pearson X^2 / (k - 1).

    ``counts[i]`` events out of ``exposures[i]`` trials on unit i (a host), ``rate`` the pooled
    rate. 1 means binomial (Poisson) noise only; 3 means the counts vary three times as much as
    pure chance allows (host differences, bursts). None when it cannot be estimated: fewer than
    two units with exposure, a rate of 0 or 1, or fewer than ``min_expected`` events expected per
    unit (X^2 from near-empty units measures rounding, interpolation and extrapolation, not
    dispersion: Cochran's rule asks for about 5)."""
    pairs = [(x, n) for x, n in zip(counts, exposures) if n > 0]
    if len(pairs) < 2 or not 0.0 < rate < 1.0:
        return None
    if sum(n for _, n in pairs) * rate / len(pairs) < min_expected:
        return None
    chi2 = sum((x - n * rate) ** 2 / (n * rate * (1.0 - rate)) for x, n in pairs)
    return chi2 / (len(pairs) - 1)


def mann_whitney_buckets(canary: Sequence[float], control: Sequence[float]) -> tuple[float, float, float]:
    """Mann-Whitney U on two histograms over the same buckets (per-bucket counts, not cumulative).

    Values in one bucket are ties. Returns ``(auc, z, p_greater)``: ``auc`` = P(canary > control)
    + P(tie)/2 (0.5 = same distribution), ``z`` the tie-corrected normal statistic and
    ``p_greater`` the one-sided p-value for "canary is slower"."""
    if len(canary) != len(control):
        raise ValueError("both histograms need the same buckets")
    n1, n2 = float(sum(canary)), float(sum(control))
    if n1 <= 0 or n2 <= 0:
        return 0.5, 0.0, 1.0
    u, below, ties = 0.0, 0.0, 0.0
    for c, k in zip(canary, control):
        u += c * (below + k / 2.0)
        below += k
        t = c + k
        ties += t ** 3 - t
    n = n1 + n2
    mean = n1 * n2 / 2.0
    var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0))) if n > 1 else 0.0
    auc = u / (n1 * n2)
    if var <= 0:
        return auc, 0.0, 1.0
    z = (u - mean) / math.sqrt(var)
    return auc, z, 1.0 - normal_cdf(z)


def t_cdf(t: float, df: float) -> float:
    """Student t CDF via the incomplete beta function."""
    if df <= 0:
        raise ValueError(f"t_cdf needs df > 0, got {df}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


_T_CACHE: dict[tuple[float, float], float] = {}


def t_ppf(p: float, df: float) -> float:
    """Student t quantile for 0.5 <= p < 1 (Newton from the normal quantile; memoised)."""
    if df > 1e5:
        return normal_ppf(p)
    key = (round(p, 12), round(df, 2))
    cached = _T_CACHE.get(key)
    if cached is not None:
        return cached
    df = key[1]
    z = normal_ppf(p)
    t = z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    for _ in range(30):
        density = math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))
        step = (t_cdf(t, df) - p) / density
        t -= max(min(step, t / 2 + 1), -t / 2)  # damped: stays positive
        if abs(step) < 1e-10 * max(1.0, t):
            break
    if len(_T_CACHE) < 100_000:
        _T_CACHE[key] = t
    return t


def studentize(p: float, phi: float, df: float | None) -> float:
    """Account for an *estimated* dispersion in a one-sided p-value.

    A test that divides counts by ``phi`` treats the variance as known. When ``phi`` was
    estimated from a handful of reference hosts it is itself noisy, and the test is
    overconfident both ways. The usual remedy for an estimated variance is Student's t: map the
    exact p-value to its normal deviate ``z`` and read the t tail instead, ``P(T_df > z)``. Only
    the extra-Poisson part ``phi - 1`` is uncertain (Poisson noise is known), so the degrees of
    freedom are Satterthwaite's ``df * (phi / (phi - 1))^2``: no change at ``phi = 1``, the full
    ``df`` when host differences dominate. Doing it on the p-value, rather than by inflating
    ``phi`` further, leaves the shape of the exact count distribution alone."""
    if df is None or df <= 0 or phi <= 1.0 or p <= 0.0 or p >= 0.5:
        return p
    df_eff = df * (phi / (phi - 1.0)) ** 2
    if df_eff > 1e5:
        return p
    return t_cdf(normal_ppf(p), df_eff)  # P(T < -z) = P(T > z); accurate for tiny p


def dispersion_within_slices(slices: Sequence[Sequence[tuple[float, float]]],
                             min_expected: float = 0.0) -> tuple[float, int] | None:
    """Overdispersion from many small units: Pearson X^2 over (unit, time slice) counts, each
    against *its own slice's* pooled rate, divided by the degrees of freedom sum(k_s - 1).

    ``slices[s]`` holds ``(events, trials)`` per unit (reference host) over time slice s (one
    look's increment). Comparing within a slice removes what every host shares at that moment
    (a global error burst cancels in a canary-vs-peers comparison too), while short-lived
    trouble on one host shows up; with k hosts and l looks there are l(k-1) degrees of freedom
    instead of the k-1 of the per-host totals. A slice with fewer than ``min_expected`` events
    per unit is added to the next one (the same units, in the same order) until the sum has
    enough; what never gets there counts for nothing. Returns (phi, df) or None."""
    chi2, df = 0.0, 0
    pending: list[tuple[float, float]] = []
    for units in slices:
        used = [(x, n) for x, n in units if n > 0]
        pending = [(a + x, b + n) for (a, b), (x, n) in zip(pending, used)] if len(pending) == len(used) else used
        events, trials = sum(x for x, _ in pending), sum(n for _, n in pending)
        if len(pending) < 2 or trials <= 0 or events >= trials or events < min_expected * len(pending):
            continue
        rate = events / trials
        chi2 += sum((x - n * rate) ** 2 / (n * rate * (1.0 - rate)) for x, n in pending)
        df += len(pending) - 1
        pending = []
    return (chi2 / df, df) if df > 0 else None


def negbin_cdf(k: float, mean: float, phi: float) -> float:
    """``P(X <= k)`` for a negative binomial (gamma-Poisson) count with this mean and variance
    ``phi * mean`` (phi > 1), continuous in ``k``: ``I_p(r, k + 1)`` with ``r = mean / (phi - 1)``
    and ``p = r / (r + mean) = 1 / phi``."""
    if k < 0:
        return 0.0
    if mean <= 0:
        return 1.0
    r = mean / (phi - 1.0)
    return betainc(r, k + 1.0, 1.0 / phi)


def negbin_sf(k: float, mean: float, phi: float) -> float:
    """``P(X >= k)`` for the same negative binomial: ``I_{1-p}(k, r)``."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    r = mean / (phi - 1.0)
    return betainc(k, r, 1.0 - 1.0 / phi)
