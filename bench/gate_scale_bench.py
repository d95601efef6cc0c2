"""The APM gate's work beyond the bake, per wave: a wave of 5 canaries against one of 50, measured
side by side, the gate judging once per wave against the gate judging each host on its own.

No sandbox: the hosts are paths of one threaded HTTP server on 127.0.0.1 (host i answers
``/h<i>/metrics`` with a demo app page of the sandbox's metric names, more traffic at each read,
and ``/h<i>/health``), counting the pages it serves. Each canary's gate task is its own process,
as under Ansible (one task per host of the wave), and runs the real gate: the ``apm`` decider
(``lrelease.gate.canary.decide``) with the ``scrape`` provider, its readings file, the health
check and the judge with its default settings, a first look after ``--bake`` seconds and then
one every ``--bake`` seconds, ``--looks`` looks (the traffic is alike on every host and the
regression to detect is set barely above the margin tolerated: no look decides, the last halts —
the most looks a bake makes, each judged in full).

- ``wave``: the gate as it runs now: the wave's first task judges every host of the wave (one
  sampler, one fetch and one reference summary per look) and leaves each other host's result
  on the board, where that host's task takes it (``lrelease.gate.wave``);
- ``host``: the same code given no wave (``params["wave"]`` empty): each task judges its own
  host against every reference host, as the gate did before (its readings already shared).

Timed, per wave: cpu, the CPU seconds of all the wave's tasks (from the start of the bake to
their result, waiting included; not their start-up); wall, the slowest task's wall seconds
beyond the planned bake; scrapes, the /metrics pages served. The verdicts of both modes are
compared host by host (they must be the same). Waves and modes alternate; each figure is the
median of ``--reps`` runs.

    .venv/bin/python bench/gate_scale_bench.py [--looks 4] [--reps 3] [--references 50] [--bake 0.5]

The target (issue 13): gate work per wave beyond the bake, 50 hosts / 5 hosts <= 3 (the cpu
ratio of ``wave`` is the one judged; the others are shown beside it).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Imported before the tasks fork: their start-up is not the gate's work.
import requests  # noqa: E402,F401

from lrelease.apm import datadog, httpcheck, newrelic, prometheus, scrape  # noqa: E402,F401
from lrelease.gate import GateRequest  # noqa: E402
from lrelease.gate import canary as apm_gate  # noqa: E402
from lrelease.sandbox.demoapp import gate as demo_gate  # noqa: E402
from lrelease.sandbox.demoapp.app import Metrics  # noqa: E402

FORK = multiprocessing.get_context("fork")
TARGET = 3.0
GENERATIONS = 64  # pages of growing traffic; a host read more often than this keeps showing the last


def demo_pages() -> list[bytes]:
    """The demo app's /metrics after 1, 2, ... rounds of 400 requests (2% 5xx, latency spread)."""
    metrics, pages = Metrics("1.0.0"), []
    for _ in range(GENERATIONS):
        for i in range(400):
            metrics.observe("/", 500 if i % 50 == 0 else 200, 0.001 * (i % 40))
        pages.append(metrics.render().encode())
    return pages


@contextlib.contextmanager
def fleet(pages: list[bytes]) -> Iterator[tuple[str, Counter]]:
    """One server for every host: /h<i>/metrics shows host i's traffic one round further at each
    read; /h<i>/health answers 200. Counts the /metrics pages served, per path."""
    served: Counter = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.endswith("/health"):
                body, kind = b'{"status": "ok"}', "application/json"
            else:
                with lock:
                    n = served[self.path]
                    served[self.path] += 1
                body, kind = pages[min(n, len(pages) - 1)], "text/plain; version=0.0.4"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def request(mode: str, tmp: str, canary: dict[str, str], wave: list[dict[str, str]],
            references: list[dict[str, str]], looks: int, bake: float) -> GateRequest:
    # A regression to detect barely above the margin tolerated: no look can rule it out on this
    # traffic, so every bake makes all its looks, each judged in full, and then halts.
    judge = {"bake_seconds": bake, "interval_seconds": bake, "max_bake_seconds": bake * looks,
             "errors": {"detect_ratio": 1.35}, "latency": {"detect": 0.21}}
    apm = {"provider": "scrape", "judge": judge,
           "provider_settings": {**demo_gate.SCRAPE, "state_path": os.path.join(tmp, "readings.json")}}
    return GateRequest(host=canary["name"], url=canary["url"] + "/health", params={
        "apm": apm, "canary": canary, "reference": references, "switched_at": time.time(),
        "wave": wave if mode == "wave" else [], "board": os.path.join(tmp, "readings.json.waves"), "run": "bench",
        "health_path": "/health", "health_check": {"expect_status": "2xx", "body_json": {}, "body_contains": ""}})


