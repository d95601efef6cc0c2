"""Scale, measured side by side in one run: `plan` and `inventory generate` on generated fleets of
1,000 and 10,000 hosts, and the handling of a simulated roll-out's events for 100 and 1,000 hosts.

No root, no sandbox, no network: a temporary project (lrelease.yml and a fleet file) per size.
Prints one table: each figure with its target and met/missed, the load average, the command.

    .venv/bin/python bench/scale_bench.py [--reps 5] [--json out.json]

What is timed:
- `plan` / `inventory generate`: the CPU time (time.process_time) of the command run in-process
  through the CLI (click), after one warm-up run per size, so imports and Python's start-up are not
  counted; the median of --reps runs, sizes alternating. Also, for information, the CPU of a whole
  `lrelease` process (start-up and imports included) for 10,000 hosts, and of `lrelease --help`.
- events: bench/event_stream.py's stream of a deploy (stage, waves [1, 1, 5%, 25%, 100%], gates,
  stats; about 11 events per host) fed to the wrapper's handler (runner._EventTranslator) and the
  progress view, as `deploy` runs them without a terminal (a line printed per host event) and under
  a live display (state only; the display redraws at most ROWS_SHOWN rows 4 times a second). The
  stream is built whole before it is timed; it is kept out of the cycle collector's way (gc.freeze),
  as a real one, which arrives event by event, would be.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from click.testing import CliRunner
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from event_stream import deploy_events  # noqa: E402

from lrelease.cli.main import cli  # noqa: E402
from lrelease.cli.progress import ProgressView  # noqa: E402
from lrelease.runner import RunResult, _EventTranslator  # noqa: E402

FLEET_SIZES = (1_000, 10_000)
EVENT_SIZES = (100, 1_000)
CPU_TARGET = 0.5  # seconds, 10,000 hosts
RATIO_TARGET = 11.0  # 10x the hosts: at most 11x the time (linear, some fixed cost)


def write_project(root: Path, count: int) -> Path:
    """lrelease.yml (production, waves [1, 1, 5%, 25%, 100%]) and a fleet of ``count`` nodes: defaults
    vars, node00001 the canary, every 100th node tagged eu with a port of its own."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["defaults:\n  vars: {ansible_user: root, lrelease_app_port: 8080}\n", "nodes:\n"]
    for i in range(1, count + 1):
        extra = (" tags: [canary]," if i == 1 else
                 " tags: [eu], vars: {lrelease_app_port: 8081}," if i % 100 == 0 else "")
        address = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        lines.append(f"  node{i:05d}: {{environment: production,{extra} address: {address}}}\n")
    (root / "fleet.yml").write_text("".join(lines))
    config = {"version": 1, "app": "shop", "fleet": "fleet.yml", "state_dir": "state",
              "environments": {"production": {"waves": [1, 1, "5%", "25%", "100%"], "bake_seconds": 30,
                                              "deploy_root": "/srv/shop", "service": {"systemd": "shop"}}}}
    path = root / "lrelease.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cli_cpu(args: list[str]) -> float:
    runner = CliRunner(env={"COLUMNS": "100"})
    start = time.process_time()
    result = runner.invoke(cli, args, catch_exceptions=False)
    spent = time.process_time() - start
    if result.exit_code != 0:
        raise SystemExit(f"lrelease {' '.join(args)} exited {result.exit_code}: {result.output[-500:]}")
    return spent


def process_cpu(args: list[str]) -> float:
    """User + system CPU of a whole `lrelease` process (start-up and imports included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(Path(sys.executable).parent / "lrelease"), *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "COLUMNS": "100"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def handle_events(events: list[dict], hosts: list[str], *, printed: bool) -> float:
    """CPU to hand every event to the wrapper's handler and the progress view."""
    view = ProgressView(hosts, live=False, console=Console(file=io.StringIO(), width=100))
    if not printed:
        view._live = object()  # as under a live display: update records state, rich redraws on its own clock
    handler = _EventTranslator(RunResult(status="successful"), view.update)
    gc.collect()
    gc.freeze()  # the stream is held whole only to time its handling: the collector need not walk it
    try:
        start = time.process_time()
        for event in events:
            handler(event)
        return time.process_time() - start
    finally:
        gc.unfreeze()


def median_alternating(sizes: tuple[int, ...], reps: int, run: Callable[[int], float]) -> dict[int, float]:
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for rep in range(reps):
        for n in (sizes if rep % 2 == 0 else tuple(reversed(sizes))):
            times[n].append(run(n))
    return {n: statistics.median(v) for n, v in times.items()}


