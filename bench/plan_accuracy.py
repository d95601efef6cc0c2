"""Benchmark, not a test: is `lrelease plan`'s time estimate right for a roll-out judged by the
APM gate? Runs the same gated roll-out on a sandbox of its own and prints estimate / measured.

    .venv/bin/python bench/plan_accuracy.py [--reps 3] [--keep] [--json FILE]

Brings up a 6-node sandbox (state /var/lib/lrelease-sandbox-planbench, 198.18.84.0/24; with
LRELEASE_TEST_SLOT=N the state dir, subnet, names and ports move aside like the test suite's,
so parallel runs never share a fleet) under steady load (150 requests/s over the nodes, the test
suite's rate), with the sandbox's APM gate (provider scrape: bake 20 s, a look every 20 s up to
80 s) on waves [1, 1, 50%, 100%], and takes it down at the end (unless --keep). Needs root.

Per repetition: the fleet back on 1.0.0; `lrelease plan --json` (the estimate a user would see
just then: the first one has no gate recorded yet and assumes the middle of 1 to the gate's most
looks, the later ones take the mean looks of the gates recorded so far, and each states the range
the roll-out usually lands in); `lrelease deploy --env production --build
2.0.0 --yes` timed from the outside (its progress lines timestamped as they arrive: staging,
then each wave); every node checked on 2.0.0; `lrelease show --json` read for each gate's looks.
Prints measured and estimated seconds side by side (the roll-out, staging, each wave), the looks,
the load average, estimate / measured per repetition (target: within 20%, 0.8 to 1.2) and
whether the measured time fell inside the plan's stated range.
Exit status: 0 when every run did its job (whatever the ratio), 1 when one did not (the runs
before it are still reported; a failed run ends the bench).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from lrelease.sandbox import provision, services
from lrelease.sandbox.fleet import Sandbox, project_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SLOT = int(os.environ.get("LRELEASE_TEST_SLOT", "0"))
_TAG = str(SLOT) if SLOT else ""
STATE_DIR = Path("/var/lib/lrelease-sandbox-planbench" + (f"-slot{SLOT}" if SLOT else ""))
SANDBOX = {"subnet": f"198.18.{84 + 10 * SLOT}.0/24", "prefix": "lrpb" + _TAG, "bridge": "lrbrp" + _TAG,
           "haproxy_port": 21080 + 100 * SLOT, "prometheus_port": 22080 + 100 * SLOT, "gate": "scrape"}
LOAD_RATE = 150  # requests/s over all nodes, as tests/conftest.py
BUILD = "2.0.0"
TARGET = 0.2  # within 20%


class RunFailed(RuntimeError):
    """A measured run did not do its job; its time would mean nothing."""


@dataclass
class Run:
    plan: dict  # what `lrelease plan --json` said just before this roll-out
    seconds: float
    stage: float
    waves: list[float]
    looks: list[int] = field(default_factory=list)
    load: float = 0.0  # 1-minute load average as it started

    @property
    def ratio(self) -> float:
        return self.plan["estimate_seconds"] / self.seconds

    @property
    def in_range(self) -> bool:
        return self.plan["estimate_low_seconds"] <= self.seconds <= self.plan["estimate_high_seconds"]


def lrelease(config: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lrelease"), *args, "--config", str(config)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False, env={**os.environ, "LRELEASE_ACTOR": "bench"})


def timed_deploy(config: Path) -> tuple[float, list[tuple[float, str]], int]:
    """Wall time of one deploy, its progress lines (seconds since the start, text), exit code."""
    start = time.monotonic()
    proc = subprocess.Popen([str(BIN / "lrelease"), "deploy", "--env", "production", "--build", BUILD, "--yes",
                             "--config", str(config)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "LRELEASE_ACTOR": "bench", "COLUMNS": "200"})
    lines: list[tuple[float, str]] = []
    killer = threading.Timer(900, proc.kill)  # bounded: a stuck run is killed, and counted as failed
    killer.start()
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.monotonic() - start, line.rstrip()))
        code = proc.wait()
    finally:
        killer.cancel()
    return time.monotonic() - start, lines, code


def phases(took: float, lines: list[tuple[float, str]]) -> tuple[float, list[float]]:
    """Staging (start to the first wave) and each wave (to the next wave, the last to the end)."""
    starts = [at for at, text in lines if text.startswith("wave ")]
    if not starts:
        raise RunFailed("no wave started:\n" + "\n".join(text for _, text in lines[-20:]))
    ends = starts[1:] + [took]
    return starts[0], [end - begin for begin, end in zip(starts, ends)]


class Bench:
    def __init__(self, sandbox: Sandbox, work: Path) -> None:
        self.sandbox, self.cfg = sandbox, sandbox.config
        provision.artifact(self.cfg, BUILD, provision.BASELINE_BEHAVIOUR)  # a good build: the baseline's behaviour
        project = project_config(self.cfg, gate_provider="scrape")
        project["state_dir"] = str(work / "lrelease-state")
        self.config = work / "lrelease.yml"
        self.config.write_text(yaml.safe_dump(project, sort_keys=False))

    def estimate(self) -> dict:
        proc = lrelease(self.config, "plan", "--env", "production", "--build", BUILD, "--json")
        if proc.returncode != 0:
            raise RunFailed(f"plan: exit {proc.returncode}: {proc.stderr[-2000:]}")
        return json.loads(proc.stdout)

    def reset(self) -> None:
        """Every node on the baseline build, app running, in rotation; then traffic settles."""
        self.sandbox.reset()
        for node in self.cfg.all_nodes():  # reset() leaves HAProxy alone
            services.haproxy_command(self.cfg, f"set server be_{self.cfg.app}/{node.name} state ready")
        time.sleep(10)

    def run(self) -> Run:
        self.reset()
        plan, load = self.estimate(), os.getloadavg()[0]
        took, lines, code = timed_deploy(self.config)
        if code != 0:
            raise RunFailed(f"deploy: exit {code}\n" + "\n".join(text for _, text in lines[-30:]))
        for node in self.cfg.all_nodes():
            got = requests.get(f"http://{node.address}:{node.app_port}/version", timeout=3).text.strip()
            if got != BUILD:
                raise RunFailed(f"{node.name} serves {got!r}, expected {BUILD!r}")
        stage, waves = phases(took, lines)
        run = Run(plan, took, stage, waves, load=load)
        history = lrelease(self.config, "history", "--env", "production", "--limit", "1", "--json")
        rid = json.loads(history.stdout)["rollouts"][0]["id"]
        shown = json.loads(lrelease(self.config, "show", rid, "--json").stdout)
        run.looks = [int(g["evidence"].get("looks") or 0) for g in shown["gates"]]
        return run


def render(runs: list[Run]) -> str:
    gate = runs[0].plan["gate"]
    lines = [
        f"plan accuracy: 6 nodes, waves {runs[0].plan['spec']}, APM gate {gate['provider']} (bake "
        f"{gate['bake_seconds']:g} s, a look every {gate['interval_seconds']:g} s up to {gate['max_bake_seconds']:g} s), "
        f"{LOAD_RATE} requests/s; the estimate is `lrelease plan` just before each roll-out",
        "",
        f"{'':26}" + "".join(f"{'rep ' + str(i + 1):>16}" for i in range(len(runs))),
        f"{'':26}" + "".join(f"{'measured  plan':>16}" for _ in runs),
    ]

    def row(label: str, pairs: list[tuple[float, float]]) -> str:
        return f"{label:26}" + "".join(f"{m:>9.1f}{e:>7.1f}" for m, e in pairs)

    lines.append(row("roll-out (s)", [(r.seconds, r.plan["estimate_seconds"]) for r in runs]))
    lines.append(row("  staging (s)", [(r.stage, r.plan["estimate_stage_seconds"]) for r in runs]))
    for i in range(len(runs[0].plan["estimate_wave_seconds"])):
        lines.append(row(f"  wave {i + 1}: switch+gate (s)",
                         [(r.waves[i] if i < len(r.waves) else 0.0, r.plan["estimate_wave_seconds"][i]) for r in runs]))
    lines.append(f"{'looks the plan expected':26}" + "".join(f"{r.plan['gate']['expected_looks']:>16.2f}" for r in runs))
    lines.append(f"{'looks taken (mean)':26}" + "".join(f"{sum(r.looks) / max(len(r.looks), 1):>16.2f}" for r in runs))
    lines.append(f"{'load average at start':26}" + "".join(f"{r.load:>16.2f}" for r in runs))
    lines.append("")
    lines.extend(f"rep {i}: looks per gate {r.looks}" for i, r in enumerate(runs, 1))
    for i, r in enumerate(runs, 1):
        verdict = "met" if abs(r.ratio - 1) <= TARGET else "MISSED"
        basis = (f"{r.plan['gate']['looks_from']} gates recorded" if r.plan["gate"]["looks_from"]
                 else f"no gate recorded yet: {r.plan['gate']['expected_looks']:g} looks assumed")
        lines.append(f"rep {i}: estimate / measured {r.ratio:.2f}  (target {1 - TARGET:.1f} to {1 + TARGET:.1f})  "
                     f"{verdict}  ({basis}; longest estimate {r.plan['estimate_max_seconds']:.0f} s)")
        lines.append(f"rep {i}: range {r.plan['estimate_low_seconds']:.0f}-{r.plan['estimate_high_seconds']:.0f} s, "
                     f"measured {r.seconds:.0f} s: {'inside' if r.in_range else 'OUTSIDE'}")
    ratios = [r.ratio for r in runs]
    lines.append(f"all: estimate / measured median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-"
                 f"{max(ratios):.2f}; {sum(abs(x - 1) <= TARGET for x in ratios)} of {len(runs)} within "
                 f"{TARGET:.0%}; {sum(r.in_range for r in runs)} of {len(runs)} inside the stated range")
    cpus = os.cpu_count() or 1
    if max(r.load for r in runs) > cpus:
        lines.append(f"warning: load average above {cpus} (the CPUs): other work slowed the roll-outs; a plan with "
                     "nothing recorded yet uses defaults measured on a quiet machine, later ones learn the pace")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="plan's estimate against the measured wall time of the same "
                                                 "gated roll-out, on a sandbox of its own.")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--keep", action="store_true", help="leave the bench sandbox up afterwards")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    sandbox = Sandbox(STATE_DIR)
    print(f"bringing up the bench sandbox ({STATE_DIR}, {SANDBOX['subnet']}) ...", file=sys.stderr)
    sandbox.up(nodes=6, load_rate=LOAD_RATE, load_duration=3600, **SANDBOX)
    try:
        with tempfile.TemporaryDirectory(prefix="lrelease-planbench-") as tmp:
            bench = Bench(sandbox, Path(tmp))
            runs = []
            for rep in range(args.reps):
                print(f"repetition {rep + 1}/{args.reps} ...", file=sys.stderr)
                runs.append(bench.run())
    except RunFailed as exc:
        failed = f"bench: repetition {len(runs) + 1} did not do its job, so it has no figure: {exc}"
        print(failed, file=sys.stderr)
    else:
        failed = ""
    finally:
        if not args.keep:
            sandbox.down()
    if not runs:
        return 1
    print(render(runs) + (f"\n{failed.splitlines()[0]}" if failed else ""))
    if args.json:
        args.json.write_text(json.dumps({"runs": [{**r.__dict__, "ratio": r.ratio, "in_range": r.in_range} for r in runs]}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
