"""The ``scrape`` provider: read each host's Prometheus-format /metrics directly; no server needed.

Counters only go up, so the traffic in a window is the difference between two readings: one
taken at (or near) the window's start, one at its end. ``mark(hosts)`` takes a reading now
(the gate marks hosts at the switch); ``fetch`` reads again and subtracts. Readings are kept in
a :class:`ReadingStore` (in memory, or a JSON file so that separate processes, e.g. one Ansible
task per wave, share them) and a past window, such as the last wave's "before the switch"
baseline, is answered from stored readings.

A counter that went down, or a changed ``process_start_time_seconds``, means the process
restarted (it does, at a switch): the new value then counts from zero, as PromQL's
``increase`` does. Latency comes from the histogram's bucket deltas.

The metric names default to the OpenTelemetry HTTP server conventions as a Prometheus exporter
shows them (``http.server.request.duration`` in seconds: the histogram
``http_server_request_duration_seconds``, whose ``_count`` counts the requests, labelled
``http_response_status_code``); an app that names its own sets ``requests_metric``,
``latency_metric`` and ``code_label`` (docs/apm-gate.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrelease.apm import HostMetrics, HostRef, ProviderError, Window, no_data
from lrelease.apm.expfmt import ACCEPT, Exposition, ExpositionError, Labels, parse
from lrelease.apm.latency import Latency
from lrelease.apm.transport import Http, Reply, Settings, Unreachable, snippet

Key = tuple[str, Labels]


@dataclass(frozen=True)
class ScrapeSettings:
    # OpenTelemetry's http.server.request.duration (seconds) through a Prometheus exporter:
    requests_metric: str = "http_server_request_duration_seconds_count"  # a counter of requests
    latency_metric: str = "http_server_request_duration_seconds"  # a histogram (…_bucket{le}), seconds
    code_label: str = "http_response_status_code"
    error_codes: str = "5.."  # regex on the code label, anchored
    match: Mapping[str, str] = field(default_factory=dict)  # label -> regex that must match
    exclude: Mapping[str, str] = field(default_factory=dict)  # label -> regex that must not match
    metrics_path: str = "/metrics"
    start_time_metric: str = "process_start_time_seconds"
    timeout: float = 2.0
    tolerance: float = 5.0  # seconds between a window's start and the reading taken for it
    sample_seconds: float = 10.0  # during a bake, read every host this often (0: only at looks)
    state_path: str = ""  # JSON file sharing readings between processes; "" keeps them in memory
    ca_bundle: str = ""  # a CA file to trust for https:// hosts ("": the system's, or REQUESTS_CA_BUNDLE)

    def selected(self, labels: Labels) -> bool:
        found = dict(labels)
        for label, pattern in self.match.items():
            if not re.fullmatch(pattern, found.get(label, "")):
                return False
        for label, pattern in self.exclude.items():
            if re.fullmatch(pattern, found.get(label, "")):
                return False
        return True


@dataclass(frozen=True)
class Reading:
    """The counters of one host at one moment (only the series a gate needs)."""

    at: float
    start_time: float | None
    counters: Mapping[Key, float]


def reading_from(exposition: Exposition, settings: ScrapeSettings, at: float) -> Reading:
    """Keep the request counters and the latency buckets of one parsed /metrics page."""
    wanted = {settings.requests_metric, settings.latency_metric + "_bucket"}
    counters = {(s.name, s.labels): s.value for s in exposition.samples if s.name in wanted}
    return Reading(at, exposition.value(settings.start_time_metric), counters)


def increase(before: Reading, after: Reading) -> dict[Key, float]:
    """Per-series increase from ``before`` to ``after``, counting restarts like PromQL does."""
    restarted = (before.start_time is not None and after.start_time is not None
                 and after.start_time != before.start_time)
    out: dict[Key, float] = {}
    for key, value in after.counters.items():
        previous = before.counters.get(key)
        if restarted or previous is None or value < previous:
            out[key] = value
        else:
            out[key] = value - previous
    return out


def restarted_between(before: Reading, after: Reading) -> bool:
    """The process restarted between two readings: a changed start time, or a counter that went
    down (an app without ``process_start_time_seconds``)."""
    if before.start_time is not None and after.start_time is not None:
        return after.start_time != before.start_time
    return any(value < before.counters.get(key, 0.0) for key, value in after.counters.items())


def summarize(host: str, deltas: Mapping[Key, float], settings: ScrapeSettings, seconds: float) -> HostMetrics:
    """Requests, 5xx errors and latency buckets from per-series increases."""
    errors_re = re.compile(settings.error_codes)
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    seen_requests = False
    for (name, labels), value in deltas.items():
        if name == settings.requests_metric:
            if not settings.selected(labels):
                continue
            seen_requests = True
            requests += value
            code = dict(labels).get(settings.code_label, "")
            if errors_re.fullmatch(code):
                errors += value
        elif name == settings.latency_metric + "_bucket":
            plain = tuple(p for p in labels if p[0] != "le")
            if not settings.selected(plain):
                continue
            le = dict(labels).get("le", "")
            try:
                bound = float(le)
            except ValueError:
                continue
            buckets[bound] = buckets.get(bound, 0.0) + value
    if not seen_requests:
        return no_data(host, f"no {settings.requests_metric} series (after filters) in {settings.metrics_path} "
                             "(an app with its own metric names sets requests_metric, latency_metric, code_label)",
                       seconds=seconds)
    latency = Latency.from_buckets(buckets.items()) if buckets else None
    return HostMetrics(host=host, requests=requests, errors=errors, latency=latency, seconds=seconds)


class ReadingStore:
    """Readings per host, oldest first; optionally persisted to a JSON file shared by processes
    (the gate tasks of one wave run side by side): every change is a read-modify-write under an
    exclusive lock on a sidecar file, then an atomic rename, so no process loses another's
    readings and no reader sees half a file."""

    MAX_PER_HOST = 400

    def __init__(self, path: str = "") -> None:
        self.path = Path(path) if path else None
        self._by_host: dict[str, list[Reading]] = {}
        if self.path is not None and self.path.exists():
            self._load()

    @staticmethod
    def lock_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.lock")

    @classmethod
    def discard(cls, path: Path) -> None:
        """Remove a readings file and its lock (the roll-out they served has ended)."""
        path.unlink(missing_ok=True)
        cls.lock_path(path).unlink(missing_ok=True)

    def add(self, host: str, reading: Reading) -> None:
        self.add_many({host: reading})

    def add_many(self, readings: Mapping[str, Reading]) -> None:
        """Keep one reading per host, all in one write (a look or a sample reads every host)."""
        if self.path is None:
            self._add(readings)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path(self.path), "a", encoding="utf-8") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
            self._load()  # another process may have added readings since
            self._add(readings)
            self._save()

    def _add(self, readings: Mapping[str, Reading]) -> None:
        for host, reading in readings.items():
            kept = self._by_host.setdefault(host, [])
            kept.append(reading)
            kept.sort(key=lambda r: r.at)
            del kept[:-self.MAX_PER_HOST]

    def refresh(self) -> None:
        """Take in what other processes added since (once per look, not once per host)."""
        if self.path is not None:
            self._load()

    def readings(self, host: str) -> list[Reading]:
        return list(self._by_host.get(host, []))

    def nearest(self, host: str, at: float, tolerance: float) -> Reading | None:
        candidates = [r for r in self.readings(host) if abs(r.at - at) <= tolerance]
        return min(candidates, key=lambda r: abs(r.at - at), default=None)

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # missing or unreadable: start afresh (readings are only a cache of the hosts)
        self._by_host = {host: [_decode(r) for r in readings] for host, readings in data.items()}

    def _save(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        data = {host: [_encode(r) for r in readings] for host, readings in self._by_host.items()}
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.path)


def _encode(reading: Reading) -> dict[str, Any]:
    return {"at": reading.at, "start_time": reading.start_time,
            "counters": [[name, [list(p) for p in labels], value] for (name, labels), value in reading.counters.items()]}


def _decode(data: Mapping[str, Any]) -> Reading:
    counters = {(name, tuple((k, v) for k, v in labels)): float(value) for name, labels, value in data["counters"]}
    return Reading(float(data["at"]), data.get("start_time"), counters)


Getter = Callable[[str], Reply]  # url -> the answer (status, body, Content-Type)


class ScrapeProvider:
    name = "scrape"

    def __init__(self, settings: ScrapeSettings, *, get: Getter | None = None,
                 clock: Callable[[], float] = time.time, store: ReadingStore | None = None) -> None:
        self.settings = settings
        self._clock = clock
        self.store = store or ReadingStore(settings.state_path)
        self._get = get or self._http_get
        self._http: Http | None = None
        self.sample_seconds = settings.sample_seconds

    def _http_get(self, url: str) -> Reply:
        if self._http is None:
            self._http = Http(self.name, self.settings.timeout, ca_bundle=self.settings.ca_bundle)
        return self._http.request("GET", url, headers={"Accept": ACCEPT})

    def _read(self, host: HostRef) -> Reading:
        """Scrape one host now. Raises Unreachable, ProviderError (bad status) or ExpositionError."""
        if not host.url:
            raise ProviderError(self.name, f"{host.name}: no URL to scrape (HostRef.url is empty)")
        at = self._clock()
        reply = self._get(host.url.rstrip("/") + self.settings.metrics_path)
        if reply.status != 200:
            raise ProviderError(self.name, f"{host.name}: {self.settings.metrics_path} answered HTTP {reply.status}: "
                                f"{snippet(reply.body)}", status=reply.status)
        return reading_from(parse(reply.body, reply.content_type), self.settings, at)

    def mark(self, hosts: Sequence[HostRef]) -> None:
        """Take and keep a reading of each reachable host now (a host that does not answer is
        skipped: its next fetch reports it)."""
        taken = {}
        for host in hosts:
            try:
                taken[host.name] = self._read(host)
            except (ProviderError, ExpositionError):
                continue
        if taken:
            self.store.add_many(taken)

    def continuable(self, hosts: Sequence[HostRef], since: float) -> str | None:
        """Why a judgement whose readings go back to ``since`` cannot go on from them, or None
        when it can: every host has a reading kept from then, answers now, and its app has not
        restarted since (same ``process_start_time_seconds``, no counter gone down) — a restart
        would leave the kept reading without a counter to take a difference from. The readings
        taken now are kept."""
        self.store.refresh()
        taken: dict[str, Reading] = {}
        why = None
        for host in hosts:
            base = self.store.nearest(host.name, since, self.settings.tolerance)
            if base is None:
                why = f"no reading of {host.name} was kept from the start of that judgement"
                break
            try:
                now = self._read(host)
            except (ProviderError, ExpositionError) as exc:
                why = f"{host.name} cannot be read now ({exc})"
                break
            taken[host.name] = now
            if restarted_between(base, now):
                why = f"{host.name}'s app restarted since (its counters start again from zero)"
                break
        if taken:
            self.store.add_many(taken)
        return why

    def slices(self, hosts: Sequence[HostRef], window: Window, count: int) -> list[Window]:
        """Consecutive spans of the past ``window`` between readings this provider kept (of the
        first host; the others were read in the same passes), each at least ``window/count``
        long: a past window can only be answered from readings, so its slices start and end on
        them. None when fewer than two readings fall inside the window."""
        if not hosts:
            return []
        self.store.refresh()
        times = [r.at for r in self.store.readings(hosts[0].name) if window.start <= r.at <= window.end]
        shortest = window.seconds / max(1, count)
        out: list[Window] = []
        start = times[0] if times else 0.0
        for at in times[1:]:
            if at - start >= shortest:
                out.append(Window(start, at))
                start = at
        if out and start < times[-1]:  # a short tail joins the last slice
            out[-1] = Window(out[-1].start, times[-1])
        elif not out and len(times) >= 2:
            out.append(Window(times[0], times[-1]))
        return out

    def fetch(self, hosts: Sequence[HostRef], window: Window) -> dict[str, HostMetrics]:
        now = self._clock()
        tolerance = max(self.settings.tolerance, 0.05 * window.seconds)
        self.store.refresh()
        taken: dict[str, Reading] = {}
        out = {host.name: self._fetch_one(host, window, now, tolerance, taken) for host in hosts}
        if taken:
            self.store.add_many(taken)
        return out

    def _fetch_one(self, host: HostRef, window: Window, now: float, tolerance: float,
                   taken: dict[str, Reading]) -> HostMetrics:
        if window.end < now - tolerance:
            # A past window (a baseline slice) is answered from stored readings, taken whenever
            # this host was looked at; rates, not exact edges, matter, so the nearest readings
            # within half the window on either side will do (the time covered is reported).
            loose = max(tolerance, window.seconds / 2.0)
            base = self.store.nearest(host.name, window.start, loose)
            end = self.store.nearest(host.name, window.end, loose)
            if end is None:
                return no_data(host.name, "no stored reading near the end of this past window")
        else:
            base = self.store.nearest(host.name, window.start, tolerance)
            try:
                end = self._read(host)
            except Unreachable as exc:
                return HostMetrics(host=host.name, reachable=False, no_data=True, detail=str(exc))
            except ProviderError as exc:  # it answered, but not with metrics: nothing to judge
                return no_data(host.name, str(exc))
            except ExpositionError as exc:
                return no_data(host.name, f"/metrics is not valid exposition format: {exc}")
            taken[host.name] = end  # kept for the next look (all hosts in one write)
        if base is None or base.at >= end.at:
            return no_data(host.name, "no earlier reading near the window's start to take a difference from "
                                      "(this reading is kept for the next look)")
        covered_from = base.at
        if end.start_time is not None and base.start_time is not None and end.start_time != base.start_time:
            covered_from = max(base.at, end.start_time)
        return summarize(host.name, increase(base, end), self.settings, end.at - covered_from)


def from_settings(data: Mapping[str, Any], where: str, env: Mapping[str, str]) -> ScrapeProvider:
    fields = ("requests_metric", "latency_metric", "code_label", "error_codes", "match", "exclude",
              "metrics_path", "start_time_metric", "timeout", "tolerance", "sample_seconds", "state_path", "ca_bundle")
    s = Settings(data, where, fields)
    defaults = ScrapeSettings()
    patterns: dict[str, dict[str, str]] = {}
    for key in ("match", "exclude"):
        raw = s.data.get(key, getattr(defaults, key))
        s.check.mapping(raw, key)
        for label, pattern in raw.items():
            _regex(s, f"{key}.{label}", pattern)
        patterns[key] = dict(raw)
    error_codes = s.string("error_codes", defaults.error_codes)
    _regex(s, "error_codes", error_codes)
    metrics_path = s.string("metrics_path", defaults.metrics_path)
    if not metrics_path.startswith("/"):
        s.check.fail("metrics_path", f"a path starting with /, got {metrics_path!r}")
    return ScrapeProvider(ScrapeSettings(
        requests_metric=s.string("requests_metric", defaults.requests_metric),
        latency_metric=s.string("latency_metric", defaults.latency_metric),
        code_label=s.string("code_label", defaults.code_label),
        error_codes=error_codes, match=patterns["match"], exclude=patterns["exclude"],
        metrics_path=metrics_path,
        start_time_metric=s.string("start_time_metric", defaults.start_time_metric),
        timeout=s.number("timeout", defaults.timeout), tolerance=s.number("tolerance", defaults.tolerance),
        sample_seconds=s.number("sample_seconds", defaults.sample_seconds, exclusive=False),
        state_path=s.string("state_path", ""),
        ca_bundle=s.ca_bundle(),
    ))


def _regex(s: Settings, key: str, pattern: Any) -> None:
    if not isinstance(pattern, str):
        s.check.fail(key, f"a regular expression (string), got {pattern!r}")
    try:
        re.compile(pattern)
    except re.error as exc:
        s.check.fail(key, f"a valid regular expression ({exc})")
