"""Each roll-out's APM series, kept for its report (``lrelease report``): per host, the requests
per second, the error rate and the latency (p50, p95) between consecutive readings of the scrape
provider.

The scrape gate keeps its readings in ``<state_dir>/gate/readings-<rollout-id>.json`` while the
roll-out may still be resumed, and the file is removed when it ends (lrelease/rollout.py,
``prune_readings``). Before that, :func:`keep` turns them into ``<state_dir>/series/<id>.json``:
numbers and host names only (no label values, no URLs, no message text), at most ``MAX_POINTS``
per host, scrubbed of known secrets; only the last ``KEEP`` roll-outs' series are kept, as the
failed runs' directories are (lrelease/failedruns.py). Providers that query a server
(prometheus, datadog, newrelic) keep nothing here: their own store has the history.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lrelease import secrets
from lrelease.apm.scrape import Reading, ReadingStore, ScrapeSettings, from_settings, summarize_between
from lrelease.gate.settings import GateSettings

KEEP = 50  # roll-outs whose series are kept under the state dir; older ones are deleted
MAX_POINTS = 300  # per host; a longer series is thinned evenly (the readings store keeps 400)
MIN_SPAN = 1.0  # seconds: readings closer than this to the last point's are merged into the next
VERSION = 1

Point = dict[str, Any]  # {"at": epoch seconds, "rps", "error_rate", "p50_ms", "p95_ms"} (None: unknown)


def settings_for(gate: GateSettings | None) -> ScrapeSettings | None:
    """The scrape settings a roll-out's gate read its hosts with; None when the gate does not
    scrape (the /health gate, or an APM provider with a server of its own)."""
    if gate is None or gate.provider != "scrape":
        return None
    return from_settings(gate.provider_settings, "gate.provider", os.environ).settings


def point(host: str, before: Reading, after: Reading, settings: ScrapeSettings) -> Point | None:
    """What the host served between two readings, or None when it served nothing then."""
    start = before.at
    if after.start_time is not None and before.start_time is not None and after.start_time != before.start_time:
        start = max(before.at, after.start_time)  # restarted (switched) in between: counted from its start
    span = after.at - start
    if span <= 0:
        return None
    metrics = summarize_between(host, before, after, settings, span)
    if metrics.no_data or metrics.requests <= 0:
        return None
    latency = metrics.latency
    p50 = latency.quantile(0.5) if latency is not None else None
    p95 = latency.quantile(0.95) if latency is not None else None
    return {"at": round(after.at, 3), "rps": _round(metrics.requests / span), "error_rate": _round(metrics.error_rate),
            "p50_ms": _round(p50 * 1000 if p50 is not None else None), "p95_ms": _round(p95 * 1000 if p95 is not None else None)}


def host_series(host: str, readings: Sequence[Reading], settings: ScrapeSettings) -> list[Point]:
    points: list[Point] = []
    base = readings[0] if readings else None
    for reading in readings[1:]:
        assert base is not None
        if reading.at - base.at < MIN_SPAN:
            continue
        found = point(host, base, reading, settings)
        if found is not None:
            points.append(found)
        base = reading
    if len(points) > MAX_POINTS:
        step = math.ceil(len(points) / MAX_POINTS)
        points = points[::step]
    return points


def from_readings(store: ReadingStore, settings: ScrapeSettings) -> dict[str, list[Point]]:
    """Each host's series from a readings store (hosts without two usable readings left out)."""
    out = {}
    for host in store.hosts():
        points = host_series(host, store.readings(host), settings)
        if points:
            out[secrets.scrub(host)] = points
    return out


def path_for(state_dir: Path, rollout_id: str) -> Path:
    return state_dir / "series" / f"{rollout_id}.json"


def keep(readings: Path, state_dir: Path, rollout_id: str, settings: ScrapeSettings,
         limit: int = KEEP) -> Path | None:
    """Write the roll-out's series from its readings file (None when it had nothing to chart),
    then drop the oldest kept series beyond ``limit``."""
    if not readings.exists():
        return None
    hosts = from_readings(ReadingStore(str(readings)), settings)
    if not hosts:
        return None
    dest = path_for(state_dir, rollout_id)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": VERSION, "rollout_id": rollout_id, "provider": "scrape", "hosts": hosts},
                              separators=(",", ":")), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, dest)
    _prune(dest.parent, limit)
    return dest


def load(state_dir: Path, rollout_id: str, readings: Path | None = None,
         settings: ScrapeSettings | None = None) -> dict[str, list[Point]] | None:
    """The roll-out's kept series; else, while its readings file is still there (it may be
    resumed), the series from it; None when neither is (nothing was scraped, or it was pruned)."""
    kept = path_for(state_dir, rollout_id)
    if kept.exists():
        try:
            data = json.loads(kept.read_text(encoding="utf-8"))
        except ValueError:
            return None
        hosts = data.get("hosts") if isinstance(data, Mapping) else None
        if not isinstance(hosts, Mapping):
            return None
        return {str(h): [_point(p) for p in points if _is_point(p)] for h, points in hosts.items()
                if isinstance(points, list)}
    if readings is not None and readings.exists() and settings is not None:
        return from_readings(ReadingStore(str(readings)), settings) or None
    return None


_FIELDS = ("rps", "error_rate", "p50_ms", "p95_ms")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_point(value: Any) -> bool:
    return isinstance(value, Mapping) and _is_number(value.get("at"))


def _point(value: Mapping[str, Any]) -> Point:
    """A point read back from a file, as written or with its odd values left out (None)."""
    return {"at": value["at"], **{k: value.get(k) if _is_number(value.get(k)) else None for k in _FIELDS}}


def _prune(root: Path, limit: int) -> None:
    kept = sorted(root.glob("*.json"), key=lambda p: p.stat().st_mtime)
    for old in kept[:max(0, len(kept) - limit)]:
        old.unlink(missing_ok=True)


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 6)
