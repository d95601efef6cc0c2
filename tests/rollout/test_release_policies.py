"""The release policies on the sandbox, through the CLI over real SSH: production requires Next
(soak 30m, the clock moved on instead of waiting), and alice is production's release captain.

One test, in the order an operator meets them: a build never on next is refused for production;
once deployed to next it is still soaking; after the soak bob (not the captain) is refused naming
alice; alice's deploy goes through; bob's --force --skip-next goes through and is recorded."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
import yaml

from lrelease import statedb
from lrelease.sandbox.fleet import project_config
from tests.rollout.conftest import Project, fleet_file

BASE = "1.0.0"
NEXT_NODES = ("node1",)
PROD_NODES = ("node2", "node3")  # the other nodes sit in an environment of their own, left alone


class Shifted:
    """The state store's clock: the real time plus ``offset`` (moved on to pass a soak)."""

    def __init__(self) -> None:
        self.real, self.offset = statedb.utc_now, timedelta()

    def __call__(self):
        return self.real() + self.offset


@pytest.fixture
def clock(monkeypatch):
    shifted = Shifted()
    monkeypatch.setattr(statedb, "utc_now", shifted)
    return shifted


@pytest.fixture
def two_envs(fleet, tmp_path) -> Project:
    """node1 in next; node2, node3 in production, which requires next (soak 30m); the rest in spare."""
    project = Project(fleet, tmp_path)
    fleet_file(fleet, tmp_path / "fleet.yml", {"next": NEXT_NODES, "production": PROD_NODES})
    config = project_config(fleet.config, waves=["100%"], bake_seconds=1, gate_timeout_seconds=10)
    production = config["environments"]["production"]
    config["environments"] = {"next": copy.deepcopy(production),  # no shared values: YAML aliases are refused
                              "spare": copy.deepcopy(production),
                              "production": {**production, "requires": {"env": "next", "soak": "30m"}}}
    config.update(fleet=str(tmp_path / "fleet.yml"), state_dir=str(tmp_path / "state"))
    project.path.write_text(yaml.safe_dump(config, sort_keys=False))
    return project


def serving(project: Project) -> dict[str, str]:
    return {n: project.serving(n) for n in project.nodes}


def test_production_waits_for_next_and_its_captain(two_envs: Project, clock):
    project = two_envs
    project.build("1.6.0")
    made = project.cli("captain", "set", "alice", "--env", "production", "--actor", "carol")
    assert made.exit_code == 0, made.output

    # Given 1.6.0 was never deployed to next: production refuses it (exit 4), no host touched
    refused = project.cli("deploy", "--env", "production", "--build", "1.6.0", "--yes", "--actor", "alice")
    assert refused.exit_code == 4, refused.output
    assert "1.6.0 is not proven on next, which production requires first: 1.6.0 was never deployed to next" \
        in refused.output
    assert serving(project) == {n: BASE for n in project.nodes}

    # When it is deployed to next (no captain there): it succeeds on next's hosts only
    to_next = project.json("deploy", "--env", "next", "--build", "1.6.0", "--yes", "--actor", "alice")
    assert to_next["exit_code"] == 0, to_next
    assert serving(project) == {n: "1.6.0" if n in NEXT_NODES else BASE for n in project.nodes}
    # Then production still refuses it: soaking
    soaking = project.cli("deploy", "--env", "production", "--build", "1.6.0", "--yes", "--actor", "alice")
    assert soaking.exit_code == 4 and "soaking on next: 0 of 30 minutes" in soaking.output, soaking.output

    # When the soak is over, bob (not the captain) is refused naming alice
    clock.offset = timedelta(minutes=31)
    evidence = project.json("plan", "--env", "production", "--build", "1.6.0", "--actor", "bob")["policies"]
    assert evidence["requires"]["evidence"]["proven"] is True
    not_captain = project.cli("deploy", "--env", "production", "--build", "1.6.0", "--yes", "--actor", "bob")
    assert not_captain.exit_code == 4, not_captain.output
    assert "production's release captain is alice; bob is not: ask alice, or add --force --reason" \
        in not_captain.output
    assert serving(project) == {n: "1.6.0" if n in NEXT_NODES else BASE for n in project.nodes}

    # And alice's deploy goes through, its row keeping Next's evidence
    accepted = project.json("deploy", "--env", "production", "--build", "1.6.0", "--yes", "--actor", "alice")
    assert accepted["exit_code"] == 0, accepted
    assert serving(project) == {n: "1.6.0" if n in NEXT_NODES + PROD_NODES else BASE for n in project.nodes}
    row = project.json("show", accepted["rollout_id"])
    assert row["policy"]["requires"]["proven"] is True and "forced" not in row["policy"]

    # When bob forces an unproven 1.7.0 past both policies, with a reason: it goes through, recorded
    project.build("1.7.0")
    forced = project.json("deploy", "--env", "production", "--build", "1.7.0", "--yes", "--actor", "bob",
                          "--force", "--skip-next", "--reason", "CVE-2026-1 fix, alice away")
    assert forced["exit_code"] == 0, forced
    assert serving(project) == {n: "1.7.0" if n in PROD_NODES else "1.6.0" if n in NEXT_NODES else BASE
                                for n in project.nodes}
    policy = project.json("show", forced["rollout_id"])["policy"]
    assert policy["forced"] == {"captain": "alice", "reason": "CVE-2026-1 fix, alice away"}
    assert policy["skipped_next"] == {"requires": "next", "missing": "1.7.0 was never deployed to next",
                                      "reason": "CVE-2026-1 fix, alice away"}
    # And history shows the refusals and the overrides, newest first
    rows = project.json("history", "--env", "production")["rollouts"]
    assert [(r["actor"], r["build"], r["status"]) for r in rows] == [
        ("bob", "1.7.0", "succeeded"), ("alice", "1.6.0", "succeeded"), ("bob", "1.6.0", "refused"),
        ("alice", "1.6.0", "refused"), ("alice", "1.6.0", "refused")]
    text = " ".join(project.cli("history", "--env", "production").output.split())
    assert "succeeded (--force, --skip-next)" in text and "refused (captain)" in text and "refused (requires)" in text