def gate_task(req: GateRequest, barrier, out) -> None:
    barrier.wait(timeout=120)
    cpu0, t0 = time.process_time(), time.monotonic()
    try:
        result = apm_gate.decide(req)
        verdict, looks = result.verdict.value, result.evidence.get("looks")
    except Exception as exc:  # noqa: BLE001  reported, and the bench fails
        verdict, looks = f"error: {exc}", None
    out.put((req.host, time.process_time() - cpu0, time.monotonic() - t0, verdict, looks))


def run_wave(mode: str, wave_size: int, references: int, looks: int, bake: float, base: str) -> dict[str, Any]:
    refs = [{"name": f"h{i}", "url": f"{base}/h{i}"} for i in range(references)]
    wave = [{"name": f"h{references + i}", "url": f"{base}/h{references + i}"} for i in range(wave_size)]
    with tempfile.TemporaryDirectory(prefix="lrelease-gate-bench-") as tmp:
        barrier, out = FORK.Barrier(wave_size), FORK.Queue()
        tasks = [FORK.Process(target=gate_task, args=(request(mode, tmp, c, wave, refs, looks, bake), barrier, out))
                 for c in wave]
        for t in tasks:
            t.start()
        results = [out.get(timeout=600) for _ in tasks]
        for t in tasks:
            t.join(timeout=60)
    planned = bake * max(r[4] or 1 for r in results)  # the bake: the first look after `bake`, then one every `bake`
    return {"cpu": sum(r[1] for r in results), "wall": max(r[2] for r in results) - planned,
            "verdicts": {r[0]: (r[3], r[4]) for r in results}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--looks", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--references", type=int, default=50, help="reference hosts (the same for both waves)")
    parser.add_argument("--waves", type=int, nargs=2, default=[5, 50])
    parser.add_argument("--bake", type=float, default=0.5, help="seconds to the first look, and between looks")
    args = parser.parse_args()
    if not (1 <= args.looks <= 20 and 1 <= args.reps <= 9 and max(args.waves) <= 200 and 0.1 <= args.bake <= 10
            and 1 <= args.references <= 200 and min(args.waves) >= 1):
        parser.error("--looks 1..20, --reps 1..9, waves of 1..200 hosts, 1..200 references, --bake 0.1..10")
    modes = ["wave", "host"]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with fleet(demo_pages()) as (base, served):
        for rep in range(args.reps):
            order = [(m, w) for w in args.waves for m in modes]
            for mode, wave in order if rep % 2 == 0 else order[::-1]:  # alternate
                served.clear()
                figures = run_wave(mode, wave, args.references, args.looks, args.bake, base)
                figures["scrapes"] = sum(served.values())
                runs.setdefault((mode, wave), []).append(figures)
                kinds = Counter(v for v, _ in figures["verdicts"].values())
                if any(v.startswith("error") for v in kinds):
                    print(f"a gate task failed: {kinds}", file=sys.stderr)
                    return 1
                print(f"rep {rep + 1} {mode:4} wave {wave:3} refs {args.references:3}: cpu {figures['cpu']:.3f}, "
                      f"wall {figures['wall']:.3f}, scrapes {figures['scrapes']}, verdicts {dict(kinds)}",
                      file=sys.stderr, flush=True)
    same = all(runs[("wave", w)][i]["verdicts"] == runs[("host", w)][i]["verdicts"]
               for w in args.waves for i in range(args.reps))
    small, large = args.waves
    print(f"\nAPM gate (scrape), work beyond the bake per wave: up to {args.looks} looks, "
          f"{args.references} reference hosts, median of {args.reps}")
    print(f"| figure | mode | wave {small} | wave {large} | ratio {large}/{small} | target |")
    print("|---|---|---|---|---|---|")
    for key, unit in (("cpu", "s"), ("wall", "s"), ("scrapes", "")):
        for mode in modes:
            a, b = (statistics.median(r[key] for r in runs[(mode, w)]) for w in (small, large))
            ratio = b / a if a else float("inf")
            judged = key == "cpu" and mode == "wave" and (small, large) == (5, 50)
            target = f"<= {TARGET:g}: {'met' if ratio <= TARGET else 'missed'}" if judged else ""
            fmt = (lambda x: f"{x:.3f} s") if unit == "s" else (lambda x: f"{x:,.0f}")
            print(f"| {key} | {mode} | {fmt(a)} | {fmt(b)} | {ratio:.2f} | {target} |")
    for wave in args.waves:
        w, h = (statistics.median(r["cpu"] for r in runs[(m, wave)]) for m in modes)
        print(f"wave {wave}: cpu wave/host {w / h:.3f}")
    looks = sorted({n for r in runs.values() for f in r for _, n in f["verdicts"].values()})
    print(f"verdicts per host the same in both modes: {'yes' if same else 'NO'}; looks made: {looks}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("command: .venv/bin/python bench/gate_scale_bench.py " + " ".join(sys.argv[1:]))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
