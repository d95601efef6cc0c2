"""The load generator, against a small local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lrelease.errors import ConfigError
from lrelease.sandbox.loadgen import LoadSpec, main, run_load

SANDBOX_NET = [ipaddress.IPv4Network("10.77.0.0/24")]


class CountingServer(ThreadingHTTPServer):
    """Answers every GET with 200 (or 503 under /down) after ``delay`` seconds, and counts them."""

    daemon_threads = True

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.hits, self.lock = delay, 0, threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: CountingServer

    def do_GET(self) -> None:  # noqa: N802
        with self.server.lock:
            self.server.hits += 1
        time.sleep(self.server.delay)
        self.send_response(503 if self.path.startswith("/down") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def serve(delay: float = 0.0) -> Iterator[CountingServer]:
    server = CountingServer(delay)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server() -> Iterator[CountingServer]:
    yield from serve()


@pytest.fixture
def slow_server() -> Iterator[CountingServer]:
    yield from serve(delay=0.3)


def test_rate_is_held_for_the_duration(server: CountingServer) -> None:
    # When 50 requests/s are sent for 1 s
    stats = run_load(LoadSpec(targets=(server.url,), rate=50, duration=1.0), allowed_networks=SANDBOX_NET)

    # Then about 50 were sent, all answered 200, and the server saw each one
    assert 35 <= stats.sent <= 60
    assert stats.by_status == {200: stats.sent}
    assert stats.errors == 0
    assert server.hits == stats.sent


def test_slow_responses_barely_lower_the_rate(slow_server: CountingServer) -> None:
    # Given a server that takes 300 ms per answer, when 20 requests/s are sent for 1 s
    stats = run_load(LoadSpec(targets=(slow_server.url,), rate=20, duration=1.0), allowed_networks=SANDBOX_NET)

    # Then nearly all 20 went out (one at a time would have managed about 4)
    assert stats.sent >= 15
    assert stats.by_status == {200: stats.sent}


def test_targets_are_used_round_robin_and_statuses_counted(server: CountingServer) -> None:
    # Given two targets, one answering 503 on the path asked for
    down = f"http://localhost:{server.server_address[1]}/down"
    spec = LoadSpec(targets=(server.url, down), rate=100, max_requests=10)

    # When ten requests are sent
    stats = run_load(spec, allowed_networks=SANDBOX_NET)

    # Then half went to each
    assert stats.by_status == {200: 5, 503: 5}


def test_max_requests_stops_early(server: CountingServer) -> None:
    # When at most 10 requests are allowed in a 30 s run at 100/s
    stats = run_load(LoadSpec(targets=(server.url,), rate=100, duration=30, max_requests=10), allowed_networks=[])

    # Then exactly 10 are sent, long before the duration
    assert stats.sent == server.hits == 10
    assert stats.elapsed < 10


def test_stop_event_stops_the_run(server: CountingServer) -> None:
    # Given a 30 s run at 20/s and a stop set after half a second
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()

    # When it runs
    stats = run_load(LoadSpec(targets=(server.url,), rate=20, duration=30), allowed_networks=[], stop=stop)

    # Then it ends early having sent only a few
    assert 1 <= stats.sent < 100
    assert stats.elapsed < 10


def test_connection_errors_are_counted_not_raised(server: CountingServer) -> None:
    # Given a port nobody listens on (the server's, once closed)
    url = server.url
    server.shutdown()
    server.server_close()

    # When requests are sent there
    stats = run_load(LoadSpec(targets=(url,), rate=100, max_requests=5), allowed_networks=[])

    # Then each is an error
    assert (stats.sent, stats.errors, stats.by_status) == (5, 5, {})


@pytest.mark.parametrize(
    "bad",
    [
        "http://192.0.2.1/",  # public-looking, not in the sandbox network
        "http://10.77.1.5:8080/",  # next to the sandbox network, not in it
        "http://example.invalid/",  # a name: never resolved
        "https://127.0.0.1/",  # not plain HTTP
        "http://[::1]:8080/",  # IPv6 loopback is not on the list
        "127.0.0.1:8080",  # no scheme
    ],
)
def test_targets_outside_the_sandbox_are_refused_before_anything_is_sent(server: CountingServer, bad: str) -> None:
    # Given a good local target alongside a bad one
    spec = LoadSpec(targets=(server.url, bad), rate=100, duration=1.0)

    # When the run is asked for
    with pytest.raises(ConfigError) as caught:
        run_load(spec, allowed_networks=SANDBOX_NET)

    # Then it names the bad target and the server saw nothing
    assert caught.value.key == "target"
    assert bad in str(caught.value)
    assert server.hits == 0


def test_a_target_inside_the_allowed_network_is_accepted() -> None:
    # Given a sandbox-network target and a stop that is already set (so nothing is sent)
    stop = threading.Event()
    stop.set()

    # When the run is asked for, then it is accepted and sends nothing
    stats = run_load(LoadSpec(targets=("http://10.77.0.11:8080",)), allowed_networks=SANDBOX_NET, stop=stop)
    assert stats.sent == 0


@pytest.mark.parametrize(
    ("spec", "allowed", "key"),
    [
        (LoadSpec(targets=("http://127.0.0.1:1",), rate=501), [], "rate"),
        (LoadSpec(targets=("http://127.0.0.1:1",), rate=0), [], "rate"),
        (LoadSpec(targets=("http://127.0.0.1:1",), duration=6 * 3600 + 1), [], "duration"),
        (LoadSpec(targets=("http://127.0.0.1:1",), max_requests=10_000_001), [], "max_requests"),
        (LoadSpec(targets=("http://127.0.0.1:1",), concurrency=0), [], "concurrency"),
        (LoadSpec(targets=()), [], "target"),
        (LoadSpec(targets=("http://127.0.0.1:1",)), [ipaddress.IPv4Network("0.0.0.0/0")], "allow-net"),
        (LoadSpec(targets=("http://127.0.0.1:1",)), [ipaddress.IPv4Network("8.8.8.0/24")], "allow-net"),
    ],
)
def test_limits_are_enforced(spec: LoadSpec, allowed: list[ipaddress.IPv4Network], key: str) -> None:
    # When a run beyond a hard limit is asked for, then it is refused naming the key
    with pytest.raises(ConfigError) as caught:
        run_load(spec, allowed_networks=allowed)
    assert caught.value.key == key


def test_main_refuses_a_bad_target_with_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    # When the command is given a hostname target
    code = main(["--target", "http://example.invalid/", "--duration", "1"])

    # Then it exits 2 with one line on stderr and prints no summary
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "example.invalid" in err


def test_main_stops_on_sigterm_and_prints_a_json_summary(server: CountingServer) -> None:
    # Given the command running a 30 s load in the background
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrelease.sandbox.loadgen", "--target", server.url, "--rate", "20",
         "--duration", "30", "--allow-net", "10.77.0.0/24"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while server.hits == 0 and time.monotonic() < deadline:
            time.sleep(0.05)

        # When it gets SIGTERM
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()

    # Then it exits 0 printing one JSON line that matches what the server saw
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["sent"] == server.hits > 0
    assert summary["by_status"] == {"200": server.hits}
    assert summary["errors"] == 0
