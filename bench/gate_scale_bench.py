"""The scrape gate's work beyond the bake, per wave: a wave of 5 canaries against one of 50,
measured side by side, the gate as it is against the gate before its readings were shared.

No sandbox: the hosts are paths of one threaded HTTP server on 127.0.0.1 (host i answers
``/h<i>/metrics`` with a demo app page of the sandbox's metric names), counting the pages it
serves. Each canary's gate task is its own process, as under Ansible (one task per host of the
wave): it marks its hosts (its canary and every reference host), then makes ``--looks`` looks
(``ScrapeProvider.fetch`` of the window since the mark). The bake's sleeps are left out — the
tasks meet at a barrier before each look instead, all looking at once, the worst case for
sharing — so what is timed is only the gate's own work:

- cpu: CPU seconds of all the wave's gate tasks together (mark and looks; not their start-up),
- wall: the wall seconds of the looks (per look, the slowest task; summed over the looks),
- scrapes: /metrics pages served, and written: bytes the tasks wrote to the readings file.

``new`` is lrelease.apm.scrape as it is; ``old`` is the same module as at ``--old-ref`` (git show,
loaded as a module), whose every task reads every host itself and rewrites the whole JSON file
at each write. Waves and versions alternate; each figure is the median of ``--reps`` runs.

    .venv/bin/python bench/gate_scale_bench.py [--looks 4] [--reps 3] [--references 50] [--old-ref REF]

The target (issue 13): gate work per wave, 50 hosts / 5 hosts <= 3 (the cpu ratio is the one
judged; the others are shown beside it).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402,F401  imported before the tasks fork: their start-up is not the gate's work

from lrelease.apm import HostRef, Window  # noqa: E402
from lrelease.apm import scrape as new_scrape  # noqa: E402
from lrelease.sandbox.demoapp import gate as demo_gate  # noqa: E402
from lrelease.sandbox.demoapp.app import Metrics  # noqa: E402

OLD_REF = "38e598a"  # main before the readings were append-only and shared
FORK = multiprocessing.get_context("fork")
TARGET = 3.0


def demo_page() -> str:
    metrics = Metrics("1.0.0")
    for i in range(200):
        metrics.observe("/", 500 if i % 50 == 0 else 200, 0.001 * (i % 40))
        if i % 20 == 0:
            metrics.observe("/health", 200, 0.001)
    return metrics.render()


@contextlib.contextmanager
def fleet(page: str) -> Iterator[tuple[str, Counter]]:
    """One server for every host: /h<i>/metrics is host i's page; counts the pages served."""
    served: Counter = Counter()
    body = page.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            served[self.path] += 1
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
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


def old_module(ref: str) -> ModuleType:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:lrelease/apm/scrape.py"], check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("lrelease_old_scrape", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{ref}:lrelease/apm/scrape.py", "exec"), module.__dict__)  # noqa: S102
    return module


def provider(version: str, path: str, old: ModuleType | None):
    settings = {**demo_gate.SCRAPE, "state_path": path}
    if version == "new":
        return new_scrape.ScrapeProvider(new_scrape.ScrapeSettings(**settings)), lambda p: p.store.bytes_written
    assert old is not None
    written = [0]

    class CountingStore(old.ReadingStore):  # the old store rewrote the whole file at every write
        def _save(self) -> None:
            super()._save()
            written[0] += self.path.stat().st_size

    return (old.ScrapeProvider(old.ScrapeSettings(**settings), store=CountingStore(path)),
            lambda p: written[0])


def gate_task(version: str, path: str, canary: str, references: list[str], looks: int, barrier, out,
              old: ModuleType | None) -> None:
    gate, written = provider(version, path, old)
    hosts = [HostRef(url.rsplit("/", 1)[1], url=url) for url in [canary, *references]]
    barrier.wait(timeout=120)
    cpu0 = time.process_time()
    start = time.time()
    gate.mark(hosts)
    walls = []
    for _ in range(looks):
        cpu_paused = time.process_time()
        barrier.wait(timeout=300)  # the bake's sleep, left out
        cpu0 += time.process_time() - cpu_paused
        t0 = time.monotonic()
        gate.fetch(hosts, Window(start, time.time()))
        walls.append(time.monotonic() - t0)
    out.put((time.process_time() - cpu0, walls, written(gate)))


