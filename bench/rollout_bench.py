"""Benchmark, not a test: how long lrelease takes to roll a 20 MiB build out to 6 sandbox nodes
(bake 0) against a naive serial playbook doing the same job, and how long a fleet rollback
takes against that roll-out.

    .venv/bin/python bench/rollout_bench.py [--reps 3] [--keep] [--profile DIR] [--json FILE]

Brings up a sandbox of its own (state /var/lib/lrelease-sandbox-bench, 198.18.83.0/24), so a
demo or test fleet can stay up beside it, and takes it down at the end (unless --keep). Needs
root, like every netns sandbox. Each repetition, in alternating order:

- lrelease: fleet reset to 1.0.0, ``lrelease deploy --env production --build 2.0.0 --yes``
  (waves [1, 1, 50%, 100%], bake 0, HAProxy drain, gate on /health, cleanup), then
  ``lrelease rollback --env production --yes`` (every node back to 1.0.0, in parallel);
- naive: fleet reset to 1.0.0, ``ansible-playbook bench/naive_deploy.yml`` (serial: 1; copy,
  unarchive, switch, restart, /health per host).

Both go through the CLI a user would type, with the project's ansible.cfg (pipelining,
ControlPersist), and every run starts with cold SSH connections (a control-path directory of
its own), so no run inherits another's. Every run is checked (each node serves the expected
version) before its time counts. Prints the times, their medians and three ratios: deploy/naive
(target <= 0.45), rollback/deploy (target <= 0.3) and wrapper/bare (target <= 1.05). The machine is shared: compare ratios
within one run, not absolute seconds across runs. Exit status: 0 when every run did its job
(whatever the ratios), 1 when one did not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from lrelease.ansible_env import ansible_env
from lrelease.runner import KEEP_RUNS
from lrelease.sandbox import provision, services
from lrelease.sandbox.config import SandboxConfig
from lrelease.sandbox.demoapp.build import Behaviour
from lrelease.sandbox.fleet import Sandbox, project_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# LRELEASE_TEST_SLOT=N moves the sandbox aside like the test suite's (engineers benching in parallel).
# Ports below Linux's ephemeral range (32768+), where a client socket could hold them (tests/conftest.py).
SLOT = int(os.environ.get("LRELEASE_TEST_SLOT", "0"))
_TAG = str(SLOT) if SLOT else ""
STATE_DIR = Path("/var/lib/lrelease-sandbox-bench" + (f"-slot{SLOT}" if SLOT else ""))
SANDBOX = {"subnet": f"198.18.{83 + 10 * SLOT}.0/24", "prefix": "lrbench" + _TAG, "bridge": "lrbrx" + _TAG,
           "haproxy_port": 23080 + 100 * SLOT, "prometheus_port": 23090 + 100 * SLOT}
BUILD = "2.0.0"
TARGETS = {"deploy / naive": 0.45, "rollback / deploy": 0.3, "wrapper / bare": 1.05}
ROWS = (("naive", "naive serial playbook"), ("deploy", "lrelease deploy"), ("bare", "bare ansible-playbook deploy"),
        ("rollback", "lrelease rollback"))
# The bounded load through HAProxy while a rollback runs (requests/s; seconds at most): what it
# counts as failed is what the load balancer failed (connection errors, HAProxy's 502/503/504).
LB_RATE, LB_SECONDS, LB_FAILURES = 100, 120, {502, 503, 504}


class RunFailed(RuntimeError):
    """A measured run did not do its job; its time would mean nothing."""


@dataclass
class Results:
    times: dict[str, list[float]] = field(default_factory=lambda: {key: [] for key, _ in ROWS})
    loads: list[float] = field(default_factory=list)  # 1-minute load average as each run started
    # CPU seconds of each run's whole process tree on the controller (the command, ansible-playbook and
    # its workers, ssh clients; not the sandbox nodes' own processes), per label: what the wrapper
    # costs beyond the bare playbook shows here, load or not.
    cpu: dict[str, list[float]] = field(default_factory=dict)
    # Per rollback: requests sent through HAProxy while it ran, and those the load balancer failed.
    rollback_load: list[dict[str, int]] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(self.times[key])

    def ratios(self) -> dict[str, float]:
        return {"deploy / naive": self.median("deploy") / self.median("naive"),
                "rollback / deploy": self.median("rollback") / self.median("deploy"),
                "wrapper / bare": self.median("deploy") / self.median("bare")}

    def per_rep(self) -> dict[str, list[float]]:
        t = self.times
        return {"deploy / naive": [d / n for d, n in zip(t["deploy"], t["naive"])],
                "rollback / deploy": [r / d for r, d in zip(t["rollback"], t["deploy"])],
                "wrapper / bare": [d / b for d, b in zip(t["deploy"], t["bare"])]}

    @property
    def rollback_failed(self) -> int:
        return sum(r["failed"] for r in self.rollback_load)


def _children_cpu() -> float:
    """User + system CPU seconds of every waited-for child process tree so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Bench:
    def __init__(self, sandbox: Sandbox, work: Path, *, pad_mb: int, profile: Path | None) -> None:
        self.sandbox, self.work, self.profile = sandbox, work, profile
        self.cfg: SandboxConfig = sandbox.config
        self.artifact = provision.artifact(self.cfg, BUILD, Behaviour(), pad_mb=pad_mb)
        project = project_config(self.cfg, bake_seconds=0)
        project["state_dir"] = str(work / "lrelease-state")
        self.config_path = work / "lrelease.yml"
        self.config_path.write_text(yaml.safe_dump(project, sort_keys=False))
        self.runs = 0
        self.results = Results()

    # -- one measured command ------------------------------------------------------------
    def _timed(self, label: str, argv: list[str], extra_env: dict[str, str] | None = None,
               ) -> tuple[float, subprocess.CompletedProcess]:
        """Run ``argv`` from the repo root with cold SSH connections of its own; wall time."""
        self.runs += 1
        cp_dir = self.work / f"cp-{self.runs}"
        cp_dir.mkdir(mode=0o700)
        env = {**os.environ, **(extra_env or {}), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir),
               "LRELEASE_ACTOR": "bench", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        if self.profile is not None:
            env |= {"ANSIBLE_CALLBACK_PLUGINS": str(REPO / "bench" / "callback_plugins"),
                    "ANSIBLE_CALLBACKS_ENABLED": "bench_timing",
                    "LRELEASE_BENCH_TIMING": str(self.profile / f"{self.runs:02d}-{label}.txt")}
        self.results.loads.append(os.getloadavg()[0])
        cpu0 = _children_cpu()
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
        took = time.monotonic() - start
        self.results.cpu.setdefault(label, []).append(_children_cpu() - cpu0)
        for sock in cp_dir.iterdir():  # end the ControlPersist masters this run left
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"], capture_output=True, check=False)
        shutil.rmtree(cp_dir, ignore_errors=True)
        if proc.returncode != 0:
            raise RunFailed(f"{label}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return took, proc

    def _lrelease(self, label: str, *args: str, extra_env: dict[str, str] | None = None) -> tuple[float, dict]:
        took, proc = self._timed(label, [str(BIN / "lrelease"), *args, "--yes", "--json", "--config", str(self.config_path)],
                                 extra_env)
        return took, json.loads(proc.stdout)

    # -- the wrapper's own playbook run, for the bare one ----------------------------------
    def capture(self) -> None:
        """An untimed ``lrelease deploy`` whose run is kept (runner.KEEP_RUNS): the command line it
        gave ansible-playbook (deploy.yml, inventory, --limit, the extra vars) becomes the bare run's.
        Its lock (lrelease_lock) is left out: with no wrapper holding one, deploy.yml's policy step
        takes the environment's lock in the same state store and records the roll-out itself, the
        work the wrapper does in Python before and after the playbook."""
        kept = self.work / "kept"
        self.reset()
        self._lrelease("capture", "deploy", "--env", "production", "--build", BUILD, extra_env={KEEP_RUNS: str(kept)})
        self.results.loads.pop()  # not a measured run
        commands = sorted(kept.glob("lrelease-run-*/artifacts/*/command"))
        argv = json.loads(commands[0].read_text())["command"]
        # argv: the run's launcher, deploy.yml, then ansible-runner's options
        extra = json.loads(argv[argv.index("-e") + 1]) if "-e" in argv else {}
        if not isinstance(extra, dict) or "lrelease_lock" not in extra:
            raise RunFailed(f"capture: no extra vars found in the wrapper's command line {argv}")
        lock = extra.pop("lrelease_lock")
        extra.pop("lrelease_rollout_id", None)
        extra |= {"lrelease_state_db": lock["db"], "lrelease_config": str(self.config_path)}
        rest = [a for i, a in enumerate(argv[2:], 2) if a != "-e" and argv[i - 1] != "-e"]
        self.bare_argv = [str(BIN / "ansible-playbook"), argv[1], *rest, "-e", json.dumps(extra)]
        # The environment the wrapper gives ansible-playbook (lrelease.ansible_env), same config.
        blank = self.work / "blank-ansible.cfg"
        self.bare_env = ansible_env(blank, {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}, REPO)
        shutil.rmtree(kept, ignore_errors=True)

    # -- fleet ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Every node on the baseline build only, app running, in rotation."""
        self.sandbox.reset()
        for node in self.cfg.all_nodes():  # reset() leaves HAProxy alone
            services.haproxy_command(self.cfg, f"set server be_{self.cfg.app}/{node.name} state ready")

    def expect(self, label: str, version: str) -> None:
        for node in self.cfg.all_nodes():
            got = requests.get(f"http://{node.address}:{node.app_port}/version", timeout=3).text.strip()
            if got != version:
                raise RunFailed(f"{label}: {node.name} serves {got!r}, expected {version!r}")

    # -- the three measurements ----------------------------------------------------------
    def lrelease(self) -> None:
        self.reset()
        took, out = self._lrelease("deploy", "deploy", "--env", "production", "--build", BUILD)
        self.expect("lrelease deploy", BUILD)
        self.results.times["deploy"].append(took)
        # The fleet rollback as an operator types it: groups keeping rollback.min_in_service
        # (default 50%) serving; a bounded load through HAProxy counts what it fails.
        with LbLoad(self.cfg) as load:
            took, out = self._lrelease("rollback", "rollback", "--env", "production")
        self.results.rollback_load.append(load.counts)
        self.expect("lrelease rollback", self.cfg.baseline_build)
        if len(out.get("rolled_back", ())) != self.cfg.nodes:
            raise RunFailed(f"lrelease rollback moved {out.get('rolled_back')}, expected every node")
        self.results.times["rollback"].append(took)

    def bare(self) -> None:
        """The wrapper's own deploy.yml run (see capture), through plain ansible-playbook."""
        self.reset()
        took, _ = self._timed("bare", self.bare_argv, self.bare_env)
        self.expect("bare deploy", BUILD)
        self.results.times["bare"].append(took)

    def naive(self) -> None:
        self.reset()
        took, _ = self._timed("naive", [
            str(BIN / "ansible-playbook"), "-i", str(self.cfg.inventory_path), "bench/naive_deploy.yml",
            "-e", f"naive_build={BUILD}", "-e", f"naive_artifact={self.artifact.path}",
            "-e", f"naive_service_command={self.cfg.deploy_root}/bin/{self.cfg.app}-service",
        ])
        self.expect("naive deploy", BUILD)
        self.results.times["naive"].append(took)


class LbLoad:
    """Steady GETs through the sandbox's HAProxy (``python -m lrelease.sandbox.loadgen``, bounded in
    rate, count and time) while a run goes on; ``counts``: requests sent and failed by the load
    balancer (connection errors, HAProxy's 502/503/504; not the app's own answers)."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self.argv = [sys.executable, "-m", "lrelease.sandbox.loadgen", "--target", f"http://127.0.0.1:{cfg.haproxy_port}",
                     "--allow-net", cfg.subnet, "--rate", str(LB_RATE), "--duration", str(LB_SECONDS),
                     "--max-requests", str(LB_RATE * LB_SECONDS), "--timeout", "5", "--concurrency", "8"]
        self.counts: dict[str, int] = {}

    def __enter__(self) -> LbLoad:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # the load is flowing before the run starts
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        if self.proc.returncode != 0:
            raise RunFailed(f"load generator: exit {self.proc.returncode}: {err[-2000:]}")
        stats = json.loads(out)
        failed = stats["errors"] + sum(n for code, n in stats["by_status"].items() if int(code) in LB_FAILURES)
        self.counts = {"sent": stats["sent"], "failed": failed}


def render(results: Results, reps: int, cfg: SandboxConfig, pad_mb: int) -> str:
    width = 8
    head = f"{'':26}" + "".join(f"{'rep ' + str(i + 1):>{width}}" for i in range(reps)) + f"{'median':>{width}}"
    lines = [
        (f"lrelease benchmark: {cfg.nodes} nodes, {pad_mb} MiB artifact ({BUILD}), bake 0, "
         "waves [1, 1, 50%, 100%]; cold SSH per run; alternating order"),
        "",
        head,
    ]
    for key, label in ROWS:
        cells = "".join(f"{t:>{width}.1f}" for t in results.times[key])
        lines.append(f"{label + ' (s)':26}{cells}{results.median(key):>{width}.1f}")
    lines.append("")
    per_rep = results.per_rep()
    for name, value in results.ratios().items():
        target = TARGETS[name]
        verdict = "met" if value <= target else "MISSED"
        reps_text = " ".join(f"{v:.2f}" for v in per_rep[name])
        lines.append(f"{name:20} {value:5.2f}  (target <= {target})  {verdict:6}  per repetition: {reps_text}")
    sent = sum(r["sent"] for r in results.rollback_load)
    lines.append(f"{'rollback failed':20} {results.rollback_failed:5d}  (target 0)      "
                 f"{'met' if results.rollback_failed == 0 else 'MISSED':6}  requests failed by HAProxy during the "
                 f"rollbacks, of {sent} sent ({LB_RATE}/s)")
    cpu = {k: statistics.median(v) for k, v in results.cpu.items() if k in ("deploy", "bare")}
    if len(cpu) == 2:
        lines.append(f"{'controller CPU':20} lrelease deploy {cpu['deploy']:.1f} s, bare ansible-playbook {cpu['bare']:.1f} s "
                     f"(medians; the wrapper's own share: {cpu['deploy'] - cpu['bare']:+.1f} s)")
    lines.append("")
    cpus = os.cpu_count() or 1
    lo, hi = min(results.loads), max(results.loads)
    lines.append(f"load average (1 min) at the start of each run: {lo:.2f} to {hi:.2f}, on {cpus} CPUs")
    if hi > cpus:
        lines.append("warning: other work kept the CPUs busy; lrelease's parallel steps suffer most from that, "
                     "so these ratios are pessimistic: run again when the machine is quieter")
    return "\n".join(lines)


def measure(reps: int, *, pad_mb: int = 20, keep: bool = False, profile: Path | None = None,
            ) -> tuple[Results, SandboxConfig]:
    """Bring the bench sandbox up, run every measurement ``reps`` times in alternating order, take
    the sandbox down (unless ``keep``). Raises RunFailed when a run did not do its job."""
    sandbox = Sandbox(STATE_DIR)
    print(f"bringing up the bench sandbox ({STATE_DIR}, {SANDBOX['subnet']}) ...", file=sys.stderr)
    sandbox.up(nodes=6, load_rate=0, **SANDBOX)
    try:
        with tempfile.TemporaryDirectory(prefix="lrelease-bench-") as tmp:
            bench = Bench(sandbox, Path(tmp), pad_mb=pad_mb, profile=profile)
            print("an untimed lrelease deploy, kept: its playbook command for the bare runs ...", file=sys.stderr)
            bench.capture()
            for rep in range(reps):
                order = ((bench.lrelease, bench.bare, bench.naive) if rep % 2 == 0
                         else (bench.naive, bench.bare, bench.lrelease))
                for run in order:
                    print(f"repetition {rep + 1}/{reps}: {run.__name__} ...", file=sys.stderr)
                    run()
        return bench.results, sandbox.config
    finally:
        if not keep:
            sandbox.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="lrelease against a naive serial playbook, and a fleet rollback "
                                                 "against a roll-out, on a sandbox of its own.")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (default 3)")
    parser.add_argument("--pad-mb", type=int, default=20, help="artifact size in MiB (default 20)")
    parser.add_argument("--keep", action="store_true", help="leave the bench sandbox up afterwards")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write per-task timings of every playbook run into DIR (callback bench_timing)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    try:
        results, cfg = measure(args.reps, pad_mb=args.pad_mb, keep=args.keep, profile=args.profile)
    except RunFailed as exc:
        print(f"bench: a run did not do its job, no figures: {exc}", file=sys.stderr)
        return 1
    report = render(results, args.reps, cfg, args.pad_mb)
    print(report)
    if args.json:
        args.json.write_text(json.dumps({"times": results.times, "medians": {k: results.median(k) for k, _ in ROWS},
                                         "ratios": results.ratios(), "targets": TARGETS, "loads": results.loads,
                                         "rollback_load": results.rollback_load, "cpu": results.cpu,
                                         "pad_mb": args.pad_mb, "nodes": 6}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
