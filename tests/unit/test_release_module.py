"""The lrelease_release module's layout operations, run on a temporary deploy root."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

MODULE = Path(__file__).resolve().parents[2] / "lrelease" / "ansible" / "modules" / "lrelease_release.py"
_spec = importlib.util.spec_from_file_location("lrelease_release_module", MODULE)
rel = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rel)
LIVE = SimpleNamespace(check_mode=False)


def make_artifact(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o4755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "srv"
    (r / "releases").mkdir(parents=True)
    return r


def stage(root: Path, tmp_path: Path, build: str, payload: bytes = b"v") -> str:
    art = tmp_path / f"app-{build}.tar.gz"
    sha = make_artifact(art, {"VERSION": payload, "run.sh": b"#!/bin/sh\n"})
    rel.stage(LIVE, str(root), build, str(art), sha, {"who": "ann", "rollout_id": "r1"}, True)
    return sha


def test_stage_unpacks_atomically_with_a_manifest(root, tmp_path):
    # Given an artifact on the host
    art = tmp_path / "app.tar.gz"
    sha = make_artifact(art, {"VERSION": b"1.1.0\n", "run.sh": b"#!/bin/sh\n"})
    # When it is staged
    result = rel.stage(LIVE, str(root), "1.1.0", str(art), sha, {"commit": "abc", "who": "ann"}, True)
    # Then releases/1.1.0 is complete, carries the manifest, has no setuid bit, and the artifact is gone
    release = root / "releases" / "1.1.0"
    assert result["changed"] and (release / "VERSION").read_text() == "1.1.0\n"
    manifest = json.loads((release / ".lrelease-manifest.json").read_text())
    assert manifest["sha256"] == sha and manifest["commit"] == "abc" and manifest["who"] == "ann"
    assert manifest["staged_at"].endswith("Z") and manifest["rollout_id"] is None
    assert not (release / "run.sh").stat().st_mode & 0o4000
    assert not art.exists() and not list((root / "releases").glob(".*"))


def test_stage_is_idempotent_for_the_same_sha256(root, tmp_path):
    sha = stage(root, tmp_path, "1.1.0")
    before = (root / "releases" / "1.1.0" / ".lrelease-manifest.json").read_text()
    # When the same release is staged again without an artifact
    result = rel.stage(LIVE, str(root), "1.1.0", None, sha, {}, True)
    # Then nothing changes
    assert not result["changed"]
    assert (root / "releases" / "1.1.0" / ".lrelease-manifest.json").read_text() == before


def test_stage_refuses_a_wrong_checksum_and_leaves_nothing(root, tmp_path):
    art = tmp_path / "app.tar.gz"
    make_artifact(art, {"VERSION": b"x"})
    with pytest.raises(rel.LayoutError, match="expected 0000"):
        rel.stage(LIVE, str(root), "1.1.0", str(art), "0" * 64, {}, True)
    assert list((root / "releases").iterdir()) == []


@pytest.mark.parametrize("members,links", [
    ({"../evil": b"x"}, None),
    ({"/etc/evil": b"x"}, None),
    ({"ok": b"x"}, {"link": "../../etc/passwd"}),
])
def test_stage_refuses_archives_that_escape_the_release(root, tmp_path, members, links):
    art = tmp_path / "bad.tar.gz"
    sha = make_artifact(art, members, links)
    with pytest.raises(rel.LayoutError, match="outside the release"):
        rel.stage(LIVE, str(root), "6.6.6", str(art), sha, {}, True)
    assert not (root / "releases" / "6.6.6").exists()


def test_stage_will_not_replace_the_live_release(root, tmp_path):
    stage(root, tmp_path, "1.1.0")
    rel.switch(LIVE, str(root), "1.1.0", None, None, None)
    art = tmp_path / "other.tar.gz"
    sha = make_artifact(art, {"VERSION": b"different"})
    with pytest.raises(rel.LayoutError, match="live"):
        rel.stage(LIVE, str(root), "1.1.0", str(art), sha, {}, True)


def test_switch_records_previous_and_ledger_in_one_step(root, tmp_path):
    # Given 1.0.0 live and 1.1.0 staged
    stage(root, tmp_path, "1.0.0")
    stage(root, tmp_path, "1.1.0", b"new")
    rel.switch(LIVE, str(root), "1.0.0", None, None, None)
    # When current switches to 1.1.0 with a ledger line
    result = rel.switch(LIVE, str(root), "1.1.0", None, {"event": "switch", "who": "ann", "rollout_id": "r7"}, None)
    # Then current is a relative link to it, previous is 1.0.0 and the ledger says so
    assert result["changed"] and result["from"] == "1.0.0"
    assert os.readlink(root / "current") == "releases/1.1.0"
    assert (root / ".lrelease" / "previous").read_text() == "1.0.0\n"
    line = json.loads((root / ".lrelease" / "ledger.jsonl").read_text().splitlines()[-1])
    assert {k: line[k] for k in ("event", "build", "from", "to", "who", "rollout_id")} == {
        "event": "switch", "build": "1.1.0", "from": "1.0.0", "to": "1.1.0", "who": "ann", "rollout_id": "r7"}
    # And once the role has settled it (service restarted), switching again changes nothing
    assert (root / ".lrelease" / "pending").read_text() == "1.1.0\n"
    (root / ".lrelease" / "pending").unlink()
    again = rel.switch(LIVE, str(root), "1.1.0", None, {"event": "switch"}, None)
    assert not again["changed"] and len((root / ".lrelease" / "ledger.jsonl").read_text().splitlines()) == 1


def test_a_switch_that_died_before_the_restart_is_reported_again(root, tmp_path):
    # Given a run that switched current to 1.1.0 and was killed before restarting the service
    stage(root, tmp_path, "1.0.0")
    stage(root, tmp_path, "1.1.0", b"new")
    rel.switch(LIVE, str(root), "1.0.0", None, None, None)
    (root / ".lrelease" / "pending").unlink()
    rel.switch(LIVE, str(root), "1.1.0", None, {"event": "switch", "rollout_id": "r1"}, None)
    # When the resumed run switches the host to the same build
    again = rel.switch(LIVE, str(root), "1.1.0", None, {"event": "switch", "rollout_id": "r2"}, None)
    # Then it is reported as switched (so the role restarts it), from the build before, with no new line
    assert again["changed"] and again["resumed"] and again["from"] == "1.0.0"
    assert len((root / ".lrelease" / "ledger.jsonl").read_text().splitlines()) == 1


def test_switch_refuses_an_unstaged_build_or_a_wrong_checksum(root, tmp_path):
    sha = stage(root, tmp_path, "1.0.0")
    with pytest.raises(rel.LayoutError, match="not staged"):
        rel.switch(LIVE, str(root), "9.9.9", None, None, None)
    with pytest.raises(rel.LayoutError, match="sha256"):
        rel.switch(LIVE, str(root), "1.0.0", None, None, "f" * 64)
    assert not (root / "current").exists()
    assert rel.switch(LIVE, str(root), "1.0.0", None, None, sha)["changed"]


def test_a_switch_whose_ledger_cannot_be_written_is_undone(root, tmp_path):
    stage(root, tmp_path, "1.0.0")
    stage(root, tmp_path, "1.1.0")
    rel.switch(LIVE, str(root), "1.0.0", None, None, None)
    (root / ".lrelease" / "ledger.jsonl").mkdir(parents=True)  # unwritable as a file
    with pytest.raises(rel.LayoutError, match="switch undone"):
        rel.switch(LIVE, str(root), "1.1.0", None, {"event": "switch"}, None)
    assert os.readlink(root / "current") == "releases/1.0.0"
    assert not (root / ".lrelease" / "previous").exists()


def test_prune_keeps_the_newest_and_never_current_or_previous(root, tmp_path):
    # Given six releases, oldest first, with current on the oldest and previous on the second
    for age, build in enumerate(["r1", "r2", "r3", "r4", "r5", "r6"]):
        stage(root, tmp_path, build)
        os.utime(root / "releases" / build, (1000 + age, 1000 + age))
    rel.switch(LIVE, str(root), "r2", None, None, None)
    rel.switch(LIVE, str(root), "r1", None, None, None)  # previous: r2
    (root / "releases" / ".r7.partial").mkdir()
    # When all but the 2 newest are pruned
    result = rel.prune(LIVE, str(root), 2)
    # Then r5, r6 (newest), r1 (current) and r2 (previous) stay; the partial dir goes too
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["r1", "r2", "r5", "r6"]
    assert sorted(result["removed"]) == [".r7.partial", "r3", "r4"]


def test_rollback_moves_only_a_host_on_the_failed_build_back_to_previous(root, tmp_path):
    # Given 1.0.0 -> 1.1.0 switched (previous 1.0.0)
    stage(root, tmp_path, "1.0.0")
    stage(root, tmp_path, "1.1.0")
    rel.switch(LIVE, str(root), "1.0.0", None, None, None)
    rel.switch(LIVE, str(root), "1.1.0", None, None, None)
    # When a rollback of another build runs, nothing moves
    other = rel.switch(LIVE, str(root), None, None, {"event": "rollback"}, None, only_if_current="9.9.9")
    assert not other["changed"] and os.readlink(root / "current") == "releases/1.1.0"
    # When the rollback of 1.1.0 runs, current goes back to previous and the ledger says so
    back = rel.switch(LIVE, str(root), None, None, {"event": "rollback", "who": "ann"}, None, only_if_current="1.1.0")
    assert back["changed"] and os.readlink(root / "current") == "releases/1.0.0"
    assert (root / ".lrelease" / "previous").read_text() == "1.1.0\n"
    line = json.loads((root / ".lrelease" / "ledger.jsonl").read_text().splitlines()[-1])
    assert (line["event"], line["build"], line["from"], line["to"]) == ("rollback", "1.1.0", "1.1.0", "1.0.0")
    # And once the role has settled it (service restarted), running it again changes nothing (idempotent)
    assert (root / ".lrelease" / "pending").read_text() == "1.0.0\n"
    (root / ".lrelease" / "pending").unlink()
    assert not rel.switch(LIVE, str(root), None, None, {"event": "rollback"}, None, only_if_current="1.1.0")["changed"]


def test_rollback_without_a_recorded_previous_build_says_so(root, tmp_path):
    stage(root, tmp_path, "1.0.0")
    rel.switch(LIVE, str(root), "1.0.0", None, None, None)
    with pytest.raises(rel.LayoutError, match="no previous build"):
        rel.switch(LIVE, str(root), None, None, None, None, only_if_current="1.0.0")


def rolled_back_before_the_restart(root: Path, tmp_path: Path) -> None:
    """1.0.0 -> 1.1.0 deployed and settled, then a rollback of 1.1.0 killed after `current`
    went back to 1.0.0 and before the service was restarted (.lrelease/pending: 1.0.0)."""
    stage(root, tmp_path, "1.0.0")
    stage(root, tmp_path, "1.1.0", b"new")
    rel.switch(LIVE, str(root), "1.0.0", None, None, None)
    rel.switch(LIVE, str(root), "1.1.0", None, {"event": "switch"}, None)
    (root / ".lrelease" / "pending").unlink()  # the deploy's role settled it
    rel.switch(LIVE, str(root), None, None, {"event": "rollback"}, None, only_if_current="1.1.0")
    assert (root / ".lrelease" / "pending").read_text() == "1.0.0\n"


@pytest.mark.parametrize("target", [None, "1.0.0"], ids=["to-previous", "rollback-to"])
def test_a_rollback_that_died_before_the_restart_is_reported_again(root, tmp_path, target):
    # Given a rollback of 1.1.0 killed between the switch back and the restart
    rolled_back_before_the_restart(root, tmp_path)
    # When the rollback runs again (only hosts on 1.1.0, which this one no longer is)
    again = rel.switch(LIVE, str(root), target, None, {"event": "rollback"}, None, only_if_current="1.1.0")
    # Then it is reported as a resumed switch (so the role restarts it), from the failed build,
    # without moving current again or writing a new ledger line; the role settles the marker
    assert again["changed"] and again["resumed"] and again["from"] == "1.1.0"
    assert again["current"] == "1.0.0" and os.readlink(root / "current") == "releases/1.0.0"
    assert [json.loads(x)["event"] for x in (root / ".lrelease" / "ledger.jsonl").read_text().splitlines()] == [
        "switch", "rollback"]
    assert (root / ".lrelease" / "pending").read_text() == "1.0.0\n"


def test_a_settled_rollback_or_someone_elses_pending_switch_is_left_alone(root, tmp_path):
    # Given a rollback of 1.1.0 that completed (the role removed .lrelease/pending)
    rolled_back_before_the_restart(root, tmp_path)
    (root / ".lrelease" / "pending").unlink()
    # When it runs again, nothing is to do
    again = rel.switch(LIVE, str(root), None, None, {"event": "rollback"}, None, only_if_current="1.1.0")
    assert not again["changed"] and "resumed" not in again
    assert again["unchanged_because"] == "current is 1.0.0, not 1.1.0"
    # And a rollback of a build the host was never moved off leaves a pending switch to the deploy's resume
    (root / ".lrelease" / "pending").write_text("1.0.0\n")
    other = rel.switch(LIVE, str(root), None, None, {"event": "rollback"}, None, only_if_current="9.9.9")
    assert not other["changed"] and "resumed" not in other


def run_module(tmp_path: Path, **args) -> dict:
    """The module as Ansible runs it on a host: its own process, arguments in a JSON file."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, timeout=60,
                          check=False)
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and not result.get("failed"), result
    return result


