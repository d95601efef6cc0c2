"""The ``scrape`` provider: read each host's Prometheus-format /metrics directly; no server needed.

Counters only go up, so the traffic in a window is the difference between two readings: one
taken at (or near) the window's start, one at its end. ``mark(hosts)`` takes a reading now
(the gate marks hosts at the switch); ``fetch`` reads again and subtracts. Readings are kept in
a :class:`ReadingStore` (in memory, or an append-only JSON lines file so that separate
processes — the gate tasks of a wave, one per host — share them) and a past window, such as
the last wave's "before the switch" baseline, is answered from stored readings.

One reading per host per look for the whole wave: a task reads a host only under the store's
lock, after taking in what the others appended, and uses instead a reading (or a failed read,
reported alike) another task took at most ``tolerance`` seconds ago and after the one this task
used last. A wave of k canaries against r reference hosts reads k + r pages per look, not
k x (r + 1), and appends them, instead of rewriting the whole file k times (docs/apm-gate.md,
"The scrape provider's readings").

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

import contextlib
import fcntl
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrelease.apm import HostMetrics, HostRef, ProviderError, Window, no_data
from lrelease.apm.expfmt import ACCEPT, Exposition, ExpositionError, Labels, parse
from lrelease.apm.latency import Latency
from lrelease.apm.transport import Http, Reply, Settings, Unreachable, snippet

Key = tuple[str, Labels]
REQUEST, ERROR = "request", "error"  # roles of a request counter series (ScrapeSettings.role)
Role = str | float | None


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

    # series -> its role (see ``role``): the same series come back on every host at every look
    _roles: dict[Key, Role] = field(default_factory=dict, init=False, repr=False, compare=False)

    def role(self, key: Key) -> Role:
        """What a series counts for: ``REQUEST``, ``ERROR`` (a request whose code is an error),
        a latency bucket's bound, or None (another series, or one the filters leave out)."""
        try:
            return self._roles[key]
        except KeyError:
            found = self._roles[key] = self._role(key)
            return found

    def _role(self, key: Key) -> Role:
        name, labels = key
        if name == self.requests_metric:
            if not self.selected(labels):
                return None
            return ERROR if re.fullmatch(self.error_codes, dict(labels).get(self.code_label, "")) else REQUEST
        if name == self.latency_metric + "_bucket":
            if not self.selected(tuple(p for p in labels if p[0] != "le")):
                return None
            try:
                return float(dict(labels).get("le", ""))
            except ValueError:
                return None
        return None

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


def summarize_between(host: str, before: Reading, after: Reading, settings: ScrapeSettings,
                      seconds: float) -> HostMetrics:
    """``summarize(host, increase(before, after), ...)`` in one pass over the series: every gate
    task of a wave does it for every reference host at every look."""
    restarted = (before.start_time is not None and after.start_time is not None
                 and after.start_time != before.start_time)
    old = before.counters
    role = settings.role
    deltas: dict[Key, float] = {}
    for key, value in after.counters.items():
        if role(key) is None:
            continue
        previous = old.get(key)
        deltas[key] = value if restarted or previous is None or value < previous else value - previous
    return summarize(host, deltas, settings, seconds)


