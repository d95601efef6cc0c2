"""How much more than Poisson do counts vary across hosts? Estimated from the reference units.

Real hosts are not Poisson sources: a host may run a little hotter than its peers for the whole
bake, and a host may have a bad minute. Both make counts vary more than chance alone, and a test
that ignores it halts good builds. The factor ``phi`` (variance / mean; 1 = Poisson) is estimated
from the reference units (hosts not yet switched, or baseline time slices) two ways:

- across the units' totals: Pearson X^2 / (k - 1) — sees persistent differences, k-1 df;
- across the units' per-look increments, each against its own look's pooled rate — sees
  short bursts with l(k-1) df, and ignores what all hosts share at one moment (which cancels in
  a canary-vs-peers comparison anyway).

The larger is used; when the totals win, only their excess over the per-look estimate rests on
k-1 df, and Satterthwaite's formula gives the effective df of the extra-Poisson part; p-values
are then read from Student's t for that df (``stats.studentize``).

Gamma-Poisson counts have extra variance growing with the square of the mean, so ``phi - 1``
grows with a unit's expected count: a canary tested against "twice the reference rate" is
tested with twice the extra-Poisson part. ``Dispersion.for_unit`` does that scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lrelease.gate.stats import dispersion_within_slices, pearson_dispersion, studentize


@dataclass(frozen=True)
class Dispersion:
    phi: float = 1.0
    df: float | None = None  # degrees of freedom of the estimate; None: known (configured or assumed)
    rate: float = 0.0  # the reference units' pooled event rate it was measured at
    unit_exposure: float = 0.0  # the reference units' trials, sum(n^2)/sum(n)
    how: str = "not estimable (fewer than 2 reference units with traffic, or no events): Poisson assumed"
    estimates: tuple[tuple[str, float], ...] = ()

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
             slices: Sequence[Sequence[tuple[float, float]]] = (), fixed: float | None = None) -> Dispersion:
    """``counts[i]`` events in ``exposures[i]`` trials on reference unit i (totals since the bake
    started), ``rate`` their pooled rate; ``slices`` the same units' per-look increments."""
    if fixed is not None:
        return Dispersion(phi=fixed, how="configured")
    used = [n for n in exposures if n > 0]
    units = len(used)
    unit_exposure = sum(n * n for n in used) / sum(used) if used else 0.0
    totals = pearson_dispersion(counts, exposures, rate)
    within = dispersion_within_slices(slices) if slices else None
    estimates = tuple((name, value) for name, value in (("totals", totals), ("per_look", within and within[0]))
                      if value is not None)
    if totals is None and within is None:
        return Dispersion()
    common = {"rate": rate, "unit_exposure": unit_exposure, "estimates": estimates}
    if within is None or (totals is not None and within[1] <= units - 1):
        return Dispersion(phi=max(1.0, totals or 1.0), df=float(units - 1),
                          how=f"totals of {units} reference units", **common)
    if totals is None or totals <= within[0]:
        return Dispersion(phi=max(1.0, within[0]), df=float(within[1]),
                          how=f"per-look increments ({within[1]} df)", **common)
    # The totals exceed the per-look estimate by the persistent differences between units. Only
    # that excess rests on k-1 df; Satterthwaite gives the extra-Poisson part's effective df.
    bursts, persistent = max(0.0, within[0] - 1.0), totals - max(1.0, within[0])
    df = (bursts + persistent) ** 2 / (bursts ** 2 / within[1] + persistent ** 2 / (units - 1))
    return Dispersion(phi=totals, df=df, how=f"totals of {units} reference units and per-look bursts", **common)
