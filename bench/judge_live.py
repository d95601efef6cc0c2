"""Benchmark, not a test: the APM gate's judge with its default settings, live on the sandbox.

    .venv/bin/python bench/judge_live.py [--good 20] [--bad 10] [--rate 300] [--slot 0] [--json FILE]

Brings up a 4-node sandbox of its own (state /var/lib/lrelease-sandbox-judge[-slotN], subnet
198.18.(200+N).0/24, HAProxy on 26480+10N, Prometheus on 27480+10N), so a demo or test fleet can
stay up beside it, puts it under steady load (the sandbox's load generator, bounded in rate and
time), and takes it down at the end (unless --keep). Needs root, like every netns sandbox.

The project is the one ``lrelease sandbox up --gate scrape`` writes (waves [1, 1, 50%, 100%];
looks every 20 s up to 80 s, +1 point of errors tolerated, 200 requests at least) with every
other judge setting at its default — the dispersion is estimated, not pinned. Then, in the
order good, good, bad (repeated): ``--good`` roll-outs of builds carrying the fleet's baseline
error rate (0.5%, each build rolled out over the previous one) and ``--bad`` roll-outs of a
build with 5% errors. Each goes through the CLI a user would type
(``lrelease deploy --yes --json``). After each one the fleet is checked (each node serves the
build it should: the new one after a success, the previous one after a rollback); a halted
roll-out is undone with ``lrelease rollback`` so the next one starts from a whole fleet.

Reports, for each kind: halts (exit 5), rollbacks (exit 1), successes, where each bad build
was caught (wave and host; "canary" when node1 alone had switched), the mean duration, and
the gate's looks. Progress goes to stderr; with ``--json FILE`` every roll-out is written as it
ends, so an interrupted run keeps its partial counts. Exit status: 0 when every roll-out ran
and the fleet was where it should be afterwards (whatever the verdicts), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests
import yaml

from lrelease.sandbox import provision, services
from lrelease.sandbox.config import SandboxConfig
from lrelease.sandbox.demoapp.build import Behaviour
from lrelease.sandbox.fleet import Sandbox, project_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BASELINE_ERRORS = 0.005  # the sandbox's baseline build (provision.BASELINE_BEHAVIOUR)
BAD_ERRORS = 0.05
DEPLOY_TIMEOUT = 900  # seconds; a roll-out of 4 waves with 80 s bakes takes ~2-6 min


def sandbox_settings(slot: int) -> tuple[Path, dict]:
    suffix = f"-slot{slot}" if slot else ""
    return Path(f"/var/lib/lrelease-sandbox-judge{suffix}"), {
        "subnet": f"198.18.{200 + slot}.0/24", "prefix": f"lrjudge{slot}", "bridge": f"lrbj{slot}",
        "haproxy_port": 26480 + 10 * slot, "prometheus_port": 27480 + 10 * slot}


class FleetWrong(RuntimeError):
    """After a roll-out the fleet is not where it should be: later figures would mean nothing."""


@dataclass
class Run:
    index: int
    kind: str  # good | bad
    build: str
    exit_code: int
    status: str
    seconds: float
    switched: list[str]
    rolled_back: list[str]
    gates: list[dict]  # host, wave, verdict, looks, compared_with, phi
    caught: str = ""  # bad builds: where (e.g. "canary: wave 1 node1")
    message: str = ""
    load: float = 0.0


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)

    def of(self, kind: str) -> list[Run]:
        return [r for r in self.runs if r.kind == kind]


def gate_summary(gates: list[dict]) -> list[dict]:
    out = []
    for g in gates:
        ev = g.get("evidence") or {}
        last = ev.get("last") or {}
        phi = None
        for check in last.get("checks") or []:
            if check.get("check") == "errors":
                phi = ((check.get("evidence") or {}).get("dispersion") or {}).get("phi")
        out.append({"host": g.get("host"), "wave": g.get("wave"), "verdict": g.get("verdict"),
                    "looks": ev.get("looks"), "compared_with": ev.get("compared_with"), "phi": phi})
    return out


class Bench:
    def __init__(self, sandbox: Sandbox, work: Path, results_json: Path | None) -> None:
        self.sandbox, self.work, self.results_json = sandbox, work, results_json
        self.cfg: SandboxConfig = sandbox.config
        project = project_config(self.cfg, gate_provider="scrape")
        assert "dispersion" not in project["environments"]["production"]["gate"], "the bench measures the default"
        project["state_dir"] = str(work / "lrelease-state")
        self.config_path = work / "lrelease.yml"
        self.config_path.write_text(yaml.safe_dump(project, sort_keys=False))
        self.gate = project["environments"]["production"]["gate"]
        self.results = Results()
        self.live = self.cfg.baseline_build  # what the whole fleet serves between roll-outs

    def lrelease(self, *args: str) -> tuple[dict, float]:
        env = {**os.environ, "LRELEASE_ACTOR": "bench", "ANSIBLE_NOCOLOR": "1"}
        start = time.monotonic()
        proc = subprocess.run([str(BIN / "lrelease"), *args, "--yes", "--json", "--config", str(self.config_path)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT, check=False)
        took = time.monotonic() - start
        try:
            out = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            raise FleetWrong(f"lrelease {' '.join(args)}: exit {proc.returncode}, no JSON outcome\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from None
        out["exit_code"] = proc.returncode
        return out, took

    def serving(self) -> dict[str, str]:
        return {n.name: requests.get(f"http://{n.address}:{n.app_port}/version", timeout=5).text.strip()
                for n in self.cfg.all_nodes()}

    def expect(self, what: str, build: str) -> None:
        got = self.serving()
        if set(got.values()) != {build}:
            raise FleetWrong(f"after {what}: nodes serve {got}, expected {build} everywhere")

    def roll_out(self, index: int, kind: str, build: str) -> Run:
        load = os.getloadavg()[0]
        out, took = self.lrelease("deploy", "--env", "production", "--build", build)
        gates = gate_summary(list(out.get("gates") or []))
        run = Run(index, kind, build, out["exit_code"], out.get("status", "?"), round(took, 1),
                  list(out.get("switched") or []), list(out.get("rolled_back") or []), gates,
                  message=str(out.get("message", ""))[:300], load=round(load, 2))
        failed = [g for g in gates if g["verdict"] != "pass"]
        if kind == "bad" and failed:
            first = failed[0]
            where = "canary" if first["wave"] == 1 and run.switched == [self.cfg.all_nodes()[0].name] else "later"
            run.caught = f"{where}: wave {first['wave']} {first['host']} {first['verdict']}"
        elif kind == "bad":
            run.caught = "missed"
        if run.exit_code == 0:
            self.expect(f"{build} succeeded", build)
            self.live = build
        elif run.exit_code == 1:
            self.expect(f"{build} rolled back", self.live)
        elif run.exit_code == 5:  # halted for a human: the human here undoes it
            undo, _ = self.lrelease("rollback", "--env", "production")
            if undo["exit_code"] != 0:
                raise FleetWrong(f"rollback after the halt of {build}: {undo.get('message')}")
            self.expect(f"{build} halted and undone", self.live)
        else:
            raise FleetWrong(f"{build}: exit {run.exit_code}: {run.message}")
        self.results.runs.append(run)
        self.save()
        return run

    def save(self) -> None:
        if self.results_json is not None:
            self.results_json.write_text(json.dumps({"gate": self.gate, "nodes": self.cfg.nodes,
                                                     "runs": [asdict(r) for r in self.results.runs],
                                                     "summary": summary(self.results)}, indent=2) + "\n")


def schedule(good: int, bad: int) -> list[str]:
    """good, good, bad, ... (bad ones spread evenly; leftovers of either kind at the end)."""
    order: list[str] = []
    g = b = 0
    while g < good or b < bad:
        for _ in range(2):
            if g < good:
                order.append("good")
                g += 1
        if b < bad:
            order.append("bad")
            b += 1
    return order


def summary(results: Results) -> dict:
    out = {}
    for kind in ("good", "bad"):
        runs = results.of(kind)
        if not runs:
            continue
        looks = [g["looks"] for r in runs for g in r.gates if g["looks"] is not None]
        phis = [g["phi"] for r in runs for g in r.gates if g["phi"] is not None]
        out[kind] = {
            "rollouts": len(runs),
            "succeeded": sum(r.exit_code == 0 for r in runs),
            "rolled_back": sum(r.exit_code == 1 for r in runs),
            "halted": sum(r.exit_code == 5 for r in runs),
            "mean_seconds": round(statistics.mean(r.seconds for r in runs), 1),
            "gate_looks": sum(looks),
            "gates": len(looks),
            "phi_max": max(phis) if phis else None,
        }
        if kind == "bad":
            out[kind]["caught_on_canary"] = sum(r.caught.startswith("canary") for r in runs)
            out[kind]["caught_later"] = sum(r.caught.startswith("later") for r in runs)
            out[kind]["missed"] = sum(r.caught == "missed" for r in runs)
    return out


def render(results: Results, rate: float, nodes: int, gate: dict) -> str:
    s = summary(results)
    timing = {k: gate[k] for k in ("bake_seconds", "interval_seconds", "max_bake_seconds") if k in gate}
    lines = [f"judge live: {nodes} nodes under {rate:g} requests/s; gate {gate.get('provider')} {timing}, "
             f"dispersion {gate.get('dispersion', 'estimated (default)')}", ""]
    for kind, label in (("good", f"good builds ({BASELINE_ERRORS:.1%} errors)"), ("bad", f"bad builds ({BAD_ERRORS:.0%} errors)")):
        if kind not in s:
            continue
        k = s[kind]
        line = (f"{label:28} {k['rollouts']:3} roll-outs: {k['succeeded']} succeeded, {k['rolled_back']} rolled back, "
                f"{k['halted']} halted; mean {k['mean_seconds']:.1f} s; {k['gate_looks']} looks over {k['gates']} gates; "
                f"largest phi {k['phi_max']}")
        if kind == "bad":
            line += f"; caught on the canary {k['caught_on_canary']}, later {k['caught_later']}, missed {k['missed']}"
        lines.append(line)
    lines.append("")
    for r in results.runs:
        verdicts = " ".join(f"w{g['wave']}:{g['host']}={g['verdict']}/{g['looks']}" for g in r.gates)
        lines.append(f"{r.index:3} {r.kind:4} {r.build:12} exit {r.exit_code} {r.status:10} {r.seconds:6.1f} s "
                     f"load {r.load:4.1f}  {verdicts}  {r.caught}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The APM gate's default judge, live on a sandbox of its own.")
    parser.add_argument("--good", type=int, default=20, help="roll-outs of builds at the baseline error rate (20)")
    parser.add_argument("--bad", type=int, default=10, help="roll-outs of a build with 5%% errors (10)")
    parser.add_argument("--rate", type=float, default=300.0, help="steady load, requests/s over all nodes (300)")
    parser.add_argument("--slot", type=int, default=0, choices=range(10), help="moves the sandbox (0-9)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up afterwards")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every roll-out as JSON (as it ends)")
    args = parser.parse_args(argv)
    if args.good < 0 or args.bad < 0 or args.good + args.bad == 0:
        parser.error("--good and --bad must be >= 0, and not both 0")
    order = schedule(args.good, args.bad)
    # Bounded load: long enough for every roll-out at its slowest, then it stops by itself.
    load_seconds = min(4 * 3600, 120 + len(order) * DEPLOY_TIMEOUT)

    # SIGTERM (kill, a job scheduler) ends it like Ctrl-C: the roll-out in flight is killed, the
    # load stopped and the sandbox taken down (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    state_dir, settings = sandbox_settings(args.slot)
    sandbox = Sandbox(state_dir)
    print(f"bringing up the judge sandbox ({state_dir}, {settings['subnet']}) ...", file=sys.stderr, flush=True)
    sandbox.up(nodes=4, load_rate=0, **settings)
    code = 0
    try:
        sandbox.reset()
        services.start_load(sandbox.config, rate=args.rate, duration=load_seconds)
        with tempfile.TemporaryDirectory(prefix="lrelease-judge-") as tmp:
            bench = Bench(sandbox, Path(tmp), args.json)
            for i, kind in enumerate(order, 1):
                behaviour = Behaviour(error_rate=BASELINE_ERRORS if kind == "good" else BAD_ERRORS)
                build = f"3.0.{i}" if kind == "good" else f"3.0.{i}-bad"
                provision.artifact(sandbox.config, build, behaviour)
                try:
                    run = bench.roll_out(i, kind, build)
                except FleetWrong as exc:
                    print(f"bench: stopped at roll-out {i}: {exc}", file=sys.stderr, flush=True)
                    code = 1
                    break
                print(f"{i}/{len(order)} {kind} {build}: exit {run.exit_code} {run.status} in {run.seconds:.0f} s "
                      f"{run.caught}", file=sys.stderr, flush=True)
            print(render(bench.results, args.rate, sandbox.config.nodes, bench.gate), flush=True)
    finally:
        services.stop_load(sandbox.config)
        if not args.keep:
            sandbox.down()
    return code


if __name__ == "__main__":
    sys.exit(main())
