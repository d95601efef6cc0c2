"""How much more than Poisson do counts vary across hosts? Estimated from the reference units.

Real hosts are not Poisson sources: a host may run a little hotter than its peers for the whole
bake, and a host may have a bad minute. Both make counts vary more than chance alone, and a test
that ignores it fails good builds. The factor ``phi`` (variance / mean; 1 = Poisson) is measured
on the reference units (hosts not yet switched, or baseline time slices) two ways:

- across the units' totals: Pearson X^2 / (k - 1) — sees persistent differences, k-1 df;
- across the units' per-look increments, each against its own look's pooled rate — sees
  short bursts with l(k-1) df, and ignores what all hosts share at one moment (which cancels in
  a canary-vs-peers comparison anyway).

**Few units.** A raw X^2 / df from one or two degrees of freedom is wild: with two reference
hosts and Poisson counts it exceeds 3 about 8% of the time, and a test that believes it can
neither pass nor fail (a halted good build). So each raw estimate is *moderated* (empirical
Bayes with a conjugate prior, as limma moderates gene variances): ``X^2 ~ phi chi^2_d`` and a
scaled-inverse-chi-square prior on ``phi`` centred on 1 (Poisson) and worth ``PRIOR_DF``
degrees of freedom give the posterior scale

    phi~ = (PRIOR_DF x 1 + d x phi_raw) / (PRIOR_DF + d)   with PRIOR_DF + d degrees of freedom,

then ``max(1, phi~)``: a Poisson source cannot vary less than Poisson, and a phi below 1 would
make the tests overconfident both ways. Few degrees of freedom leave the estimate near 1; many
let the data speak (phi~ -> phi_raw as d grows). No degree of freedom at all (one reference
unit, no per-look increments with two units): Poisson, and the check's ``floor`` is what keeps
small differences from failing — never an inflated guess.

**Few events.** X^2 measures dispersion only when each unit expects a handful of events
(``MIN_EXPECTED``, Cochran's rule); below that it measures rounding, interpolation inside a
histogram bucket and a metrics server's extrapolation (a latency tail beyond everything the
reference served read as phi 119 on the sandbox). Totals then give no estimate, and per-look
increments are summed over consecutive looks until they expect enough.

Of the two moderated estimates the larger is used; when the totals win, only their excess over
the per-look estimate rests on the totals' df, and Satterthwaite's formula gives the effective
df of the extra-Poisson part; p-values are then read from Student's t for that df
(``stats.studentize``).

Gamma-Poisson counts have extra variance growing with the square of the mean, so ``phi - 1``
grows with a unit's expected count: a canary tested against "twice the reference rate" is
tested with twice the extra-Poisson part. ``Dispersion.for_unit`` does that scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lrelease.gate.stats import dispersion_within_slices, pearson_dispersion, studentize

PRIOR_DF = 10.0  # the Poisson prior's weight, in degrees of freedom of reference data
# Events a unit (a host, a slice) must be expected to hold before its spread says anything about
# dispersion (Cochran's rule for X^2). Below it, slices are summed over time until they do; a
# latency threshold beyond everything the reference served, or a few errors a minute, is Poisson.
MIN_EXPECTED = 5.0
POISSON = "Poisson (fewer than 2 reference units with traffic, or no events; the floor applies)"


def moderate(raw: float, df: float, prior_df: float = PRIOR_DF) -> float:
    """The raw estimate ``raw`` (X^2 / df) shrunk towards 1 by a prior worth ``prior_df`` df; >= 1."""
    if df <= 0:
        return 1.0
    return max(1.0, (prior_df + df * raw) / (prior_df + df))


@dataclass(frozen=True)
class Dispersion:
    phi: float = 1.0
    df: float | None = None  # degrees of freedom of the estimate; None: known (configured or assumed)
    rate: float = 0.0  # the reference units' pooled event rate it was measured at
    unit_exposure: float = 0.0  # the reference units' trials, sum(n^2)/sum(n)
    how: str = POISSON
    estimates: tuple[tuple[str, float], ...] = ()  # the raw estimates, before moderation

    def __post_init__(self) -> None:
        if not self.phi >= 1.0:  # also catches NaN
            raise ValueError(f"a dispersion factor is at least 1, got {self.phi!r}")

    def for_unit(self, rate: float | None = None, exposure: float | None = None) -> float:
        """``phi`` for a unit with ``exposure`` trials at event ``rate`` (gamma-Poisson scaling)."""
        if rate is None or exposure is None or self.phi <= 1.0 or self.rate <= 0 or self.unit_exposure <= 0:
            return self.phi
        return max(1.0, 1.0 + (self.phi - 1.0) * (rate * exposure) / (self.rate * self.unit_exposure))

    def studentize(self, p: float, phi: float) -> float:
        """A one-sided p-value computed with ``phi`` (this estimate, scaled), corrected for the
        estimate's own uncertainty (Student's t with Satterthwaite's degrees of freedom)."""
        return studentize(p, phi, self.df)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phi": round(self.phi, 3), "from": self.how}
        if self.df is not None:
            out["df"] = round(self.df, 1)
        if self.estimates:
            out["estimates"] = {name: round(value, 3) for name, value in self.estimates}
        return out


def estimate(counts: Sequence[float], exposures: Sequence[float], rate: float,
             slices: Sequence[Sequence[tuple[float, float]]] = (), fixed: float | None = None,
             prior_df: float = PRIOR_DF) -> Dispersion:
    """``counts[i]`` events in ``exposures[i]`` trials on reference unit i (totals since the bake
    started), ``rate`` their pooled rate; ``slices`` the same units' per-look increments."""
    if fixed is not None:
        return Dispersion(phi=fixed, how="configured")
    used = [n for n in exposures if n > 0]
    units = len(used)
    unit_exposure = sum(n * n for n in used) / sum(used) if used else 0.0
    totals = pearson_dispersion(counts, exposures, rate, MIN_EXPECTED)
    within = dispersion_within_slices(slices, MIN_EXPECTED) if slices else None
    raw = tuple((name, value) for name, value in (("totals", totals), ("per_look", within and within[0]))
                if value is not None)
    if totals is None and within is None:
        return Dispersion(estimates=raw)
    common = {"rate": rate, "unit_exposure": unit_exposure, "estimates": raw}
    prior = f"moderated by a Poisson prior worth {prior_df:g} df" if prior_df > 0 else "no Poisson prior"
    d_t = float(units - 1)
    phi_t = moderate(totals, d_t, prior_df) if totals is not None else None
    if within is None or (phi_t is not None and within[1] <= d_t):  # the per-look view adds nothing
        return Dispersion(phi=phi_t or 1.0, df=prior_df + d_t, how=f"totals of {units} reference units, {prior}",
                          **common)
    phi_w, d_w = moderate(within[0], within[1], prior_df), float(within[1])
    if phi_t is None or phi_t <= phi_w:
        return Dispersion(phi=phi_w, df=prior_df + d_w, how=f"per-look increments ({within[1]} df), {prior}",
                          **common)
    # The totals exceed the per-look estimate by the persistent differences between units. Only
    # that excess rests on the totals' df; Satterthwaite gives the extra-Poisson part's effective df.
    bursts, persistent = phi_w - 1.0, phi_t - phi_w
    df = (bursts + persistent) ** 2 / (bursts ** 2 / (prior_df + d_w) + persistent ** 2 / (prior_df + d_t))
    return Dispersion(phi=phi_t, df=df, how=f"totals of {units} reference units and per-look bursts, {prior}",
                      **common)
