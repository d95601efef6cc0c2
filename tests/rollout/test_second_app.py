"""A second app, unlike the demo app, deployed on the session's sandbox with the lrelease.yml and
fleet file its team wrote from the docs alone (tests/apps/shop/): port 9300, /healthz answering
{"ok": true}, OpenTelemetry metric names (the scrape provider's defaults: its gate names no
metric), a tarball whose top directory is shop-<version>/, deploy root /opt/shop (private to
each node), a service script run through service.shell, a shared log/, and a migration hook.

The scenarios share one deployed baseline and run in order: a good build in waves, a 5% error
build and a +300 ms build each caught on the canary, a fleet rollback, and deploy.yml run as AWX
would (plain ansible-playbook, extra vars from docs/design.md's table, the APM gate as
lrelease_gate_apm) on a bad build.

No `lb:`: the sandbox's HAProxy fronts the demo app (its backend's servers are the nodes' port
8080), so draining a node there would drain the demo app, not the shop. The shop's traffic comes
straight from this module's load thread to each node's address (bounded in rate, time and
count, sandbox addresses only: lrelease.sandbox.loadgen), so nothing is lost to a restart that
a drain would have saved; the gate judges what the nodes served.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner

from lrelease.apm.scrape import ReadingStore
from lrelease.cli.main import cli
from lrelease.sandbox import provision
from lrelease.sandbox.loadgen import LoadSpec, run_load
from tests.apps.shop.build import build

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "tests" / "apps" / "shop"
DEPLOY_ROOT = "/opt/shop"
BASE, GOOD, ERRORS, SLOW, AWX_BAD = "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"
LOAD_RATE = 240  # requests/s over the six nodes: 40 per node, a good canary passes at its second look


class Shop:
    """The shop's project directory (its lrelease.yml and fleet.yml, this sandbox's addresses put
    in) and what the nodes say, read inside each node (its /opt is its own)."""

    def __init__(self, sandbox, root: Path) -> None:
        self.cfg, self.root = sandbox.config, root
        self.nodes = [n.name for n in self.cfg.all_nodes()]
        self.config = root / "lrelease.yml"
        shutil.copy(APP_DIR / "lrelease.yml", self.config)
        fleet = yaml.safe_load((APP_DIR / "fleet.yml").read_text())
        sandbox_vars = yaml.safe_load(self.cfg.fleet_path.read_text())["defaults"]["vars"]
        fleet["defaults"]["vars"].update({k: v for k, v in sandbox_vars.items() if k.startswith("ansible_")
                                          and k != "ansible_user"})
        assert set(fleet["nodes"]) == set(self.nodes)
        for name, node in fleet["nodes"].items():
            node["address"] = self.cfg.find_node(name).address
        (root / "fleet.yml").write_text(yaml.safe_dump(fleet, sort_keys=False))
        # The first install has nothing to compare with (no shop runs anywhere yet): the same
        # project with the health-only gate (`gate: {provider: http}`).
        first = yaml.safe_load(self.config.read_text())
        first["environments"]["production"]["gate"] = {"provider": "http"}
        self.first_install_config = root / "lrelease-first-install.yml"
        self.first_install_config.write_text(yaml.safe_dump(first, sort_keys=False))

    def build(self, version: str, **behaviour):
        return build(self.root / "artifacts", version, **behaviour)

    def cli(self, *args: str, config: Path | None = None) -> dict:
        result = CliRunner().invoke(cli, [*args, "--json", "--config", str(config or self.config)],
                                    catch_exceptions=False)
        start = result.stdout.index("{")
        return {"exit_code": result.exit_code, **json.loads(result.stdout[start:])}

    def run(self, node: str, script: str) -> str:
        return provision.node_run(self.cfg, self.cfg.find_node(node), ["sh", "-c", script]).stdout

    def read(self, node: str, path: str) -> str:
        return self.run(node, f"cat {DEPLOY_ROOT}/{path} 2>/dev/null || true")

    def current(self, node: str) -> str:
        return self.run(node, f"readlink {DEPLOY_ROOT}/current").strip()

    def ledger(self, node: str) -> list[dict]:
        return [json.loads(line) for line in self.read(node, ".lrelease/ledger.jsonl").splitlines()]

    def serving(self, node: str) -> str:
        n = self.cfg.find_node(node)
        return requests.get(f"http://{n.address}:9300/about", timeout=5).json()["version"]

    def everywhere(self) -> dict[str, str]:
        return {n: self.serving(n) for n in self.nodes}

    def clean(self) -> None:
        """No shop on any node: stopped by its own script, /opt/shop and /var/lib/shop removed."""
        for n in self.nodes:
            self.run(n, f"[ -x {DEPLOY_ROOT}/current/bin/shop-ctl ] && {DEPLOY_ROOT}/current/bin/shop-ctl stop;"
                        f" rm -rf {DEPLOY_ROOT} /var/lib/shop; true")


@pytest.fixture(scope="module")
def shop(sandbox, tmp_path_factory):
    """The shop on every node on its baseline, under steady bounded traffic."""
    s = Shop(sandbox, tmp_path_factory.mktemp("shop"))
    s.clean()
    stop = threading.Event()
    spec = LoadSpec(targets=tuple(f"http://{n.address}:9300" for n in s.cfg.all_nodes()), rate=LOAD_RATE,
                    duration=900, max_requests=LOAD_RATE * 900, path="/", timeout=2, concurrency=32)
    load = threading.Thread(target=run_load, args=(spec,), daemon=True, name="shop-load",
                            kwargs={"allowed_networks": [ipaddress.IPv4Network(s.cfg.subnet)], "stop": stop})
    try:
        s.build(BASE)
        first = s.cli("deploy", "--env", "production", "--build", BASE, "--yes", config=s.first_install_config)
        assert first["exit_code"] == 0, first
        load.start()
        yield s
    finally:
        stop.set()
        if load.is_alive():
            load.join(timeout=10)
        s.clean()


def test_a_good_build_goes_out_in_waves_keeping_the_shared_log_and_migrating_once(shop):
    # Given the shop's baseline on every node (its first install ran the migration once)
    assert shop.everywhere() == {n: BASE for n in shop.nodes}
    shop.build(GOOD)
    # When the good build is deployed with the APM gate of its lrelease.yml
    out = shop.cli("deploy", "--env", "production", "--build", GOOD, "--yes")
    # Then it succeeds and every node serves it from releases/1.1.0 (the top directory dropped)
    assert out["exit_code"] == 0, out
    # And each wave passed its APM gate: the canary against the five others, then the rest
    gates = shop.cli("show", out["rollout_id"])["gates"]
    assert sorted((g["wave"], g["host"], g["verdict"]) for g in gates) == [
        (1, "node1", "pass"), *[(2, n, "pass") for n in shop.nodes[1:]]], gates
    assert shop.everywhere() == {n: GOOD for n in shop.nodes}
    assert {n: shop.current(n) for n in shop.nodes} == {n: f"releases/{GOOD}" for n in shop.nodes}
    assert shop.run("node2", f"ls {DEPLOY_ROOT}/current/").split() == ["VERSION", "bin", "log", "shop.json",
                                                                        "shop.py"]
    # And in waves: the canary switched before any other node
    switched = {n: [e["time"] for e in shop.ledger(n) if e["event"] == "switch" and e["build"] == GOOD]
                for n in shop.nodes}
    assert all(len(times) == 1 for times in switched.values()), switched
    assert all(switched["node1"][0] < switched[n][0] for n in shop.nodes[1:]), switched
    # And log/ is shared: a link in the release, and shop.log kept both builds' start lines
    for n in shop.nodes:
        assert shop.run(n, f"readlink {DEPLOY_ROOT}/releases/{GOOD}/log").strip() == "../../shared/log", n
        log = shop.read(n, "shared/log/shop.log")
        assert f"shop {BASE} listening" in log and f"shop {GOOD} listening" in log, (n, log)
    # And the migration ran once per roll-out, on the canary, before its switch
    migrations = [(n, line.split()[1:]) for n in shop.nodes
                  for line in shop.read(n, "shared/log/migrations.log").splitlines()]
    assert migrations == [("node1", ["migrated", "to", BASE, "on", "node1"]),
                          ("node1", ["migrated", "to", GOOD, "on", "node1"])], migrations


@pytest.mark.parametrize(("version", "behaviour", "words"), [
    (ERRORS, {"error_rate": 0.05}, "errors"),
    (SLOW, {"extra_latency_ms": 300}, "latency"),
], ids=["5% errors", "+300 ms"])
def test_a_bad_build_is_caught_on_the_canary_and_only_the_canary_rolls_back(shop, version, behaviour, words):
    # Given the good build on every node, and a bad one
    assert shop.everywhere() == {n: GOOD for n in shop.nodes}
    shop.build(version, **behaviour)
    # When it is deployed
    out = shop.cli("deploy", "--env", "production", "--build", version, "--yes")
    # Then the canary's gate fails it: exit 1, rolled back, every node serving the good build again
    assert out["exit_code"] == 1, out
    assert out["status"] == "rolled_back", out
    assert "gate failed on node1" in out["message"], out["message"]
    # And the canary's gate is the only one, failed on the bad build's own regression
    gates = shop.cli("show", out["rollout_id"])["gates"]
    assert [(g["host"], g["wave"], g["verdict"]) for g in gates] == [("node1", 1, "fail")], gates
    assert gates[0]["evidence"]["last"]["reason"].startswith(f"fail: {words}: "), gates[0]["evidence"]
    assert shop.everywhere() == {n: GOOD for n in shop.nodes}
    # And only the canary switched (and went back); no other node was touched
    lines = {n: [(e["event"], e["to"]) for e in shop.ledger(n) if e.get("rollout_id") == out["rollout_id"]
                 or e.get("undoes") == out["rollout_id"]] for n in shop.nodes}
    assert lines["node1"][0] == ("switch", version) and lines["node1"][-1][1] == GOOD, lines
    assert all(lines[n] == [] for n in shop.nodes[1:]), lines


def test_a_fleet_rollback_brings_every_node_back_to_the_baseline(shop):
    # Given the good build on every node (the bad ones were rolled back by themselves)
    assert shop.everywhere() == {n: GOOD for n in shop.nodes}
    # When the newest roll-out that still has hosts on its build is rolled back
    out = shop.cli("rollback", "--env", "production", "--yes")
    # Then every node serves the baseline again
    assert out["exit_code"] == 0, out
    assert shop.everywhere() == {n: BASE for n in shop.nodes}
    assert {n: shop.current(n) for n in shop.nodes} == {n: f"releases/{BASE}" for n in shop.nodes}


def awx_vars(shop: Shop) -> dict:
    """What a job template passes, from docs/design.md ("Playbook variables") and the shop's
    lrelease.yml: the same settings, as extra vars."""
    env = yaml.safe_load(shop.config.read_text())["environments"]["production"]
    gate = dict(env["gate"])
    provider = dict(gate.pop("provider"))
    kind = provider.pop("kind")
    return {
        "lrelease_deploy_root": DEPLOY_ROOT,
        "lrelease_service_shell": env["service"]["shell"],
        "lrelease_health_path": env["health"]["path"],
        "lrelease_health_expect_status": env["health"]["expect_status"],
        "lrelease_health_body_json": env["health"]["body_json"],
        "lrelease_artifact_format": "tar.gz",
        "lrelease_artifact_strip_components": "auto",
        "lrelease_shared_dirs": env["shared"]["dirs"],
        "lrelease_shared_files": env["shared"]["files"],
        "lrelease_hooks": env["hooks"],
        "lrelease_keep_releases": env["keep_releases"],
        "lrelease_gate_kind": "apm",
        "lrelease_gate_apm": {"provider": kind, "provider_settings": provider, "judge": gate},
    }


def playbook(shop: Shop, name: str, extravars: dict) -> subprocess.CompletedProcess:
    """ansible-playbook -i <the fleet, through the lrelease_fleet inventory plugin> playbooks/<name>
    -e @vars.json, from the repository root (its ansible.cfg), as AWX runs a job template."""
    inventory = shop.root / "production.lrelease_fleet.yml"
    inventory.write_text(yaml.safe_dump({"plugin": "lrelease_fleet", "fleet": "fleet.yml",
                                         "environment": "production"}))
    vars_file = shop.root / f"vars-{name}.json"
    # the policy step records the run in the shop's own state (what `lrelease history` there reads)
    vars_file.write_text(json.dumps({"lrelease_state_db": str(shop.root / ".lrelease" / "lrelease.db"), **extravars}))
    env = {**os.environ, "ANSIBLE_SHOW_CUSTOM_STATS": "1", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory),
                           f"playbooks/{name}", "-e", f"@{vars_file}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)


def custom_stats(out: str) -> dict:
    for line in out.splitlines():
        if line.strip().startswith("RUN: {"):
            return json.loads(line.strip()[len("RUN: "):])
    return {}


def test_deploy_yml_run_as_awx_would_catches_a_bad_build_on_the_canary_with_the_apm_gate(shop):
    # Given the baseline on every node, and a build answering 5% errors
    assert shop.everywhere() == {n: BASE for n in shop.nodes}
    art = shop.build(AWX_BAD, error_rate=0.05)
    rollout = f"shop-awx-{os.getpid()}"
    common = awx_vars(shop)
    readings = Path(tempfile.gettempdir()) / f"lrelease-scrape-{rollout}.json"
    try:
        # When deploy.yml runs it with the documented extra vars, the APM gate as lrelease_gate_apm
        run = playbook(shop, "deploy.yml", {
            **common, "lrelease_build": AWX_BAD, "lrelease_artifact": str(art.path),
            "lrelease_artifact_sha256": art.sha256, "lrelease_waves": [1, "100%"],
            "lrelease_rollout_id": rollout, "lrelease_actor": "awx"})
        out = run.stdout + run.stderr
        # Then it fails on the canary's gate, the failed host named for the workflow's rollback job
        assert run.returncode != 0, out[-3000:]
        assert "gate failed on node1: fail: errors: error rate" in out, out[-3000:]
        stats = custom_stats(out)
        why = stats.pop("lrelease_outcome_reason", "")
        assert stats == {"lrelease_failed_hosts": ["node1"], "lrelease_rollback_build": AWX_BAD,
                         "lrelease_rollback_undo": [rollout], "lrelease_previous_build": BASE,
                         "lrelease_outcome": "failed"}, stats
        # And the workflow's triage step is told why: the canary's gate failed on its errors
        assert why.startswith('node1 failed at "lrelease gate": fail: errors: error rate'), why
        # And no other node switched
        assert {n: shop.serving(n) for n in shop.nodes[1:]} == {n: BASE for n in shop.nodes[1:]}

        # When the workflow's next job, rollback.yml, runs with what deploy.yml handed on
        rollback_vars = {k: v for k, v in common.items() if not k.startswith("lrelease_gate_")}
        back = playbook(shop, "rollback.yml", {**rollback_vars, **stats})
        # Then the canary is back on the baseline with the rest
        assert back.returncode == 0, (back.stdout + back.stderr)[-3000:]
        assert shop.everywhere() == {n: BASE for n in shop.nodes}
    finally:
        ReadingStore.discard(readings)