def summarize(host: str, deltas: Mapping[Key, float], settings: ScrapeSettings, seconds: float) -> HostMetrics:
    """Requests, 5xx errors and latency buckets from per-series increases."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    seen_requests = False
    role = settings.role
    for key, value in deltas.items():
        found = role(key)
        if found is None:
            continue
        if found is REQUEST or found is ERROR:
            seen_requests = True
            requests += value
            if found is ERROR:
                errors += value
        else:
            buckets[found] = buckets.get(found, 0.0) + value
    if not seen_requests:
        return no_data(host, f"no {settings.requests_metric} series (after filters) in {settings.metrics_path} "
                             "(an app with its own metric names sets requests_metric, latency_metric, code_label)",
                       seconds=seconds)
    latency = Latency.from_buckets(buckets.items()) if buckets else None
    return HostMetrics(host=host, requests=requests, errors=errors, latency=latency, seconds=seconds)


class Failure:
    """A host that could not be read at a moment: kept beside the readings so that the other
    gate tasks of the same look report it exactly as the task that tried did, without trying
    again (a dead host costs a timeout per try)."""

    UNREACHABLE, ERROR, FORMAT = "unreachable", "error", "format"

    def __init__(self, at: float, kind: str, message: str) -> None:
        self.at, self.kind, self.message = at, kind, message

    @classmethod
    def of(cls, at: float, exc: Exception) -> Failure:
        kind = (cls.UNREACHABLE if isinstance(exc, Unreachable)
                else cls.ERROR if isinstance(exc, ProviderError) else cls.FORMAT)
        return cls(at, kind, str(exc))

    def metrics(self, host: str) -> HostMetrics:
        """What a look reports for the host (the same as when its own scrape failed)."""
        if self.kind == self.UNREACHABLE:
            return HostMetrics(host=host, reachable=False, no_data=True, detail=self.message)
        if self.kind == self.ERROR:  # it answered, but not with metrics: nothing to judge
            return no_data(host, self.message)
        return no_data(host, f"/metrics is not valid exposition format: {self.message}")


Taken = Reading | Failure


class ReadingStore:
    """Readings per host, oldest first (at most ``MAX_PER_HOST`` in memory); optionally
    persisted to a JSON lines file shared by processes (the gate tasks of one wave run side by
    side, each its own process).

    The file is append-only: one reading (or one failed read) per line, appended with a single
    ``O_APPEND`` write under an exclusive ``flock`` on a sidecar lock file; no fsync (the file
    is a cache of what the hosts said). A store remembers the byte offset it has read up to and
    takes in only the complete lines appended since; a last line without its newline (a writer
    killed mid-write, or one still writing) is left for later, and a writer that finds one
    ends it first so the next line starts clean (the broken line is skipped as unreadable).
    A line that is not a reading is skipped; a pre-JSON-lines file (one JSON object of
    ``{host: [readings]}``) is read as such.

    Size: one line per host per reading (~2.5 KB for a demo app page; the counters of the
    request and latency series only). A bake reads every host every ``sample_seconds`` (10)
    once for the whole wave, so an hour of a 100-host roll-out appends 360 x 100 lines, ~90 MB.
    When the file holds more than ``COMPACT_FACTOR`` times the lines the stores keep in memory
    (``MAX_PER_HOST`` per host), the writer that notices rewrites it with only those (an atomic
    rename; readers see the new file by its inode and read it afresh) — at most once every
    ``MAX_PER_HOST`` readings of each host, so the file stays within twice what the old
    whole-file store rewrote at every write."""

    MAX_PER_HOST = 400
    COMPACT_FACTOR = 2

    def __init__(self, path: str = "") -> None:
        self.path = Path(path) if path else None
        self._by_host: dict[str, list[Reading]] = {}
        self._failed: dict[str, Failure] = {}  # the newest failed read of each host
        self._pending: dict[str, list[bytes]] = {}  # lines read but not decoded yet, per host
        self._offset = 0  # bytes of the file taken in (complete lines)
        self._file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the file read
        self._lines = 0  # lines taken in from the file (compaction counts them)
        self._locked = False
        self.bytes_written = 0  # by this store (the scale bench reports it)
        if self.path is not None:
            self.refresh()

    @staticmethod
    def lock_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.lock")

    @classmethod
    def discard(cls, path: Path) -> None:
        """Remove a readings file and its lock (the roll-out they served has ended)."""
        path.unlink(missing_ok=True)
        cls.lock_path(path).unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's lock (nothing for an in-memory store) with every line appended so far
        taken in: what is decided inside (which hosts another task already read) stays true
        until the lock is released."""
        if self.path is None or self._locked:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path(self.path), "a", encoding="utf-8") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
            self._locked = True
            try:
                self.refresh()
                yield
            finally:
                self._locked = False

    def add(self, host: str, reading: Reading) -> None:
        self.add_many({host: reading})

    def add_many(self, readings: Mapping[str, Taken]) -> None:
        """Keep one reading (or failed read) per host, all in one append."""
        with self.locked():
            self._take_in(readings.items())  # first: a compaction after the append keeps them
            if self.path is not None:
                self._append(readings)

    def _append(self, readings: Mapping[str, Taken]) -> None:
        assert self.path is not None and self._locked
        data = _lines(readings.items())
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a partial line (a writer killed mid-line): end it
                data = b"\n" + data
            os.write(fd, data)
            self._file_id = _file_id(os.fstat(fd))
        finally:
            os.close(fd)
        self._offset = size + len(data)
        self._lines += len(readings)
        self.bytes_written += len(data)
        self._maybe_compact()

    def _take_in_lines(self, chunk: bytes) -> None:
        """Complete lines read from the file: a host's lines are only decoded when its readings
        are asked for (a gate task needs its canary and the reference hosts, not the others)."""
        for line in chunk.splitlines():
            self._lines += 1
            found = _HOST_RE.match(line)
            if found is None:  # not a line of ours as written: decode it now (or skip it)
                self._take_in(self._decode_lines([line]))
                continue
            try:
                host = json.loads(found.group(1))
            except ValueError:
                continue
            pending = self._pending.setdefault(host, [])
            pending.append(line)
            if len(pending) > 2 * self.MAX_PER_HOST:  # bounded like the decoded ones
                del pending[:-self.MAX_PER_HOST]

    def _settle(self, host: str) -> None:
        pending = self._pending.pop(host, None)
        if pending:
            self._take_in(self._decode_lines(pending))

    def _take_in(self, items: Iterable[tuple[str, Taken]]) -> None:
        for host, taken in items:
            if isinstance(taken, Failure):
                if host not in self._failed or self._failed[host].at <= taken.at:
                    self._failed[host] = taken
                continue
            kept = self._by_host.setdefault(host, [])
            kept.append(taken)
            if len(kept) > 1 and kept[-2].at > taken.at:
                kept.sort(key=lambda r: r.at)
            del kept[:-self.MAX_PER_HOST]

    def refresh(self) -> None:
        """Take in what other processes appended since (once per look, not once per host)."""
        if self.path is None:
            return
        try:
            with open(self.path, "rb") as f:
                found = _file_id(os.fstat(f.fileno()))
                if found != self._file_id:  # a new file (compacted, or replaced): read it all
                    self._by_host, self._failed, self._pending, self._offset, self._lines = {}, {}, {}, 0, 0
                    self._file_id = found
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return  # missing: nothing kept yet (readings are only a cache of the hosts)
        complete = chunk.rfind(b"\n") + 1
        if not complete and self._offset == 0 and chunk.startswith(b"{") and not chunk.startswith(b'{"host"'):
            complete = len(chunk)  # perhaps the whole-file format of lrelease before JSON lines
        if not complete:
            return
        self._offset += complete
        self._take_in_lines(chunk[:complete])

    @staticmethod
    def _decode_lines(lines: Iterable[bytes]) -> Iterator[tuple[str, Taken]]:
        for line in lines:
            try:
                data = json.loads(line)
                if "host" in data:
                    yield str(data["host"]), _decode(data)
                else:  # the whole-file format of lrelease before JSON lines
                    for host, readings in data.items():
                        yield from ((str(host), _decode(r)) for r in readings)
            except (ValueError, TypeError, KeyError, AttributeError):
                continue  # a broken line (a killed writer's) or not a reading: skip it

    def _maybe_compact(self) -> None:
        kept = sum(map(len, self._by_host.values())) + sum(map(len, self._pending.values())) + len(self._failed)
        if self._lines <= self.COMPACT_FACTOR * max(kept, self.MAX_PER_HOST):
            return
        assert self.path is not None and self._locked
        for host in list(self._pending):
            self._settle(host)
        lines = [(host, r) for host, readings in self._by_host.items() for r in readings]
        lines += list(self._failed.items())
        data = _lines(lines)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)
        self._file_id, self._offset, self._lines = _file_id(os.stat(self.path)), len(data), len(lines)
        self.bytes_written += len(data)

    def hosts(self) -> list[str]:
        """Every host with a reading kept (decoded or not yet), in name order."""
        return sorted({*self._by_host, *self._pending})

    def readings(self, host: str) -> list[Reading]:
        self._settle(host)
        return list(self._by_host.get(host, []))

    def latest(self, host: str) -> Taken | None:
        """The newest reading or failed read of the host."""
        self._settle(host)
        kept = self._by_host.get(host)
        newest = kept[-1] if kept else None
        failed = self._failed.get(host)
        if failed is not None and (newest is None or failed.at > newest.at):
            return failed
        return newest

    def nearest(self, host: str, at: float, tolerance: float) -> Reading | None:
        self._settle(host)
        candidates = [r for r in self._by_host.get(host, ()) if abs(r.at - at) <= tolerance]
        return min(candidates, key=lambda r: abs(r.at - at), default=None)


