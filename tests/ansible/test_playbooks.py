"""The playbooks as AWX runs them (plain ansible-playbook with extra vars) on the sandbox fleet:
real SSH, a real app, real HAProxy."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lrelease.apm.scrape import ReadingStore
from lrelease.gate.settings import parse_gate
from lrelease.sandbox import services
from lrelease.sandbox.fleet import sandbox_gate
from lrelease.schema import Checker

BASE = "1.0.0"
OTHERS = ["node2", "node3", "node4"]


def test_a_good_build_reaches_every_node_wave_by_wave(sandbox_fleet):
    fleet = sandbox_fleet
    # Given a good build, and a hook that records HAProxy's view of each host mid-switch
    art = fleet.artifact("1.1.0")
    hook = fleet.tmp / "after_switch.yml"
    hook.write_text(HOOK_RECORD_LB)
    # When it is deployed in waves [1, 1, 100%]
    run = fleet.play("deploy.yml", fleet.deploy_vars(art, lrelease_switch_after_switch_tasks=str(hook)))
    # Then every node serves it, with its manifest, one `switch` ledger line and previous = 1.0.0
    assert run.rc == 0, run.out
    for name in fleet.names:
        assert fleet.version(name) == "1.1.0"
        assert fleet.current(name) == "1.1.0"
        manifest = fleet.manifest(name, "1.1.0")
        assert manifest["sha256"] == art.sha256 and manifest["who"] == "pytest"
        assert manifest["rollout_id"] == "test-rollout" and manifest["staged_at"].endswith("Z")
        [line] = fleet.ledger(name)
        assert (line["event"], line["build"], line["from"], line["to"]) == ("switch", "1.1.0", BASE, "1.1.0")
        assert (fleet.root(name) / ".lrelease" / "previous").read_text().strip() == BASE
        # And HAProxy had the host drained while it switched, and has it back in rotation now
        assert (fleet.root(name) / ".lrelease" / "lb-during-switch").read_text() == "drain"
    assert set(fleet.lb_states().values()) == {"ready"}
    # And the waves went one host, one host, then the rest
    assert run.out.count("TASK [lrelease wave]") == 3
    # And status.yml finds the fleet consistent on that build
    status = fleet.play("status.yml", {"lrelease_expected_build": "1.1.0"})
    assert status.rc == 0, status.out
    assert "fleet is consistent: 1.1.0 (sha256 " + art.sha256[:12] in status.out

    # When the same deploy runs again (a resumed roll-out)
    pids = {name: fleet.app_pid(name) for name in fleet.names}
    again = fleet.play("deploy.yml", fleet.deploy_vars(art))
    # Then nothing is redeployed: no restart, no new ledger line
    assert again.rc == 0, again.out
    assert {name: fleet.app_pid(name) for name in fleet.names} == pids
    assert all(len(fleet.ledger(name)) == 1 for name in fleet.names)
    assert "changed: [node1]\n" not in again.out.split("TASK [lrelease.release.lrelease_switch : switched]")[1].split("TASK")[0]


def test_a_bad_build_stops_after_the_canary_and_rollback_brings_it_back(sandbox_fleet):
    fleet = sandbox_fleet
    # Given a build whose /health fails once it runs
    art = fleet.artifact("1.2.0", health_fail=True)
    pids = {name: fleet.app_pid(name) for name in OTHERS}
    # When it is deployed in waves [1, 1, 100%]
    run = fleet.play("deploy.yml", fleet.deploy_vars(art, lrelease_gate_timeout=2))
    # Then the play stops after the canary: only node1 switched, its gate failure is visible
    assert run.rc != 0
    assert "gate failed on node1" in run.out and "HTTP 503" in run.out
    assert fleet.current("node1") == "1.2.0"
    for name in OTHERS:
        assert fleet.current(name) == BASE and fleet.version(name) == BASE and fleet.ledger(name) == []
        assert fleet.manifest(name, "1.2.0") is not None  # staged everywhere, switched nowhere else
    # And set_stats tells an AWX workflow what to roll back
    stats = run.custom_stats()
    reason = stats.pop("lrelease_outcome_reason")
    assert stats == {"lrelease_failed_hosts": ["node1"], "lrelease_rollback_build": "1.2.0",
                     "lrelease_rollback_undo": ["test-rollout"], "lrelease_previous_build": BASE,
                     "lrelease_outcome": "failed"}
    # and why, for the workflow's triage step (a failure: rolled back)
    assert reason.startswith('node1 failed at "lrelease gate": ') and "503" in reason, reason

    # When rollback.yml runs for the failed build (in groups keeping 50% in service, the default)
    # (as an AWX workflow's rollback job would: with what set_stats handed on)
    rollback_vars = {"lrelease_rollback_build": stats["lrelease_rollback_build"],
                     "lrelease_rollback_undo": stats["lrelease_rollback_undo"],
                     "lrelease_service_command": "/srv/demoapp/bin/demoapp-service",
                     "lrelease_lb_socket": fleet.deploy_vars(art)["lrelease_lb_socket"],
                     "lrelease_lb_backend": "be_demoapp", "lrelease_actor": "pytest"}
    back = fleet.play("rollback.yml", rollback_vars)
    # Then node1 serves 1.0.0 again with a `rollback` ledger line; the others were not touched
    assert back.rc == 0, back.out
    assert fleet.current("node1") == BASE and fleet.version("node1") == BASE
    assert [(e["event"], e["from"], e["to"]) for e in fleet.ledger("node1")] == [
        ("switch", BASE, "1.2.0"), ("rollback", "1.2.0", BASE)]
    assert {name: fleet.app_pid(name) for name in OTHERS} == pids
    assert all(fleet.ledger(name) == [] for name in OTHERS)
    assert set(fleet.lb_states().values()) == {"ready"}

    # When it runs again, nothing happens (idempotent)
    pid = fleet.app_pid("node1")
    again = fleet.play("rollback.yml", rollback_vars)
    assert again.rc == 0, again.out
    assert fleet.app_pid("node1") == pid and len(fleet.ledger("node1")) == 2


def live_everywhere_then_rollback_node1(fleet, service_command: str):
    """1.4.0 deployed to every node, then a rollback of node1 (of 1.4.0) with this restart
    command; returns (the play's run, node1's 1.4.0 pid, the rollback's vars)."""
    art = fleet.artifact("1.4.0")
    assert fleet.play("deploy.yml", fleet.deploy_vars(art, lrelease_waves=["100%"])).rc == 0
    pid = fleet.app_pid("node1")
    rollback_vars = {"lrelease_hosts": "node1", "lrelease_rollback_build": "1.4.0",
                     "lrelease_lb_socket": fleet.deploy_vars(art)["lrelease_lb_socket"],
                     "lrelease_lb_backend": "be_demoapp", "lrelease_actor": "pytest"}
    return fleet.play("rollback.yml", {**rollback_vars, "lrelease_service_command": service_command}), pid, rollback_vars


def test_a_rollback_whose_restart_fails_needs_a_human_and_a_hook_gets_a_restart_of_its_own(sandbox_fleet):
    fleet = sandbox_fleet
    # Given 1.4.0 live everywhere
    # When node1 is rolled back with a restart command that fails (the switch restarts, in one step)
    run, pid, rollback_vars = live_everywhere_then_rollback_node1(fleet, "/bin/false")
    # Then the host is failed by the step that moved it, with the command's exit status; current went
    # back and says so (`rolled back` changed, ledger line), the switch is still pending and the host
    # stays drained
    assert run.rc != 0
    step = run.out.split("TASK [lrelease.release.lrelease_rollback : rolled back]")[1].split("TASK")[0]
    assert "rolled back to 1.0.0, but '/bin/false restart' exited 1" in step and '"changed": true' in step
    assert fleet.current("node1") == BASE and fleet.ledger("node1")[-1]["event"] == "rollback"
    assert json.loads((fleet.root("node1") / ".lrelease" / "pending").read_text())["to"] == BASE
    assert fleet.lb_states()["node1"] == "drain" and fleet.app_pid("node1") == pid

    # When a human runs it again to 1.0.0, with a hook between the switch and the restart
    hook = fleet.tmp / "after_switch.yml"
    hook.write_text(HOOK_RECORD_PID)
    again = fleet.play("rollback.yml", {**rollback_vars, "lrelease_rollback_build": "",
                                        "lrelease_rollback_to": BASE, "lrelease_rollback_after_switch_tasks": str(hook),
                                        "lrelease_service_command": "/srv/demoapp/bin/demoapp-service"})
    # Then the pending switch is restarted as a step of its own, after the hook, and settled
    assert again.rc == 0, again.out
    assert (fleet.root("node1") / ".lrelease" / "pid-at-hook").read_text().strip() == str(pid)
    assert fleet.app_pid("node1") != pid and fleet.version("node1") == BASE
    assert not (fleet.root("node1") / ".lrelease" / "pending").exists()
    assert fleet.lb_states()["node1"] == "ready" and len(fleet.ledger("node1")) == 2
    assert all(fleet.current(name) == "1.4.0" for name in OTHERS)


def test_a_rollback_that_died_before_its_restart_restarts_the_host_when_run_again(sandbox_fleet):
    fleet = sandbox_fleet
    # Given 1.4.0 live everywhere, and a rollback of node1 that switched it back but never
    # restarted it (its restart command failed: the state a rollback killed at that moment leaves)
    run, pid, rollback_vars = live_everywhere_then_rollback_node1(fleet, "/bin/false")
    assert run.rc != 0 and fleet.current("node1") == BASE and fleet.app_pid("node1") == pid  # still the 1.4.0 process
    # When the same rollback (of 1.4.0) is run again
    again = fleet.play("rollback.yml", {**rollback_vars, "lrelease_service_command": "/srv/demoapp/bin/demoapp-service"})
    # Then node1 is restarted on 1.0.0 and settled, without a second ledger line
    assert again.rc == 0, again.out
    assert "changed: [node1]" in again.out.split("TASK [lrelease.release.lrelease_rollback : rolled back]")[1].split("TASK")[0]
    assert fleet.app_pid("node1") != pid and fleet.version("node1") == BASE
    assert not (fleet.root("node1") / ".lrelease" / "pending").exists()
    assert fleet.lb_states()["node1"] == "ready" and len(fleet.ledger("node1")) == 2
    assert all(fleet.current(name) == "1.4.0" for name in OTHERS)


def test_a_checksum_mismatch_is_refused_before_any_host_changes(sandbox_fleet):
    fleet = sandbox_fleet
    # Given an artifact and a sha256 that is not its own
    art = fleet.artifact("1.4.0")
    # When it is deployed
    run = fleet.play("deploy.yml", fleet.deploy_vars(art, lrelease_artifact_sha256="0" * 64))
    # Then it is refused with a clear message and no host has anything new
    assert run.rc != 0
    assert f"has sha256 {art.sha256}, expected {'0' * 64}: refused before any host changed" in run.out
    for name in fleet.names:
        assert sorted(p.name for p in (fleet.root(name) / "releases").iterdir()) == [BASE]
        assert not (fleet.root(name) / ".lrelease").exists()
        assert fleet.current(name) == BASE

    # When an artifact that is not on the controller is deployed
    missing = fleet.play("deploy.yml", fleet.deploy_vars(art, lrelease_artifact=str(fleet.tmp / "gone.tar.gz")))
    # Then it is refused by name, and still no host has anything new
    assert missing.rc != 0
    assert f"artifact {fleet.tmp / 'gone.tar.gz'} does not exist on the controller" in missing.out
    assert all(not (fleet.root(name) / ".lrelease").exists() for name in fleet.names)


def test_a_switch_whose_restart_fails_fails_that_step_and_is_reverted(sandbox_fleet):
    fleet = sandbox_fleet
    # Given a good build, and a restart command that fails (no hook between the switch and the
    # restart: the `switched` step restarts, in the same module run)
    art = fleet.artifact("1.5.0")
    pid = fleet.app_pid("node1")
    # When it is deployed in waves [1, 1, 100%]
    run = fleet.play("deploy.yml", fleet.deploy_vars(art, lrelease_service_command="/bin/false"))
    # Then the canary failed with the restart's exit status, from the step that switched it
    assert run.rc != 0
    assert "switched to 1.5.0, but '/bin/false restart' exited 1" in run.out, run.out[-3000:]
    switched = run.out.split("TASK [lrelease.release.lrelease_switch : switched]")[1].split("TASK")[0]
    assert "switched to 1.5.0, but '/bin/false restart' exited 1" in switched and '"changed": true' in switched
    assert "TASK [lrelease.release.lrelease_switch : Restart the service]" not in run.out.split("TASK [lrelease.release.lrelease_switch : reverted]")[0]
    # And the rescue put `current` back (with its ledger line); its own restart failed too, so
    # the host stays drained for a human, its old process untouched; nobody else was switched
    assert fleet.current("node1") == BASE and fleet.version("node1") == BASE and fleet.app_pid("node1") == pid
    assert [(e["event"], e["from"], e["to"]) for e in fleet.ledger("node1")] == [
        ("switch", BASE, "1.5.0"), ("switch-reverted", "1.5.0", BASE)]
    assert fleet.lb_states()["node1"] == "drain"
    # And the host's one line says both: why the switch failed, then why putting the old build back did
    assert ("switch to 1.5.0 failed on node1: 'switched' failed: switched to 1.5.0, but '/bin/false restart' "
            f"exited 1; putting {BASE} back failed too: 'Restart the service' failed") in run.out, run.out[-3000:]
    assert all(fleet.current(name) == BASE and fleet.ledger(name) == [] for name in OTHERS)


def test_the_port_check_made_on_the_host_itself_passes_a_listening_app_and_reverts_a_silent_one(sandbox_fleet):
    fleet = sandbox_fleet
    on_host = "TASK [lrelease.release.lrelease_switch : Wait for the app to listen]"
    art = fleet.artifact("1.1.0")
    # Given "the app listens" checked on each host itself (lrelease_switch_port_host, for an app that
    # only listens locally), at a port where nothing listens
    # When the build is deployed with a short wait
    run = fleet.play("deploy.yml", fleet.deploy_vars(art, lrelease_switch_port_host="127.0.0.1",
                                                     lrelease_switch_app_port=9, lrelease_switch_port_timeout=2))
    # Then the check, made on the canary, failed it: the switch put the canary back on its build (whose
    # own check fails the same way, so it stays drained for a human); nobody else moved
    assert run.rc != 0
    step = run.out.split(on_host)[1].split("TASK")[0]
    assert "fatal: [node1]" in step and "port check failed on the host: Timeout when waiting for 127.0.0.1:9" in step, step
    assert fleet.current("node1") == BASE and fleet.version("node1") == BASE
    assert [(e["event"], e["to"]) for e in fleet.ledger("node1")] == [("switch", "1.1.0"), ("switch-reverted", BASE)]
    assert fleet.lb_states()["node1"] == "drain"
    assert all(fleet.current(name) == BASE and fleet.ledger(name) == [] for name in OTHERS)
    # And the host's one line gives the first failure, then the revert's (not only the second)
    assert ("switch to 1.1.0 failed on node1: 'Wait for the app to listen' failed: port check failed on the host"
            in run.out), run.out[-3000:]
    assert f"putting {BASE} back failed too: 'Wait for the app to listen' failed: port check failed" in run.out
    # When it is deployed again with the app's own port, each wave's hosts pass the check on themselves
    # (the controller's own 127.0.0.1 has no app: only a check made on the host passes) and the same
    # step settles each switch
    good = fleet.play("deploy.yml", fleet.deploy_vars(art, lrelease_switch_port_host="127.0.0.1"))
    assert good.rc == 0, good.out[-3000:]
    assert good.out.count(on_host) == 3
    assert not any((fleet.root(name) / ".lrelease" / "pending").exists() for name in fleet.names)
    assert all(fleet.version(name) == "1.1.0" for name in fleet.names)
    assert set(fleet.lb_states().values()) == {"ready"}


def test_a_build_that_does_not_start_is_reverted_by_the_switch(sandbox_fleet):
    fleet = sandbox_fleet
    # Given a build whose app refuses to start
    art = fleet.artifact("1.3.0", start_fail=True)
    # When it is deployed
    run = fleet.play("deploy.yml", fleet.deploy_vars(art))
    # Then the canary is put back on 1.0.0 (serving it), the revert is in its ledger and the run failed
    assert run.rc != 0
    assert "switch to 1.3.0 failed on node1" in run.out and "reverted to 1.0.0" in run.out
    assert fleet.current("node1") == BASE and fleet.version("node1") == BASE
    assert [(e["event"], e["from"], e["to"]) for e in fleet.ledger("node1")] == [
        ("switch", BASE, "1.3.0"), ("switch-reverted", "1.3.0", BASE)]
    assert not (fleet.root("node1") / ".lrelease" / "previous").exists()  # as before the switch
    # And it is back in HAProxy; nobody else was switched
    assert fleet.lb_states()["node1"] == "ready"
    assert all(fleet.current(name) == BASE and fleet.ledger(name) == [] for name in OTHERS)
    assert run.custom_stats()["lrelease_failed_hosts"] == ["node1"]


def test_status_reports_an_inconsistent_fleet(sandbox_fleet):
    fleet = sandbox_fleet
    # Given node2 on another build than the rest
    node2 = fleet.cfg.find_node("node2")
    from lrelease.sandbox import provision

    provision.install_release(fleet.cfg, node2, fleet.artifact("1.1.0"))
    # When status.yml runs
    run = fleet.play("status.yml", {})
    # Then it fails and says which host is on what
    assert run.rc != 0
    assert "fleet is inconsistent: 1.0.0 (sha256 unknown: no manifest) on node1, node3, node4; " \
           "1.1.0 (sha256 unknown: no manifest) on node2" in run.out


def test_cleanup_keeps_the_newest_and_never_current_or_previous(sandbox_fleet):
    fleet = sandbox_fleet
    # Given five more releases on node1, all newer than the live 1.0.0, and previous = 0.9.0 (the oldest)
    root = fleet.root("node1")
    import shutil

    for age, build in enumerate(["0.9.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4"]):
        shutil.copytree(root / "releases" / BASE, root / "releases" / build)
        os.utime(root / "releases" / build, (2_000_000_000 + age,) * 2)
    os.utime(root / "releases" / "0.9.0", (1_000_000_000,) * 2)
    os.utime(root / "releases" / BASE, (1_000_000_001,) * 2)
    (root / ".lrelease").mkdir()
    (root / ".lrelease" / "previous").write_text("0.9.0\n")
    (root / "releases" / ".1.0.5.partial").mkdir()
    # When the cleanup role runs with keep 2
    run = fleet.adhoc("ansible.builtin.include_role", "name=lrelease_cleanup", {"lrelease_keep_releases": 2})
    # Then the two newest stay, and so do current and previous however old; leftovers go
    assert run.rc == 0, run.out
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["0.9.0", BASE, "1.0.3", "1.0.4"]
    assert fleet.version("node1") == BASE


def test_a_wrong_input_fails_before_any_task_runs(sandbox_fleet):
    fleet = sandbox_fleet
    art = fleet.artifact("1.5.0")
    # When the app port is not a number
    run = fleet.play("deploy.yml", fleet.deploy_vars(art, lrelease_app_port="eighty"))
    # Then the roles' argument specs refuse it, naming the variable, and no host has the build
    assert run.rc != 0
    assert "argument 'lrelease_switch_app_port' is of type str and we were unable to convert to int" in run.out
    assert "TASK [lrelease.release.lrelease_stage : staged]" not in run.out
    # When a required value is missing
    missing = fleet.deploy_vars(art)
    del missing["lrelease_build"]
    run = fleet.play("deploy.yml", missing)
    # Then the preflight says which one and what it should be
    assert run.rc != 0
    assert "lrelease_stage_build (playbook variable lrelease_build) is required" in run.out
    for name in fleet.names:
        assert not (fleet.root(name) / "releases" / "1.5.0").exists()


@pytest.mark.parametrize("change, words", [
    ({"lrelease_gate_kind": None}, 'lrelease_gate_kind must be health (the health check) or apm'),
    ({"lrelease_gate_kind": "canary"}, 'lrelease_gate_kind must be health (the health check) or apm'),
    ({"lrelease_gate_kind": "apm"}, "lrelease_gate_kind is apm but lrelease_gate_apm"),
    ({"lrelease_gate_apm": {"provider": "scrape"}}, "lrelease_gate_apm is given but lrelease_gate_kind is health"),
], ids=["no gate kind", "unknown gate kind", "apm without its settings", "apm settings with health"])
def test_a_run_that_does_not_say_which_gate_is_refused_before_any_host_changes(sandbox_fleet, change, words):
    fleet = sandbox_fleet
    art = fleet.artifact("1.5.1")
    # Given the extra vars of a job template that leaves the gate unsaid (or contradicts itself)
    extra = {**fleet.deploy_vars(art), **change}
    extra = {k: v for k, v in extra.items() if v is not None}
    # When deploy.yml runs
    run = fleet.play("deploy.yml", extra)
    # Then it fails loudly at its first check, and no host has the build
    assert run.rc != 0
    assert f"{words}" in run.out and "refused before any host changed" in run.out, run.out[-2000:]
    assert "TASK [lrelease.release.lrelease_stage : staged]" not in run.out
    for name in fleet.names:
        assert not (fleet.root(name) / "releases" / "1.5.1").exists() and fleet.current(name) == BASE


def test_a_build_can_be_staged_from_a_url(sandbox_fleet):
    fleet = sandbox_fleet
    # Given the artifact served over HTTP on the sandbox bridge
    art = fleet.artifact("1.6.0")
    handler = partial(SimpleHTTPRequestHandler, directory=str(art.path.parent))
    server = ThreadingHTTPServer((fleet.cfg.gateway, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://{fleet.cfg.gateway}:{server.server_address[1]}/{art.path.name}"
        extra = fleet.deploy_vars(art, lrelease_artifact_url=url, lrelease_waves=["100%"])
        del extra["lrelease_artifact"]
        # When it is deployed from that URL in one wave
        run = fleet.play("deploy.yml", extra)
    finally:
        server.shutdown()
        server.server_close()
    # Then every node serves it and no download is left behind
    assert run.rc == 0, run.out
    for name in fleet.names:
        assert fleet.version(name) == "1.6.0" and fleet.manifest(name, "1.6.0")["sha256"] == art.sha256
        assert list((fleet.root(name) / ".lrelease" / "incoming").iterdir()) == []


HOOK_RECORD_PID = """\
# lrelease_rollback after_switch hook: which app process runs while current has moved back?
- name: Keep the app's pid on the host
  ansible.builtin.copy:
    src: "{{ lrelease_rollback_deploy_root }}/run/app.pid"
    dest: "{{ lrelease_rollback_deploy_root }}/.lrelease/pid-at-hook"
    remote_src: true
    mode: "0644"
"""

HOOK_RECORD_LB = """\
# lrelease_switch after_switch hook: what does HAProxy say about this host right now?
- name: Ask HAProxy about the host
  lrelease_haproxy:
    socket: "{{ lrelease_switch_lb_socket }}"
    backend: "{{ lrelease_switch_lb_backend }}"
    server: "{{ lrelease_switch_lb_server }}"
  delegate_to: localhost
  register: seen

- name: Keep the answer on the host
  ansible.builtin.copy:
    content: "{{ seen.after.state }}"
    dest: "{{ lrelease_switch_deploy_root }}/.lrelease/lb-during-switch"
    mode: "0644"
"""



def test_a_host_that_cannot_stage_stops_the_deploy_before_any_switch(sandbox_fleet):
    fleet = sandbox_fleet
    # Given node3's disk is full
    fleet.sandbox.fault("node3", "disk-full")
    art = fleet.artifact("1.7.0")
    # When a build is deployed
    run = fleet.play("deploy.yml", fleet.deploy_vars(art))
    # Then staging fails on node3, no host is switched, and node3 keeps no half-staged files
    assert run.rc != 0
    assert "staging 1.7.0 failed on node3" in run.out and "nothing live changed" in run.out
    assert "TASK [lrelease.release.lrelease_switch : switched]" not in run.out
    for name in fleet.names:
        assert fleet.current(name) == BASE and fleet.version(name) == BASE and fleet.ledger(name) == []
    releases = fleet.root("node3") / "releases"
    assert sorted(p.name for p in releases.iterdir()) == [BASE]
    assert list((fleet.root("node3") / ".lrelease" / "incoming").iterdir()) == []


def test_awx_gets_the_apm_gate_verdict_and_what_to_roll_back_from_plain_ansible_playbook(sandbox_fleet):
    """The APM gate as AWX runs it: the `gate:` settings as the extra var lrelease_gate_apm."""
    fleet = sandbox_fleet
    # Given steady traffic (50 requests/s per node, 0.5% errors) and a build answering 5% errors
    gate = parse_gate(Checker("lrelease.yml"), sandbox_gate(fleet.cfg), "gate", default_bake=0).to_vars()
    art = fleet.artifact("2.0.0", error_rate=0.05)
    services.start_load(fleet.cfg, rate=200, duration=300)
    try:
        # When deploy.yml runs it with the gate's settings (scrape), as a job template would
        run = fleet.play("deploy.yml", fleet.deploy_vars(art, lrelease_gate_kind="apm", lrelease_gate_apm=gate,
                                                         lrelease_rollout_id="awx-apm"))
    finally:
        services.stop_load(fleet.cfg)
    # Then the canary's gate fails on its error rate against the three nodes still on 1.0.0
    assert run.rc != 0
    assert "gate failed on node1: fail: errors: error rate" in run.out, run.out[-3000:]
    assert fleet.current("node1") == "2.0.0"
    assert all(fleet.current(name) == BASE and fleet.ledger(name) == [] for name in OTHERS)
    # And set_stats hands the workflow's rollback job the failed host and the builds
    stats = run.custom_stats()
    reason = stats.pop("lrelease_outcome_reason")
    assert stats == {"lrelease_failed_hosts": ["node1"], "lrelease_rollback_build": "2.0.0",
                     "lrelease_rollback_undo": ["awx-apm"], "lrelease_previous_build": BASE, "lrelease_outcome": "failed"}
    # and a gate FAIL is a failure for the workflow's triage step (rolled back at once, no approval)
    assert reason.startswith('node1 failed at "lrelease gate": fail: errors: error rate'), reason
    # And the readings the gate took are kept under the roll-out's id for its later waves
    readings = Path(tempfile.gettempdir()) / "lrelease-scrape-awx-apm.json"
    try:
        assert {json.loads(line)["host"] for line in readings.read_text().splitlines()} == {"node1", *OTHERS}
    finally:
        ReadingStore.discard(readings)
