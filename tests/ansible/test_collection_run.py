"""The installed collection rolls out on the sandbox: built from the checkout, installed into a
temp collections path, deploy run by its FQCN (lrelease.release.deploy) from a directory outside
the repository with no ANSIBLE_CONFIG. A good build reaches every node; a bad one is caught at
the canary, nothing else moves, and the installed rollback playbook brings the canary back."""

from __future__ import annotations

import pytest

from tests.collection import NS, build_and_install

OTHERS = ("node2", "node3", "node4")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    return build_and_install(tmp_path_factory.mktemp("collection"))


def test_the_installed_collection_deploys_a_good_build_and_catches_a_bad_one(sandbox_fleet, installed):
    fleet = sandbox_fleet
    # Given a good build
    good = fleet.artifact("1.1.0")
    # When the installed collection's deploy playbook runs by FQCN outside the checkout
    run = fleet.play_installed(f"{NS}.deploy", fleet.deploy_vars(good, lrelease_rollout_id="collection-good"), installed.work, installed.env)
    # Then every node serves it, through the installed copy (no ansible.cfg anywhere)
    assert run.rc == 0, run.out
    assert all(fleet.current(n) == "1.1.0" and fleet.version(n) == "1.1.0" for n in fleet.names)
    assert set(fleet.lb_states().values()) == {"ready"}

    # Given a build that fails its health check
    bad = fleet.artifact("1.2.0", health_fail=True)
    # When the same playbook deploys it
    run = fleet.play_installed(f"{NS}.deploy", fleet.deploy_vars(bad, lrelease_gate_timeout=2, lrelease_rollout_id="collection-bad"),
                               installed.work, installed.env)
    # Then the gate stops it at the canary and the other nodes stay on the good build
    assert run.rc != 0
    assert "gate failed on node1" in run.out and "HTTP 503" in run.out
    assert fleet.current("node1") == "1.2.0"
    assert all(fleet.current(n) == "1.1.0" and fleet.version(n) == "1.1.0" for n in OTHERS)
    stats = run.custom_stats()
    assert stats["lrelease_failed_hosts"] == ["node1"] and stats["lrelease_rollback_build"] == "1.2.0"
    assert stats["lrelease_rollback_undo"] == ["collection-bad"]

    # When the installed rollback playbook runs with what set_stats handed on (an AWX workflow's step)
    back = fleet.play_installed(f"{NS}.rollback", {
        "lrelease_rollback_build": stats["lrelease_rollback_build"],
        "lrelease_rollback_undo": stats["lrelease_rollback_undo"],
        "lrelease_service_command": "/srv/demoapp/bin/demoapp-service",
        "lrelease_lb_socket": fleet.deploy_vars(bad)["lrelease_lb_socket"],
        "lrelease_lb_backend": "be_demoapp", "lrelease_actor": "pytest"}, installed.work, installed.env)
    # Then the canary is back on the good build and every node is in the load balancer
    assert back.rc == 0, back.out
    assert fleet.current("node1") == "1.1.0" and fleet.version("node1") == "1.1.0"
    assert set(fleet.lb_states().values()) == {"ready"}