def test_a_resumed_rollback_restarts_the_service_in_the_same_module_run(root, tmp_path):
    # Given a rollback of 1.1.0 killed before the restart, and a service command that logs its calls
    rolled_back_before_the_restart(root, tmp_path)
    log = tmp_path / "service.log"
    service = tmp_path / "app-service"
    service.write_text(f'#!/bin/sh\necho "$1 $(readlink {root}/current)" >> {log}\n')
    service.chmod(0o755)
    rollback = {"root": str(root), "state": "current", "only_if_current": "1.1.0", "ledger": {"event": "rollback"},
                "restart": [str(service), "restart"]}
    # When the rollback runs again with the restart in the same module run (the role's default)
    result = run_module(tmp_path, **rollback)
    # Then the service is restarted on 1.0.0 and the outcome returned for the role to judge; the marker
    # stays until the role's settle step, after /health, as after any switch with a restart
    assert result["changed"] and result["resumed"] and result["current"] == "1.0.0"
    assert result["restart"]["rc"] == 0 and log.read_text() == "restart releases/1.0.0\n"
    assert (root / ".lrelease" / "pending").read_text() == "1.0.0\n"
    # When the role has settled it and the rollback runs again, nothing is restarted
    (root / ".lrelease" / "pending").unlink()
    settled = run_module(tmp_path, **rollback)
    assert not settled["changed"] and "restart" not in settled
    assert log.read_text() == "restart releases/1.0.0\n"


