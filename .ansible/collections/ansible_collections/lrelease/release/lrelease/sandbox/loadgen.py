"""Steady, bounded HTTP GET traffic to sandbox targets, so gates have something to measure.

Safety first: targets must be IP literals (or ``localhost``) on loopback or inside an allowed
private sandbox network, checked before anything is sent; no other name is ever resolved.
Every run is capped in rate, duration and request count whatever the caller asks.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import queue
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from lrelease.errors import ConfigError

MAX_RATE = 500.0
MAX_DURATION = 6 * 3600.0
MAX_REQUESTS = 10_000_000
MAX_CONCURRENCY = 64
MIN_ALLOWED_PREFIX = 16
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_WHERE = "load generator"


@dataclass(frozen=True)
class LoadSpec:
    """What to send: ``rate`` requests/s in total, round-robin over ``targets`` (base URLs)."""

    targets: tuple[str, ...]
    rate: float = 20.0
    duration: float = 60.0
    max_requests: int = 100_000
    path: str = "/"
    timeout: float = 2.0
    concurrency: int = 8


@dataclass
class LoadStats:
    """What happened: requests sent, responses by status code, connection errors and timeouts."""

    sent: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "by_status": {str(k): v for k, v in sorted(self.by_status.items())}}


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    path: str


def _check(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise ConfigError(_WHERE, key, expected)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_target(url: str, allowed: Sequence[ipaddress.IPv4Network], path: str) -> _Target:
    """Refuse anything that is not plain HTTP to loopback or an allowed sandbox network."""
    nets = ", ".join(str(n) for n in (LOOPBACK, *allowed))
    expected = f"an http:// URL whose host is an IP in {nets} or localhost, got {url!r}"
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
    except ValueError:
        raise ConfigError(_WHERE, "target", expected) from None
    _check(parts.scheme == "http", "target", expected)
    if host != "localhost":
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(_WHERE, "target", expected) from None
        _check(any(address in net for net in (LOOPBACK, *allowed)), "target", expected)
    return _Target(host, port, parts.path.rstrip("/") + path)


def _validate(spec: LoadSpec, allowed: Sequence[ipaddress.IPv4Network]) -> list[_Target]:
    for net in allowed:
        _check(
            isinstance(net, ipaddress.IPv4Network) and net.is_private and net.prefixlen >= MIN_ALLOWED_PREFIX,
            "allow-net",
            f"a private IPv4 network of /{MIN_ALLOWED_PREFIX} or smaller, got {net}",
        )
    _check(0 < spec.rate <= MAX_RATE, "rate", f"requests per second in (0, {MAX_RATE:g}], got {spec.rate}")
    _check(0 < spec.duration <= MAX_DURATION, "duration", f"seconds in (0, {MAX_DURATION:g}], got {spec.duration}")
    _check(
        _is_int(spec.max_requests) and 0 < spec.max_requests <= MAX_REQUESTS,
        "max_requests",
        f"1 to {MAX_REQUESTS}, got {spec.max_requests}",
    )
    _check(0 < spec.timeout <= 60, "timeout", f"seconds in (0, 60], got {spec.timeout}")
    _check(
        _is_int(spec.concurrency) and 0 < spec.concurrency <= MAX_CONCURRENCY,
        "concurrency",
        f"1 to {MAX_CONCURRENCY}, got {spec.concurrency}",
    )
    _check(spec.path.startswith("/"), "path", f"a path starting with '/', got {spec.path!r}")
    _check(bool(spec.targets), "target", "at least one target URL")
    return [_parse_target(url, allowed, spec.path) for url in spec.targets]


def _get(target: _Target, timeout: float) -> int:
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        conn.request("GET", target.path, headers={"User-Agent": "lrelease-loadgen"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _put(work: queue.Queue[_Target | None], target: _Target, stop: threading.Event, deadline: float) -> bool:
    """Queue one request, waiting while every worker is busy; False if stopped or out of time."""
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            work.put(target, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def run_load(
    spec: LoadSpec,
    *,
    allowed_networks: Sequence[ipaddress.IPv4Network],
    stop: threading.Event | None = None,
) -> LoadStats:
    """Send ``spec``'s traffic until its duration or request count is reached or ``stop`` is set.

    Requests are due at fixed times (start + n/rate) and handed to a small worker pool, so slow
    responses do not slow the rate down until every worker is busy.
    """
    targets = _validate(spec, allowed_networks)
    stop = stop or threading.Event()
    stats, lock = LoadStats(), threading.Lock()
    work: queue.Queue[_Target | None] = queue.Queue(maxsize=spec.concurrency)

    def worker() -> None:
        while (target := work.get()) is not None:
            try:
                status: int | None = _get(target, spec.timeout)
            except (OSError, http.client.HTTPException):
                status = None
            with lock:
                stats.sent += 1
                if status is None:
                    stats.errors += 1
                else:
                    stats.by_status[status] = stats.by_status.get(status, 0) + 1

    workers = [threading.Thread(target=worker, name=f"loadgen-{i}", daemon=True) for i in range(spec.concurrency)]
    for thread in workers:
        thread.start()
    start = time.monotonic()
    deadline = start + spec.duration
    for n in range(spec.max_requests):
        due = start + n / spec.rate
        if due >= deadline or stop.wait(max(0.0, due - time.monotonic())):
            break
        if not _put(work, targets[n % len(targets)], stop, deadline):
            break
    if stop.is_set():  # drop what is queued but not yet sent
        while not work.empty():
            work.get_nowait()
    for _ in workers:
        work.put(None)
    for thread in workers:
        thread.join()
    stats.elapsed = time.monotonic() - start
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """Run in the foreground; SIGTERM or Ctrl-C stop it early. Prints a one-line JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m lrelease.sandbox.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True, help="base URL; repeat for round-robin")
    parser.add_argument("--rate", type=float, default=LoadSpec.rate, help="requests per second in total")
    parser.add_argument("--duration", type=float, default=LoadSpec.duration, help="seconds")
    parser.add_argument("--max-requests", type=int, default=LoadSpec.max_requests)
    parser.add_argument("--path", default=LoadSpec.path)
    parser.add_argument("--timeout", type=float, default=LoadSpec.timeout, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=LoadSpec.concurrency)
    parser.add_argument("--allow-net", action="append", default=[], help="private CIDR targets may be in")
    args = parser.parse_args(argv)
    spec = LoadSpec(
        targets=tuple(args.target), rate=args.rate, duration=args.duration, max_requests=args.max_requests,
        path=args.path, timeout=args.timeout, concurrency=args.concurrency,
    )
    try:
        allowed = [ipaddress.IPv4Network(cidr) for cidr in args.allow_net]
    except ValueError as err:
        print(ConfigError(_WHERE, "allow-net", f"an IPv4 network in CIDR form ({err})"), file=sys.stderr)
        return 2
    try:
        _validate(spec, allowed)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    stop = threading.Event()
    results: list[LoadStats] = []
    # The load runs in a thread so the signal handler never interrupts the stop event's own lock.
    thread = threading.Thread(target=lambda: results.append(run_load(spec, allowed_networks=allowed, stop=stop)))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    print(json.dumps(results[0].to_dict(), sort_keys=True), flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