def _lines(items: Iterable[tuple[str, Taken]]) -> bytes:
    return "".join(json.dumps(_encode(host, r), separators=(",", ":")) + "\n" for host, r in items).encode("utf-8")


_HOST_RE = re.compile(rb'\{"host":("(?:[^"\\]|\\.)*"),')  # the start of a line as _lines writes it


def _file_id(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _encode(host: str, taken: Taken) -> dict[str, Any]:
    if isinstance(taken, Failure):
        return {"host": host, "at": taken.at, "failed": taken.kind, "message": taken.message}
    return {"host": host, "at": taken.at, "start_time": taken.start_time,
            "counters": [[name, [list(p) for p in labels], value] for (name, labels), value in taken.counters.items()]}


def _decode(data: Mapping[str, Any]) -> Taken:
    if "failed" in data:
        return Failure(float(data["at"]), str(data["failed"]), str(data["message"]))
    counters = {(name, tuple(map(tuple, labels))): float(value) for name, labels, value in data["counters"]}
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
        self._used: dict[str, float] = {}  # host -> when the reading this provider last used was taken
        self.scrapes = 0  # /metrics pages this provider read (the scale bench reports it)

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

    def _take(self, hosts: Sequence[HostRef], newer_than: Mapping[str, float] | None = None) -> dict[str, Taken]:
        """A reading (or a failed read) of each host for this moment, one per host per look for
        all the gate tasks of a wave: under the store's lock, a host another task read at most
        ``tolerance`` seconds ago (and after this task's previous reading of it, and after
        ``newer_than``) is not read again; the others are read now and appended, failures
        included, so the tasks of one look report a host that cannot be read all alike."""
        newer_than = newer_than or {}
        out: dict[str, Taken] = {}
        with self.store.locked():
            now = self._clock()
            fresh: dict[str, Taken] = {}
            for host in hosts:
                shared = self.store.latest(host.name)
                floor = max(self._used.get(host.name, -math.inf), newer_than.get(host.name, -math.inf))
                if shared is not None and floor < shared.at and now - shared.at <= self.settings.tolerance:
                    out[host.name] = shared
                    continue
                try:
                    taken: Taken = self._read(host)
                except (ProviderError, ExpositionError) as exc:
                    taken = Failure.of(self._clock(), exc)
                out[host.name] = fresh[host.name] = taken
            if fresh:
                self.store.add_many(fresh)
        self.scrapes += len(fresh)
        self._used.update((name, taken.at) for name, taken in out.items())
        return out

    def mark(self, hosts: Sequence[HostRef]) -> None:
        """Take and keep a reading of each reachable host now (a host that does not answer is
        kept as such: its next fetch reports it)."""
        self._take(hosts)

    def continuable(self, hosts: Sequence[HostRef], since: float) -> str | None:
        """Why a judgement whose readings go back to ``since`` cannot go on from them, or None
        when it can: every host has a reading kept from then, answers now, and its app has not
        restarted since (same ``process_start_time_seconds``, no counter gone down) — a restart
        would leave the kept reading without a counter to take a difference from. The readings
        taken now are kept."""
        self.store.refresh()
        for host in hosts:
            if self.store.nearest(host.name, since, self.settings.tolerance) is None:
                return f"no reading of {host.name} was kept from the start of that judgement"
        taken = self._take(hosts)
        for host in hosts:
            now = taken[host.name]
            if isinstance(now, Failure):
                return f"{host.name} cannot be read now ({now.message})"
            base = self.store.nearest(host.name, since, self.settings.tolerance)
            if base is not None and restarted_between(base, now):
                return f"{host.name}'s app restarted since (its counters start again from zero)"
        return None

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
        if window.end < now - tolerance:
            return {host.name: self._fetch_past(host, window, tolerance) for host in hosts}
        bases = {host.name: self.store.nearest(host.name, window.start, tolerance) for host in hosts}
        ends = self._take(hosts, {name: base.at for name, base in bases.items() if base is not None})
        return {host.name: self._difference(host.name, bases[host.name], ends[host.name]) for host in hosts}

    def _fetch_past(self, host: HostRef, window: Window, tolerance: float) -> HostMetrics:
        # A past window (a baseline slice) is answered from stored readings, taken whenever
        # this host was looked at; rates, not exact edges, matter, so the nearest readings
        # within half the window on either side will do (the time covered is reported).
        loose = max(tolerance, window.seconds / 2.0)
        end = self.store.nearest(host.name, window.end, loose)
        if end is None:
            return no_data(host.name, "no stored reading near the end of this past window")
        return self._difference(host.name, self.store.nearest(host.name, window.start, loose), end)

    def _difference(self, host: str, base: Reading | None, end: Taken) -> HostMetrics:
        if isinstance(end, Failure):
            return end.metrics(host)
        if base is None or base.at >= end.at:
            return no_data(host, "no earlier reading near the window's start to take a difference from "
                                 "(this reading is kept for the next look)")
        covered_from = base.at
        if end.start_time is not None and base.start_time is not None and end.start_time != base.start_time:
            covered_from = max(base.at, end.start_time)
        return summarize_between(host, base, end, self.settings, end.at - covered_from)


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