class _Runner:
    """Stands in for AnsibleModule.run_command: returns ``outcome`` or raises it."""

    def __init__(self, outcome):
        self.outcome, self.calls = outcome, []

    def run_command(self, argv, handle_exceptions=True):
        # An error must come back to the module, not end it with a failure after current moved.
        assert handle_exceptions is False
        self.calls.append(argv)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def test_the_restart_after_a_switch_is_reported_not_judged():
    # Given a restart command that prints and exits 3
    runner = _Runner((3, "stopped pid 7\n", "app not listening\n"))
    # When the module runs it after a switch
    outcome = rel.restart_service(runner, ["/srv/app/bin/app-service", "restart"])
    # Then its argv ran as given and its outcome comes back for the role to judge
    assert runner.calls == [["/srv/app/bin/app-service", "restart"]]
    assert outcome == {"cmd": ["/srv/app/bin/app-service", "restart"], "rc": 3,
                       "stdout": "stopped pid 7", "stderr": "app not listening"}


def test_a_restart_command_that_cannot_run_is_reported_like_a_shell_would():
    missing = rel.restart_service(_Runner(FileNotFoundError(2, "No such file or directory")), ["/nope", "restart"])
    denied = rel.restart_service(_Runner(PermissionError(13, "Permission denied")), ["/etc/passwd", "restart"])
    assert (missing["rc"], denied["rc"]) == (127, 126)
    assert "No such file" in missing["stderr"] and "Permission denied" in denied["stderr"]
