"""Settings of the statistical judge (``gate:`` of an environment in lrelease.yml), validated.

    gate:
      bake_seconds: 180         # first look this long after the switch
      max_bake_seconds: 1800    # Inconclusive until then extends the bake; then the policy applies
      interval_seconds: 180     # between looks (10 looks at most here)
      policy: halt              # halt (pause for a human, exit 5) | rollback
      alpha: 0.01               # chance of failing a good build, per check, over the whole bake
      beta: 0.05                # chance of passing a build as bad as detect_ratio / detect
      min_requests: 200         # per side (canary hosts, reference hosts) before any statistics
      dispersion: auto          # auto (estimated from the reference hosts) or a fixed factor >= 1
      errors:                   # 5xx
        compare: true           # canary vs the hosts not yet switched (or its own baseline)
        margin: 1.3             # a rate up to 1.3x the reference's is tolerated
        detect_ratio: 2.0       # the regression the gate must catch
        floor: 0.001            # a rate difference below 0.1 percentage point never fails
        max_rate: 0.05          # optional plain threshold
      latency:
        compare: true
        quantile: 0.95
        margin: 0.2             # +20% on the quantile is tolerated ...
        floor_ms: 20            # ... and so is +20 ms (the larger of the two)
        detect: 0.5             # the regression the gate must catch (+50%)
        max_ms: 800             # optional plain threshold
        method: quantile        # quantile (exact binomial on the tail) | mannwhitney

``errors: null`` / ``latency: null`` switch a check off. Every error is a ConfigError naming
``where``, the key and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lrelease.errors import ConfigError
from lrelease.schema import Checker, join

POLICIES = ("halt", "rollback")
_KEY = "gate"
METHODS = ("quantile", "mannwhitney")


@dataclass(frozen=True)
class ErrorCheck:
    compare: bool = True
    margin: float = 1.3
    detect_ratio: float = 2.0
    floor: float = 0.001
    max_rate: float | None = None


@dataclass(frozen=True)
class LatencyCheck:
    compare: bool = True
    quantile: float = 0.95
    margin: float = 0.2
    detect: float = 0.5
    floor_ms: float = 20.0
    max_ms: float | None = None
    method: str = "quantile"


@dataclass(frozen=True)
class JudgeConfig:
    errors: ErrorCheck | None = field(default_factory=ErrorCheck)
    latency: LatencyCheck | None = field(default_factory=LatencyCheck)
    alpha: float = 0.01
    beta: float = 0.05
    min_requests: int = 200
    bake_seconds: float = 180.0
    max_bake_seconds: float = 1800.0
    interval_seconds: float = 180.0
    policy: str = "halt"
    dispersion: float | None = None  # None: estimated from the reference hosts

    def __post_init__(self) -> None:
        validate(self, "judge settings", _KEY)

    @property
    def max_looks(self) -> int:
        """Planned looks in one bake: at bake_seconds, then every interval up to max_bake_seconds."""
        return 1 + math.floor((self.max_bake_seconds - self.bake_seconds) / self.interval_seconds + 1e-9)

    def look_weight(self, look: int) -> float:
        """Share of the bake's error budget spent at look ``look`` (1-based): proportional to the
        look's index, i.e. to the data seen by then (a weighted Bonferroni split; the weights sum
        to 1 over the planned looks, so the bake as a whole keeps alpha and beta). Early looks
        still catch gross regressions; the last look, with the most data, gets the largest share."""
        m = self.max_looks
        k = min(max(look, 1), m)
        return k / (m * (m + 1) / 2.0)

    def alpha_at(self, look: int) -> float:
        return self.alpha * self.look_weight(look)

    def beta_at(self, look: int) -> float:
        return self.beta * self.look_weight(look)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str, key: str = "gate") -> JudgeConfig:
        """Build from a YAML mapping; unknown keys and bad values are ConfigErrors."""
        c = Checker(where)
        top = c.mapping(dict(data), key, optional=(
            "errors", "latency", "alpha", "beta", "min_requests", "bake_seconds", "max_bake_seconds",
            "interval_seconds", "policy", "dispersion"))
        kwargs: dict[str, Any] = {}
        for name in ("alpha", "beta"):
            if name in top:
                kwargs[name] = _probability(c, top[name], join(key, name))
        if "min_requests" in top:
            kwargs["min_requests"] = c.integer(top["min_requests"], join(key, "min_requests"), minimum=1)
        for name in ("bake_seconds", "max_bake_seconds"):
            if name in top:
                kwargs[name] = float(c.number(top[name], join(key, name)))
        if "interval_seconds" in top:
            kwargs["interval_seconds"] = float(c.number(top["interval_seconds"], join(key, "interval_seconds"),
                                                        exclusive=True))
        if "policy" in top:
            if top["policy"] not in POLICIES:
                c.fail(join(key, "policy"), f"one of {', '.join(POLICIES)}, got {top['policy']!r}")
            kwargs["policy"] = top["policy"]
        if "dispersion" in top and top["dispersion"] != "auto":
            value = top["dispersion"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
                c.fail(join(key, "dispersion"), f"auto or a number >= 1, got {value!r}")
            kwargs["dispersion"] = float(value)
        if "errors" in top:
            kwargs["errors"] = None if top["errors"] is None else _errors(c, top["errors"], join(key, "errors"))
        if "latency" in top:
            kwargs["latency"] = None if top["latency"] is None else _latency(c, top["latency"], join(key, "latency"))
        try:
            return cls(**kwargs)
        except ConfigError as err:  # a rule spanning fields: re-name the key for this file
            raise ConfigError(where, key + err.key[len(_KEY):], err.expected) from None


def _probability(c: Checker, value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 0.5:
        c.fail(key, f"a probability between 0 and 0.5 (e.g. 0.01), got {value!r}")
    return float(value)


def _positive(c: Checker, value: Any, key: str, *, minimum: float = 0.0, exclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            value <= minimum if exclusive else value < minimum):
        c.fail(key, f"a number {'>' if exclusive else '>='} {minimum:g}, got {value!r}")
    return float(value)


def _errors(c: Checker, data: Any, key: str) -> ErrorCheck:
    m = c.mapping(data, key, optional=("compare", "margin", "detect_ratio", "floor", "max_rate"))
    d = ErrorCheck()
    check = ErrorCheck(
        compare=c.boolean(m["compare"], join(key, "compare")) if "compare" in m else d.compare,
        margin=_positive(c, m["margin"], join(key, "margin"), minimum=1.0, exclusive=False) if "margin" in m else d.margin,
        detect_ratio=_positive(c, m["detect_ratio"], join(key, "detect_ratio"), minimum=1.0)
        if "detect_ratio" in m else d.detect_ratio,
        floor=_positive(c, m["floor"], join(key, "floor"), exclusive=False) if "floor" in m else d.floor,
        max_rate=None if m.get("max_rate") is None else _fraction(c, m["max_rate"], join(key, "max_rate")),
    )
    return check


def _fraction(c: Checker, value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        c.fail(key, f"an error rate between 0 and 1 (0.01 = 1%), got {value!r}")
    return float(value)


def _latency(c: Checker, data: Any, key: str) -> LatencyCheck:
    m = c.mapping(data, key, optional=("compare", "quantile", "margin", "detect", "floor_ms", "max_ms", "method"))
    d = LatencyCheck()
    quantile = d.quantile
    if "quantile" in m:
        quantile = m["quantile"]
        if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0.5 <= quantile < 1:
            c.fail(join(key, "quantile"), f"a quantile from 0.5 to 0.999 (e.g. 0.95), got {quantile!r}")
    method = m.get("method", d.method)
    if method not in METHODS:
        c.fail(join(key, "method"), f"one of {', '.join(METHODS)}, got {method!r}")
    return LatencyCheck(
        compare=c.boolean(m["compare"], join(key, "compare")) if "compare" in m else d.compare,
        quantile=float(quantile),
        margin=_positive(c, m["margin"], join(key, "margin"), exclusive=False) if "margin" in m else d.margin,
        detect=_positive(c, m["detect"], join(key, "detect")) if "detect" in m else d.detect,
        floor_ms=_positive(c, m["floor_ms"], join(key, "floor_ms"), exclusive=False) if "floor_ms" in m else d.floor_ms,
        max_ms=None if m.get("max_ms") is None else _positive(c, m["max_ms"], join(key, "max_ms")),
        method=method,
    )


def validate(config: JudgeConfig, where: str, key: str = "gate") -> None:
    """Rules spanning fields (also applied to configs built in code)."""
    c = Checker(where)
    if not 0 < config.alpha < 0.5:
        c.fail(join(key, "alpha"), f"a probability between 0 and 0.5, got {config.alpha!r}")
    if not 0 < config.beta < 0.5:
        c.fail(join(key, "beta"), f"a probability between 0 and 0.5, got {config.beta!r}")
    if config.min_requests < 1:
        c.fail(join(key, "min_requests"), f"an integer >= 1, got {config.min_requests!r}")
    if config.bake_seconds < 0 or config.interval_seconds <= 0:
        c.fail(join(key, "interval_seconds"), "bake_seconds >= 0 and interval_seconds > 0")
    if config.max_bake_seconds < config.bake_seconds:
        c.fail(join(key, "max_bake_seconds"),
               f"at least bake_seconds ({config.bake_seconds:g}), got {config.max_bake_seconds:g}")
    if config.policy not in POLICIES:
        c.fail(join(key, "policy"), f"one of {', '.join(POLICIES)}, got {config.policy!r}")
    if config.dispersion is not None and config.dispersion < 1:
        c.fail(join(key, "dispersion"), f"auto or a number >= 1, got {config.dispersion!r}")
    e, lat = config.errors, config.latency
    if e is not None:
        if e.detect_ratio <= e.margin:
            c.fail(join(key, "errors.detect_ratio"),
                   f"a ratio above margin ({e.margin:g}), got {e.detect_ratio:g}")
        if not e.compare and e.max_rate is None:
            c.fail(join(key, "errors"), "compare: true or a max_rate (otherwise nothing is checked)")
    if lat is not None:
        if lat.detect <= lat.margin:
            c.fail(join(key, "latency.detect"), f"more than margin ({lat.margin:g}), got {lat.detect:g}")
        if not lat.compare and lat.max_ms is None:
            c.fail(join(key, "latency"), "compare: true or a max_ms (otherwise nothing is checked)")
    if e is None and lat is None:
        c.fail(join(key, "errors"), "at least one of errors and latency")