def measure(reps: int) -> dict:
    """Every figure, side by side: ``rows`` (label, measured, target, met), ``info`` (label,
    measured, note), and the raw medians."""
    work = Path(tempfile.mkdtemp(prefix="lrelease-scale-"))
    try:
        configs = {n: write_project(work / str(n), n) for n in FLEET_SIZES}
        plan_args = {n: ["plan", "--env", "production", "--config", str(configs[n])] for n in FLEET_SIZES}
        inv_args = {n: ["inventory", "generate", "--config", str(configs[n]), "--out", str(work / f"inv{n}")]
                    for n in FLEET_SIZES}
        for n in FLEET_SIZES:  # warm-up: imports, first use of each code path
            cli_cpu(plan_args[n])
            cli_cpu(inv_args[n])
        plan = median_alternating(FLEET_SIZES, reps, lambda n: cli_cpu(plan_args[n]))
        inv = median_alternating(FLEET_SIZES, reps, lambda n: cli_cpu(inv_args[n]))
        streams = {n: (deploy_events(n), [f"node{i:05d}" for i in range(1, n + 1)]) for n in EVENT_SIZES}
        printed = median_alternating(EVENT_SIZES, reps, lambda n: handle_events(*streams[n], printed=True))
        live = median_alternating(EVENT_SIZES, reps, lambda n: handle_events(*streams[n], printed=False))
        big = FLEET_SIZES[-1]
        whole = {"plan": statistics.median(process_cpu(plan_args[big]) for _ in range(3)),
                 "inventory generate": statistics.median(process_cpu(inv_args[big]) for _ in range(3)),
                 "--help": statistics.median(process_cpu(["--help"]) for _ in range(3))}
        load = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    small, n_events = FLEET_SIZES[0], {n: len(streams[n][0]) for n in EVENT_SIZES}
    rows = [
        ("`plan` CPU, 10,000 hosts", f"{plan[big]:.3f} s", f"< {CPU_TARGET} s", plan[big] < CPU_TARGET),
        ("`inventory generate` CPU, 10,000 hosts", f"{inv[big]:.3f} s", f"< {CPU_TARGET} s", inv[big] < CPU_TARGET),
        (f"`plan` 10,000 / 1,000 hosts ({plan[big]:.3f} / {plan[small]:.3f} s)", f"{plan[big] / plan[small]:.1f}",
         f"<= {RATIO_TARGET:g}", plan[big] / plan[small] <= RATIO_TARGET),
        (f"`inventory generate` 10,000 / 1,000 hosts ({inv[big]:.3f} / {inv[small]:.3f} s)",
         f"{inv[big] / inv[small]:.1f}", f"<= {RATIO_TARGET:g}", inv[big] / inv[small] <= RATIO_TARGET),
    ]
    for label, figures in (("a line printed per host event", printed), ("live display", live)):
        a, b = (figures[n] for n in EVENT_SIZES)
        rows.append((f"events 1,000 / 100 hosts, {label} ({b * 1e6 / n_events[1_000]:.1f} / "
                     f"{a * 1e6 / n_events[100]:.1f} µs per event)", f"{b / a:.1f}", f"<= {RATIO_TARGET:g}",
                     b / a <= RATIO_TARGET))
    info = [(f"whole `lrelease {k}` process, 10,000 hosts" if k != "--help" else "whole `lrelease --help` process",
             f"{v:.2f} s", "(information: start-up and imports included)") for k, v in whole.items()]
    return {"rows": rows, "info": info, "plan": plan, "inventory": inv, "events_printed": printed,
            "events_live": live, "whole_process": whole, "load": load, "n_events": n_events}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    figures = measure(args.reps)
    rows, info, load, n_events = figures["rows"], figures["info"], figures["load"], figures["n_events"]

    width = max(len(r[0]) for r in rows + info)
    print(f"{'figure':<{width}}  {'measured':>9}  {'target':<9}  result")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 9}  ------")
    for label, value, target, met in rows:
        print(f"{label:<{width}}  {value:>9}  {target:<9}  {'met' if met else 'MISSED'}")
    for label, value, note in info:
        print(f"{label:<{width}}  {value:>9}  {note}")
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs); "
          f"medians of {args.reps} runs, sizes alternating; events per stream: "
          + ", ".join(f"{n_events[n]} for {n} hosts" for n in EVENT_SIZES))
    python = sys.executable
    python = str(Path(python).relative_to(ROOT)) if python.startswith(str(ROOT)) else python
    print(f"command: {python} bench/scale_bench.py --reps {args.reps}")
    if args.json:
        args.json.write_text(json.dumps({k: figures[k] for k in ("plan", "inventory", "events_printed", "events_live",
                                                                  "whole_process", "load")}
                                        | {"rows": [list(r) for r in rows]}, indent=2, default=str))
    return 0 if all(r[3] for r in rows) else 1

if __name__ == "__main__":
    sys.exit(main())
