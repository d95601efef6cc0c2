"""Latency as a provider delivers it: histogram buckets, raw samples, or only quantiles.

All values are seconds. Buckets are cumulative ``(le, count)`` pairs in increasing ``le`` order
ending with ``+Inf``, exactly as Prometheus histograms are exposed.

Inside a bucket the shape is unknown and must be assumed. Two models are offered:

- ``linear``: the cumulative count grows linearly inside a bucket — PromQL's
  ``histogram_quantile`` (the first bucket starts at 0; the +Inf bucket has no upper edge). Shown
  to humans, because it is what their dashboards show.
- ``lognormal``: the cumulative *probit* grows linearly in *log latency* inside a bucket, which
  is exact for log-normal latencies and close for the right-skewed shapes latencies have. With
  wide buckets the difference matters: in a (100 ms, 250 ms] bucket where density falls
  steeply, linear interpolation can put a true 150 ms p95 at 210 ms and make a +50% regression
  look like +15%. The judge decides with this model.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from lrelease.gate.stats import normal_cdf, normal_ppf

INF = math.inf


@dataclass(frozen=True)
class Latency:
    """One host's (or a pooled group's) latency over a window. Exactly one form is usually set."""

    buckets: tuple[tuple[float, float], ...] = ()  # cumulative (le seconds, count), last le = inf
    samples: tuple[float, ...] = ()  # seconds, any order
    quantiles: Mapping[float, float] = field(default_factory=dict)  # {0.95: seconds}
    count_hint: float = 0.0  # requests behind ``quantiles`` when only quantiles are known

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantiles", MappingProxyType(dict(self.quantiles)))
        if self.buckets:
            bounds = [le for le, _ in self.buckets]
            if bounds != sorted(bounds) or bounds[-1] != INF:
                raise ValueError("histogram buckets must be sorted by le and end with +Inf")

    @classmethod
    def from_buckets(cls, pairs: Iterable[tuple[float, float]]) -> Latency:
        """Cumulative (le, count) pairs in any order; the counts are made non-decreasing (a
        counter reset in one series can leave a dip) and a missing +Inf is added."""
        ordered = sorted(pairs)
        if not ordered:
            return cls()
        fixed: list[tuple[float, float]] = []
        running = 0.0
        for le, count in ordered:
            running = max(running, float(count))
            fixed.append((float(le), running))
        if fixed[-1][0] != INF:
            fixed.append((INF, running))
        return cls(buckets=tuple(fixed))

    @property
    def kind(self) -> str:
        if self.buckets:
            return "buckets"
        if self.samples:
            return "samples"
        return "quantiles" if self.quantiles else "none"

    @property
    def count(self) -> float:
        if self.buckets:
            return self.buckets[-1][1]
        if self.samples:
            return float(len(self.samples))
        return self.count_hint

    @property
    def has_distribution(self) -> bool:
        return bool(self.buckets) or bool(self.samples)

    def quantile(self, q: float, model: str = "linear") -> float | None:
        """The q-quantile in seconds, or None without data."""
        if self.buckets:
            return histogram_quantile(q, self.buckets) if model == "linear" else lognormal_quantile(q, self.buckets)
        if self.samples:
            return sample_quantile(q, self.samples)
        return self.quantiles.get(q)

    def count_above(self, t: float, model: str = "linear") -> float | None:
        """How many requests took longer than ``t`` seconds (interpolated inside a bucket; the
        whole +Inf bucket counts as above any t past the last finite bound). None for quantiles."""
        if self.buckets:
            at = cumulative_at(t, self.buckets) if model == "linear" else lognormal_cumulative_at(t, self.buckets)
            return self.count - at
        if self.samples:
            return float(sum(1 for s in self.samples if s > t))
        return None

    def per_bucket(self) -> list[float]:
        """Non-cumulative counts per bucket (for a rank test)."""
        out, previous = [], 0.0
        for _, cumulative in self.buckets:
            out.append(cumulative - previous)
            previous = cumulative
        return out

    def minus(self, earlier: Latency) -> Latency | None:
        """The latency between two cumulative readings (later minus earlier); None unless both
        are histograms with the same bounds (or samples, which cannot be subtracted)."""
        if not (self.buckets and earlier.buckets) or [b for b, _ in self.buckets] != [b for b, _ in earlier.buckets]:
            return None
        return Latency.from_buckets((le, max(0.0, c - e)) for (le, c), (_, e) in zip(self.buckets, earlier.buckets))

    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind, "count": round(self.count, 3)}
        for q in (0.5, 0.95, 0.99):
            value = self.quantile(q)
            if value is not None:
                out[f"p{round(q * 100):d}_ms"] = round(value * 1000.0, 3)
        return out


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """PromQL's ``histogram_quantile`` on cumulative buckets ending with +Inf."""
    if not buckets or not 0.0 <= q <= 1.0:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for i, (le, count) in enumerate(buckets):
        if count >= rank and count > lower_count:
            if le == INF:
                # Prometheus answers with the highest finite bound: the tail has no upper edge.
                return buckets[i - 1][0] if i > 0 else None
            if i == 0 and le <= 0:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = (le if le != INF else lower_bound), count
    return buckets[-2][0] if len(buckets) > 1 else None