def run_wave(version: str, wave: int, references: int, looks: int, old: ModuleType | None,
             base: str) -> dict[str, float]:
    refs = [f"{base}/h{i}" for i in range(references)]
    canaries = [f"{base}/h{references + i}" for i in range(wave)]
    with tempfile.TemporaryDirectory(prefix="lrelease-gate-bench-") as tmp:
        path = os.path.join(tmp, "readings.json")
        barrier, out = FORK.Barrier(wave), FORK.Queue()
        tasks = [FORK.Process(target=gate_task, args=(version, path, c, refs, looks, barrier, out, old))
                 for c in canaries]
        for t in tasks:
            t.start()
        results = [out.get(timeout=900) for _ in tasks]
        for t in tasks:
            t.join(timeout=60)
    return {"cpu": sum(r[0] for r in results),
            "wall": sum(max(r[1][i] for r in results) for i in range(looks)),
            "written": sum(r[2] for r in results)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--looks", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--references", type=int, nargs="+", default=[50],
                        help="reference hosts of the 5-host and the 50-host wave (one number: both)")
    parser.add_argument("--waves", type=int, nargs=2, default=[5, 50])
    parser.add_argument("--old-ref", default=OLD_REF, help="the commit whose scrape.py is the 'old' gate ('' skips)")
    args = parser.parse_args()
    if not (1 <= args.looks <= 20 and 1 <= args.reps <= 9 and max(args.waves) <= 200):
        parser.error("--looks 1..20, --reps 1..9, waves of at most 200 hosts")
    refs = dict(zip(args.waves, args.references * 2 if len(args.references) == 1 else args.references))
    versions = ["new", "old"] if args.old_ref else ["new"]
    old = old_module(args.old_ref) if args.old_ref else None
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    page = demo_page()
    with fleet(page) as (base, served):
        for rep in range(args.reps):
            order = [(v, w) for w in args.waves for v in versions]
            for version, wave in order if rep % 2 == 0 else order[::-1]:  # alternate
                served.clear()
                figures = run_wave(version, wave, refs[wave], args.looks, old, base)
                figures["scrapes"] = sum(served.values())
                runs.setdefault((version, wave), []).append(figures)
                print(f"rep {rep + 1} {version:3} wave {wave:3} refs {refs[wave]:3}: "
                      + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()),
                      file=sys.stderr, flush=True)
    small, large = args.waves
    print(f"\nscrape gate, work beyond the bake per wave: {args.looks} looks and a mark, "
          f"{len(page)} B pages, median of {args.reps}")
    print(f"| figure | version | wave {small} (refs {refs[small]}) | wave {large} (refs {refs[large]}) "
          f"| ratio {large}/{small} | target |")
    print("|---|---|---|---|---|---|")
    for key, unit in (("cpu", "s"), ("wall", "s"), ("scrapes", ""), ("written", " B")):
        for version in versions:
            a, b = (statistics.median(r[key] for r in runs[(version, w)]) for w in (small, large))
            ratio = b / a if a else float("inf")
            judged = key == "cpu" and (small, large) == (5, 50)  # the target is for these waves
            target = f"<= {TARGET:g}: {'met' if ratio <= TARGET else 'missed'}" if judged else ""
            fmt = (lambda x: f"{x:.3f}{unit}") if unit == "s" else (lambda x: f"{x:,.0f}{unit}")
            print(f"| {key} | {version} | {fmt(a)} | {fmt(b)} | {ratio:.2f} | {target} |")
    if args.old_ref:
        for wave in args.waves:
            n, o = (statistics.median(r["cpu"] for r in runs[(v, wave)]) for v in ("new", "old"))
            print(f"wave {wave}: cpu new/old {n / o:.3f}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("command: .venv/bin/python bench/gate_scale_bench.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
