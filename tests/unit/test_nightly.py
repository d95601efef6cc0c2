"""`lrelease nightly`'s decisions, with an injected clock and a real state store (no hosts:
`--dry-run`, the decision function, and refusals, which stop before any host is dialled).
The sandbox run that resumes and deploys for real: tests/rollout/test_nightly.py."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lrelease import nightly
from lrelease.cli.main import cli
from lrelease.cli.nightly import worst
from lrelease.config import load_config
from lrelease.state import StateStore
from tests.clock import injected

# Tuesday 1 December 2026, 23:00 in Amsterdam (22:00 UTC): production's window (22:00-06:00) is open.
T0 = datetime(2026, 12, 1, 22, 0, tzinfo=timezone.utc)
WINDOW = {"timezone": "Europe/Amsterdam", "weekly": ["daily 22:00-06:00"]}


@pytest.fixture
def clock(monkeypatch):
    return injected(monkeypatch, T0)


def env(**more) -> dict:
    return {"deploy_root": "/srv/shop", "service": {"systemd": "shop"}, "waves": ["100%"], **more}


def artifact(root: Path, build: str, mtime: float | None = None) -> None:
    path = root / "artifacts" / f"shop-{build}.tar.gz"
    path.write_bytes(f"build {build}".encode())
    (root / "artifacts" / f"shop-{build}.tar.gz.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def write_config(root: Path, **envs: dict) -> Path:
    path = root / "lrelease.yml"
    path.write_text(yaml.safe_dump({"version": 1, "app": "shop", "fleet": "fleet.yml", "state_dir": "state",
                                    "environments": envs}, sort_keys=False))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """production (node2, node3; listed first, requiring next, soak 30m, window 22:00-06:00) and
    next (node1), both with nightly on; builds 1.6.0, 1.9.0 and 1.10.0."""
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump({"nodes": {
        "node1": {"environment": "next", "address": "192.0.2.1"},
        "node2": {"environment": "production", "address": "192.0.2.2"},
        "node3": {"environment": "production", "address": "192.0.2.3"}}}))
    (tmp_path / "artifacts").mkdir()
    for build in ("1.6.0", "1.9.0", "1.10.0"):
        artifact(tmp_path, build)
    return write_config(tmp_path, production=env(nightly=True, window=WINDOW, requires={"env": "next", "soak": "30m"}),
                        next=env(nightly=True))


def store(project: Path, clock) -> StateStore:
    return StateStore(project.parent / "state" / "lrelease.db", clock=clock)


def record(project: Path, clock, env: str, build: str, status: str, action: str = "deploy") -> str:
    """A roll-out of ``build`` on ``env`` that ended ``status`` now (what a run leaves in the store)."""
    with store(project, clock) as s:
        r = s.start_rollout(env, build, action, "alice")
        s.finish_rollout(r.id, status, 0 if status == "succeeded" else 5)
        return r.id


def run(project: Path, *args: str, user: str | None = None):
    environ = {"LRELEASE_USER": user} if user else {"LRELEASE_USER": ""}
    return CliRunner(env=environ).invoke(cli, ["nightly", *args, "--config", str(project)])


def summary(result) -> dict:
    return json.loads(result.stdout)


def steps(result) -> dict[str, dict]:
    return {e["env"]: e for e in summary(result)["environments"]}


# -- newest, order ------------------------------------------------------------------------------
def test_newest_is_version_order_when_every_name_is_a_version_else_modification_time():
    # Given build names that are all versions: PEP 440 order (1.10.0 after 1.9.0, rc before final)
    assert nightly.newest_first({"1.9.0": 3, "1.10.0": 1, "1.10.0rc1": 2, "1.2": 9}) == ["1.10.0", "1.10.0rc1",
                                                                                      "1.9.0", "1.2"]
    # Given one name that is not a version: every build by modification time, newest first
    assert nightly.newest_first({"1.9.0": 3, "1.10.0": 1, "nightly-abc": 2}) == ["1.9.0", "nightly-abc", "1.10.0"]


def test_builds_are_read_from_the_artifacts_store(project):
    # Given an artifact without its checksum and another app's artifact beside the builds
    (project.parent / "artifacts" / "shop-2.0.0.tar.gz").write_bytes(b"no checksum")
    (project.parent / "artifacts" / "other-3.0.0.tar.gz").write_bytes(b"not ours")
    (project.parent / "artifacts" / "other-3.0.0.tar.gz.sha256").write_text("0" * 64)
    # Then only the complete builds of this app count, newest first
    assert nightly.builds(load_config(project)) == ["1.10.0", "1.9.0", "1.6.0"]


def test_builds_fall_back_to_modification_time(project):
    artifact(project.parent, "hotfix-x", mtime=2_000_000_000)  # not a version: the newest by mtime
    assert nightly.builds(load_config(project))[0] == "hotfix-x"


def test_an_environment_another_requires_goes_first():
    config = load_config_from({"production": env(requires={"env": "next"}), "dev": env(),
                               "next": env(requires={"env": "dev"})})
    assert [e.name for e in nightly.order(config)] == ["dev", "next", "production"]
    assert [e.name for e in nightly.order(config, ("production", "next"))] == ["next", "production"]


def load_config_from(envs: dict) -> object:
    import tempfile

    root = Path(tempfile.mkdtemp())
    return load_config(write_config(root, **envs))


def test_the_worst_exit_code_is_the_last_in_the_readmes_order():
    assert worst([]) == 0 and worst([0, 0]) == 0
    assert worst([0, 4, 5]) == 5 and worst([3, 4]) == 4 and worst([1, 70, 5]) == 70 and worst([130, 3]) == 130


# -- the decisions, through the CLI's dry run ----------------------------------------------------
def test_dry_run_deploys_the_newest_build_to_next_and_nothing_unproven_to_production(project, clock):
    # When nightly runs dry with nothing deployed yet
    result = run(project, "--dry-run")
    # Then next (required by production) goes first and would get the newest build, 1.10.0;
    # production has nothing proven on next
    assert result.exit_code == 0, result.output
    out = summary(result)
    assert out["schema"] == "lrelease.nightly/v1" and out["dry_run"] is True and out["actor"] == "nightly"
    assert [(e["env"], e["action"], e["reason"], e["build"]) for e in out["environments"]] == [
        ("next", "deploy", "newest_build", "1.10.0"), ("production", "none", "not_proven", None)]
    assert "1.10.0 was never deployed to next" in out["environments"][1]["detail"]
    # And stderr is one JSON object per line: time (the injected clock), level, env, event, detail
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(x["env"], x["event"]) for x in logs] == [(None, "start"), ("next", "would_deploy"),
                                                      ("production", "none"), (None, "end")]
    assert all(x["time"] == "2026-12-01T22:00:00.000Z" and x["level"] == "info" for x in logs)
    # And nothing was recorded
    with store(project, clock) as s:
        assert s.history() == []


def test_production_gets_the_newest_build_proven_on_next(project, clock):
    # Given 1.9.0 succeeded on next 40 minutes ago, and 1.10.0 succeeded there 10 minutes ago
    clock.tick(minutes=-40)
    record(project, clock, "next", "1.9.0", "succeeded")
    clock.tick(minutes=30)
    record(project, clock, "next", "1.10.0", "succeeded")
    clock.tick(minutes=10)
    # When nightly runs dry: next is up to date; production gets 1.9.0 (1.10.0 still soaking)
    result = run(project, "--dry-run")
    assert result.exit_code == 0, result.output
    got = steps(result)
    assert (got["next"]["action"], got["next"]["reason"], got["next"]["build"]) == ("none", "up_to_date", "1.10.0")
    assert (got["production"]["action"], got["production"]["reason"], got["production"]["build"]) == (
        "deploy", "proven", "1.9.0")
    assert got["production"]["evidence"]["proven"] is True
    # When 1.9.0 is on production too: nothing to do there ("newer" says what 1.10.0 waits for)
    record(project, clock, "production", "1.9.0", "succeeded")
    got = steps(run(project, "--dry-run"))
    assert (got["production"]["action"], got["production"]["reason"]) == ("none", "up_to_date")
    assert "soaking on next: 10 of 30 minutes" in got["production"]["detail"]


def test_a_build_that_failed_is_not_retried_and_no_older_one_replaces_it(project, clock):
    record(project, clock, "next", "1.10.0", "rolled_back")
    got = steps(run(project, "--dry-run"))["next"]
    assert (got["action"], got["reason"], got["build"]) == ("none", "not_retried", "1.10.0")
    assert "ended rolled_back; nightly does not retry it" in got["detail"]


def test_skips_automation_off_paused_environment_and_closed_window(project, clock):
    # Given next with nightly off (the default), production paused
    write_config(project.parent, production=env(nightly=True, window=WINDOW, requires={"env": "next"}), next=env())
    with store(project, clock) as s:
        s.pause_env("production", paused_by="carol", reason="INC-42")
    got = steps(run(project, "--dry-run"))
    assert (got["next"]["action"], got["next"]["reason"]) == ("skip", "automation_off")
    assert "environments.next.nightly: true" in got["next"]["detail"]
    assert (got["production"]["action"], got["production"]["reason"]) == ("skip", "env_paused")
    assert "paused by carol" in got["production"]["detail"] and "INC-42" in got["production"]["detail"]
    # When unpaused, at 14:00 in Amsterdam: the window is closed, saying when it opens
    with store(project, clock) as s:
        s.unpause_env("production", unpaused_by="carol")
    clock.now = datetime(2026, 12, 2, 13, 0, tzinfo=timezone.utc)
    result = run(project, "--dry-run", "--env", "production")
    assert result.exit_code == 0, result.output
    got = steps(result)
    assert list(got) == ["production"] and got["production"]["reason"] == "window_closed"
    assert "it next opens Wed 2026-12-02 22:00 Europe/Amsterdam" in got["production"]["detail"]


def test_a_paused_roll_out_is_resumed_and_a_halted_one_left_to_a_human(project, clock):
    # Given production's roll-out of 1.9.0 paused by its window (proven on next before)
    clock.tick(hours=-2)
    record(project, clock, "next", "1.9.0", "succeeded")
    clock.tick(hours=1)
    paused = record(project, clock, "production", "1.9.0", "paused")
    clock.tick(hours=1)
    got = steps(run(project, "--dry-run"))["production"]
    assert (got["action"], got["resumes"], got["build"]) == ("resume", paused, "1.9.0")
    # Given next's last roll-out halted: a human decides, nightly does not deploy over it
    halted = record(project, clock, "next", "1.10.0", "halted")
    got = steps(run(project, "--dry-run"))["next"]
    assert (got["action"], got["reason"]) == ("skip", "needs_human") and halted in got["detail"]


def test_the_release_captain_rule_applies_to_nightly(project, clock):
    # Given alice is next's release captain
    with store(project, clock) as s:
        s.set_captain("next", "alice", set_by="carol")
    # When nightly runs dry as `nightly`: next's deploy would be refused (exit 4)
    result = run(project, "--dry-run")
    assert result.exit_code == 4, result.output
    got = steps(result)["next"]
    assert got["exit_code"] == 4 and got["refused"]["policy"] == "captain"
    assert "next's release captain is alice; nightly is not" in got["refused"]["message"]
    # When run as alice ($LRELEASE_USER): it would go ahead
    result = run(project, "--dry-run", user="alice")
    assert result.exit_code == 0 and summary(result)["actor"] == "alice", result.output
    # When run for real as `nightly`: refused before any host, recorded, exit 4, production still decided
    result = run(project)
    assert result.exit_code == 4, result.output
    got = steps(result)
    assert (got["next"]["status"], got["next"]["exit_code"]) == ("refused", 4)
    assert (got["production"]["action"], got["production"]["exit_code"]) == ("none", 0)
    with store(project, clock) as s:
        rows = s.history("next")
    assert [(r.id, r.action, r.build, r.status, r.actor) for r in rows] == [
        (got["next"]["rollout_id"], "deploy", "1.10.0", "refused", "nightly")]
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert ("next", "refused", "error") in [(x["env"], x["event"], x["level"]) for x in logs]


@pytest.mark.parametrize("args, start", [
    (["--env", "staging"], "lrelease: error: "),
])
def test_an_unknown_environment_is_one_line_exit_2(project, clock, args, start):
    result = run(project, *args)
    assert result.exit_code == 2 and result.output.strip().startswith(start), result.output
    assert "staging" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_bad_nightly_key_is_one_line_exit_2(project, clock):
    write_config(project.parent, next=env(nightly="yes"))
    result = run(project, "--dry-run")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "environments.next.nightly" in lines[0] and "true or false" in lines[0], lines
