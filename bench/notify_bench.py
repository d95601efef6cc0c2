"""Benchmark, not a test: does a failing and a hanging notification receiver slow a roll-out?

    LRELEASE_TEST_SLOT=6 .venv/bin/python bench/notify_bench.py [--reps 3] [--keep]

Uses the test suite's sandbox of slot $LRELEASE_TEST_SLOT (state
/var/lib/lrelease-sandbox-test-slot<N>, the same subnet, names and ports as tests/conftest.py),
brings it up (or repairs it) and takes it down at the end unless --keep. Needs root. The same
small deploy (6 nodes, waves [1, 1, 50%, 100%], bake 1 s, /health gate) runs through the CLI in a
subprocess, as an operator runs it, in alternating order per repetition:

- quiet: lrelease.yml without notifications;
- noisy: lrelease.yml with two webhook channels: one receiver on loopback that answers 500 to
  everything, one that accepts connections and never answers.

Every run is checked (exit 0, each node serves the build) before its time counts. Prints the wall
times, their medians, the ratio noisy / quiet of the medians, the one warning line lrelease printed
about undelivered events, and the load average. Exit 0 when every run did its job, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

from lrelease.sandbox import provision
from lrelease.sandbox.demoapp.build import Behaviour
from lrelease.sandbox.fleet import Sandbox, project_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test suite's sandbox settings and loopback receivers
from tests.conftest import TEST_NODES, TEST_SANDBOX, TEST_STATE_DIR  # noqa: E402
from tests.unit.loopback import hanging, serve  # noqa: E402

BIN = Path(sys.executable).parent
BUILDS = ("3.0.0", "3.0.1")  # alternated, so each deploy changes every node


class RunFailed(RuntimeError):
    pass


def deploy(config: Path, build: str, env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run([str(BIN / "lrelease"), "deploy", "--env", "production", "--build", build, "--yes",
                           "--json", "--config", str(config)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise RunFailed(f"deploy of {build} with {config.name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return took, proc.stderr


def expect(sandbox: Sandbox, build: str) -> None:
    for node in sandbox.config.all_nodes():
        got = requests.get(f"http://{node.address}:{node.app_port}/version", timeout=3).text.strip()
        if got != build:
            raise RunFailed(f"{node.name} serves {got!r}, expected {build!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A roll-out with failing and hanging notification receivers "
                                                 "against one without notifications, on the test sandbox.")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each (default 3)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up afterwards")
    args = parser.parse_args(argv)
    sandbox = Sandbox(TEST_STATE_DIR)
    print(f"bringing up the sandbox {TEST_STATE_DIR} ...", file=sys.stderr)
    sandbox.up(nodes=TEST_NODES, load_rate=0, **TEST_SANDBOX)
    times: dict[str, list[float]] = {"quiet": [], "noisy": []}
    warnings: list[str] = []
    loads: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="lrelease-notify-bench-") as tmp, \
                serve(lambda r: (500, "boom")) as failing, hanging() as stuck:
            work = Path(tmp)
            for build in BUILDS:
                provision.artifact(sandbox.config, build, Behaviour())
            configs = {}
            for name in times:
                data = project_config(sandbox.config, bake_seconds=1, gate_timeout_seconds=10)
                data["state_dir"] = str(work / f"state-{name}")
                if name == "noisy":
                    data["notifications"] = [
                        {"kind": "webhook", "url_env": "BENCH_FAILING_HOOK", "secret_env": "BENCH_HOOK_KEY"},
                        {"kind": "webhook", "url_env": "BENCH_STUCK_HOOK", "secret_env": "BENCH_HOOK_KEY"},
                    ]
                configs[name] = work / f"{name}.yml"
                configs[name].write_text(yaml.safe_dump(data, sort_keys=False))
            env = {**os.environ, "LRELEASE_ACTOR": "bench", "BENCH_FAILING_HOOK": failing.url,
                   "BENCH_STUCK_HOOK": stuck, "BENCH_HOOK_KEY": "bench-hmac-key-0123"}
            for rep in range(args.reps):
                for i, name in enumerate(("quiet", "noisy") if rep % 2 == 0 else ("noisy", "quiet")):
                    build = BUILDS[i]
                    sandbox.reset()
                    print(f"repetition {rep + 1}/{args.reps}: {name} ...", file=sys.stderr)
                    loads.append(os.getloadavg()[0])
                    took, stderr = deploy(configs[name], build, env)
                    expect(sandbox, build)
                    times[name].append(took)
                    warnings += [line for line in stderr.splitlines() if "lrelease.notify" in line]
    except RunFailed as exc:
        print(f"bench: a run did not do its job, no figures: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            sandbox.down()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"notify bench: {TEST_NODES} nodes, waves [1, 1, 50%, 100%], bake 1 s; alternating order")
    for name, label in (("quiet", "no notifications (s)"), ("noisy", "500 + hanging receivers (s)")):
        print(f"{label:30}" + "".join(f"{t:8.1f}" for t in times[name]) + f"   median {med[name]:.1f}")
    print(f"ratio of medians noisy / quiet: {med['noisy'] / med['quiet']:.3f}")
    waited = [float(m.group(1)) for line in warnings if (m := re.search(r"waited ([0-9.]+)s", line))]
    print("time lrelease waited for delivery at the end of each noisy run (s): "
          + (" ".join(f"{w:.1f}" for w in waited) or "(no warning line)"))
    print(f"lrelease's warning, last run: {warnings[-1] if warnings else '(none)'}")
    print(f"load average (1 min) at the start of each run: {min(loads):.2f} to {max(loads):.2f}, "
          f"on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