def cumulative_at(t: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Requests at or below ``t`` seconds, interpolated linearly inside the bucket holding t."""
    bounds = [le for le, _ in buckets]
    i = bisect.bisect_left(bounds, t)
    if i >= len(buckets) or buckets[i][0] == INF:
        finite = [c for le, c in buckets if le != INF]
        return finite[-1] if finite else 0.0
    le, count = buckets[i]
    lower_bound, lower_count = (buckets[i - 1][0], buckets[i - 1][1]) if i > 0 else (0.0, 0.0)
    if le <= lower_bound:
        return count
    fraction = max(0.0, min(1.0, (t - lower_bound) / (le - lower_bound)))
    return lower_count + (count - lower_count) * fraction


def lognormal_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile with probit(cumulative share) linear in log(latency) inside the bucket
    (linear interpolation where that is undefined: the first bucket, empty ends)."""
    linear = histogram_quantile(q, buckets)
    if linear is None:
        return None
    total = buckets[-1][1]
    for i in range(1, len(buckets)):
        (lo, c_lo), (hi, c_hi) = buckets[i - 1], buckets[i]
        if hi == INF or c_hi < q * total or c_hi <= c_lo:
            continue
        if c_lo >= q * total:  # the rank lies in an earlier bucket (float counts left a step flat)
            return linear
        p_lo, p_hi = c_lo / total, c_hi / total
        if lo <= 0 or not 0.0 < p_lo < 1.0 or not 0.0 < p_hi < 1.0:
            return linear
        z_lo, z_hi, z = normal_ppf(p_lo), normal_ppf(p_hi), normal_ppf(q)
        return math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * (z - z_lo) / (z_hi - z_lo))
    return linear


def lognormal_cumulative_at(t: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Requests at or below ``t`` with the same within-bucket model as ``lognormal_quantile``."""
    linear = cumulative_at(t, buckets)
    total = buckets[-1][1] if buckets else 0.0
    bounds = [le for le, _ in buckets]
    i = bisect.bisect_left(bounds, t)
    if total <= 0 or i == 0 or i >= len(buckets) or buckets[i][0] == INF or t <= 0:
        return linear
    (lo, c_lo), (hi, c_hi) = buckets[i - 1], buckets[i]
    p_lo, p_hi = c_lo / total, c_hi / total
    if lo <= 0 or c_hi <= c_lo or not 0.0 < p_lo < 1.0 or not 0.0 < p_hi < 1.0:
        return linear
    z_lo, z_hi = normal_ppf(p_lo), normal_ppf(p_hi)
    z = z_lo + (z_hi - z_lo) * (math.log(t) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return total * normal_cdf(z)


def sample_quantile(q: float, samples: Sequence[float]) -> float | None:
    """Linear interpolation between order statistics (the usual "type 7" definition)."""
    if not samples:
        return None
    ordered = sorted(samples)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def pool(latencies: Iterable[Latency | None]) -> Latency | None:
    """One latency for a group of hosts. Histograms with the same bounds add up exactly; other
    bounds are merged at the union of bounds (interpolated). Samples are concatenated. Quantiles
    alone cannot be pooled exactly: the request-weighted mean of each quantile is used."""
    present = [lat for lat in latencies if lat is not None and lat.kind != "none"]
    if not present:
        return None
    if all(lat.buckets for lat in present):
        bounds = sorted({le for lat in present for le, _ in lat.buckets})
        same = all(len(lat.buckets) == len(bounds) for lat in present)
        totals = []
        for le in bounds:
            if same:
                totals.append(sum(dict(lat.buckets)[le] for lat in present))
            else:
                totals.append(sum(lat.count if le == INF else cumulative_at(le, lat.buckets) for lat in present))
        return Latency.from_buckets(zip(bounds, totals))
    if all(lat.samples for lat in present):
        return Latency(samples=tuple(s for lat in present for s in lat.samples))
    levels = sorted({q for lat in present for q in lat.quantiles} | {0.5, 0.9, 0.95, 0.99})
    merged: dict[float, float] = {}
    for q in levels:
        found = [(max(lat.count, 1.0), lat.quantile(q)) for lat in present]
        if all(value is not None for _, value in found):
            merged[q] = sum(w * v for w, v in found) / sum(w for w, _ in found)  # type: ignore[operator]
    return Latency(quantiles=merged, count_hint=sum(lat.count for lat in present)) if merged else None
