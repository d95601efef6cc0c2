"""One sandbox fleet per test session; tests reset node state instead of rebuilding it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# pytest-xdist's workers start with COLUMNS=80, which the CLI's consoles would keep as a fixed
# width from import on; tests that need a width pass COLUMNS to each command instead.
os.environ.pop("COLUMNS", None)
# The APM clients honour proxy settings (trust_env); the suite talks only to loopback and its own
# sandbox namespaces, never through a proxy the machine happens to set.
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_proxy, None)

from lrelease.sandbox.fleet import Sandbox  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# LRELEASE_TEST_SLOT=N (0-9) moves every sandbox of the suite to other state dirs, subnets,
# names and ports, so two runs of the suite on one machine never touch each other's fleets.
# `make test` runs two pytest-xdist workers; worker gwN takes slot base + N, so each has fleets
# of its own (the base is LRELEASE_TEST_SLOT, 0 by default).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
SLOT = int(os.environ.get("LRELEASE_TEST_SLOT", "0")) + int(_WORKER.removeprefix("gw") or 0)
assert 0 <= SLOT <= 9, "LRELEASE_TEST_SLOT (plus the xdist worker's number) must be 0..9"


def slotted(state_dir: str, third_octet: int, prefix: str, bridge: str, port: int) -> tuple[Path, dict]:
    """State dir and sandbox settings for one of the suite's sandboxes, in this run's slot.
    Ports stay below Linux's ephemeral range (32768+): a client socket holding the same local
    port would make HAProxy's bind fail (seen once in CI rehearsal)."""
    suffix = f"-slot{SLOT}" if SLOT else ""
    tag = str(SLOT) if SLOT else ""
    return Path(state_dir + suffix), {
        "subnet": f"198.18.{third_octet + 10 * SLOT}.0/24", "prefix": prefix + tag, "bridge": bridge + tag,
        "haproxy_port": port + 100 * SLOT, "prometheus_port": port + 1000 + 100 * SLOT,
    }


# Its own state dir, subnet, names and ports, so a demo sandbox can stay up beside the tests.
_DEFAULT_DIR, TEST_SANDBOX = slotted("/var/lib/lrelease-sandbox-test", 78, "lrtest", "lrbrt", 28080)
TEST_NODES = 6
# Steady traffic (requests/s over all nodes): enough for the gate's statistics within a short bake.
LOAD_RATE = 150
TEST_STATE_DIR = Path(os.environ.get("LRELEASE_TEST_SANDBOX_DIR", str(_DEFAULT_DIR)))


def pytest_collection_modifyitems(items):
    for item in items:
        if any(f"tests/{d}/" in str(item.fspath) for d in ("sandbox", "rollout", "molecule", "ansible")):
            item.add_marker(pytest.mark.sandbox)


@pytest.fixture(scope="session")
def sandbox():
    """The session's fleet: 6 netns nodes under steady load, torn down at the end."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must run as root: the sandbox fleet needs network namespaces")
        pytest.skip("the sandbox fleet needs root (network namespaces); CI runs as root")
    sb = Sandbox(TEST_STATE_DIR)
    sb.up(nodes=TEST_NODES, load_rate=LOAD_RATE, load_duration=3600, **TEST_SANDBOX)
    try:
        yield sb
    finally:
        sb.down()


@pytest.fixture
def fleet(sandbox):
    """The session's fleet, on the baseline build with no fault, whatever ran before."""
    sandbox.reset()
    return sandbox
