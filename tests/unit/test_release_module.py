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


def pending_to(root: Path) -> str:
    """The build the switch recorded in .lrelease/pending (the intent) goes to."""
    return json.loads((root / ".lrelease" / "pending").read_text())["to"]


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
    assert pending_to(root) == "1.1.0"
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


def test_the_hosts_releases_say_when_current_last_changed(root, tmp_path):
    # Given a host with no current yet: nothing to say
    stage(root, tmp_path, "1.0.0")
    stage(root, tmp_path, "1.1.0", b"new")
    assert rel.info(str(root))["current_changed_at"] is None
    # When current switches, and again later
    rel.switch(LIVE, str(root), "1.0.0", None, None, None)
    first = rel.info(str(root))["current_changed_at"]
    os.utime(root / "current", (1000.0, 1000.0), follow_symlinks=False)  # as if switched long ago
    assert rel.info(str(root))["current_changed_at"] == 1000.0
    (root / ".lrelease" / "pending").unlink()
    rel.switch(LIVE, str(root), "1.1.0", None, {"event": "switch"}, None)
    # Then the read says when the link changed (the APM gate's window before a switch starts no
    # earlier), and staging or a later read does not move it
    changed = rel.info(str(root))["current_changed_at"]
    assert changed > 1000.0 and changed >= first - 1
    stage(root, tmp_path, "1.2.0", b"newer")
    assert rel.info(str(root))["current_changed_at"] == changed


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
    assert pending_to(root) == "1.0.0"
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
    assert pending_to(root) == "1.0.0"


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
    assert pending_to(root) == "1.0.0"


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


def run_module(tmp_path: Path, *, fails: bool = False, **args) -> dict:
    """The module as Ansible runs it on a host: its own process, arguments in a JSON file; its result,
    checked to have succeeded (or, with ``fails``, to have failed)."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, timeout=60,
                          check=False)
    result = json.loads(proc.stdout)
    assert (proc.returncode != 0) == fails and bool(result.get("failed")) == fails, result
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
    assert pending_to(root) == "1.0.0"
    # When the role has settled it and the rollback runs again, nothing is restarted
    (root / ".lrelease" / "pending").unlink()
    settled = run_module(tmp_path, **rollback)
    assert not settled["changed"] and "restart" not in settled
    assert log.read_text() == "restart releases/1.0.0\n"


def test_a_switch_with_keep_prunes_in_the_same_module_run_after_a_good_restart(root, tmp_path):
    # Given five releases, oldest first, the host on r3 (previous r2), and a service whose restart fails on r6
    for age, build in enumerate(["r1", "r2", "r3", "r4", "r5"]):
        stage(root, tmp_path, build)
        os.utime(root / "releases" / build, (1000 + age, 1000 + age))
    rel.switch(LIVE, str(root), "r2", None, None, None)
    rel.switch(LIVE, str(root), "r3", None, None, None)
    service = tmp_path / "app-service"
    service.write_text(f'#!/bin/sh\ntest "$(readlink {root}/current)" != releases/r6\n')
    service.chmod(0o755)
    switch = {"root": str(root), "state": "current", "keep": 1, "restart": [str(service), "restart"]}
    # When it switches to r4 keeping 1, switch, restart and prune are one module run
    result = run_module(tmp_path, build="r4", **switch)
    # Then r5 (the newest), r4 (current) and r3 (previous) stay, and r2 too while the switch is unsettled
    # (a revert would make it previous again); r1 is removed
    assert result["changed"] and result["current"] == "r4" and result["restart"]["rc"] == 0
    assert result["removed"] == ["r1"]
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["r2", "r3", "r4", "r5"]
    # When that switch is settled and the next one (to r5) prunes, r2 goes
    (root / ".lrelease" / "pending").unlink()
    assert run_module(tmp_path, build="r5", **switch)["removed"] == ["r2"]
    (root / ".lrelease" / "pending").unlink()
    # When the next switch's restart fails, the task fails with one line, the switch standing (for the
    # role's rescue to revert), and nothing is pruned: the host is about to be put back
    stage(root, tmp_path, "r6")
    failed = run_module(tmp_path, fails=True, build="r6", **switch)
    assert failed["msg"] == f"switched to r6, but '{service} restart' exited 1"
    assert failed["changed"] and failed["current"] == "r6" and failed["from"] == "r5" and "removed" not in failed
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["r3", "r4", "r5", "r6"]
    # And keep goes only with a switch or a prune
    refused = run_module(tmp_path, fails=True, root=str(root), state="info", keep=2)
    assert "keep goes with state=current or pruned" in refused["msg"]


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


def ledger_of(root: Path) -> list[dict]:
    path = root / ".lrelease" / "ledger.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def previous_of(root: Path) -> str | None:
    path = root / ".lrelease" / "previous"
    return path.read_text().strip() if path.exists() else None


def deployed(root: Path, tmp_path: Path, *steps: tuple[str, str]) -> None:
    """Each (build, rollout id) staged and switched to in turn, and settled by the role."""
    for build, rollout in steps:
        if not (root / "releases" / build).exists():
            stage(root, tmp_path, build, build.encode())
        rel.switch(LIVE, str(root), build, None, {"event": "switch", "rollout_id": rollout}, None)
        (root / ".lrelease" / "pending").unlink()


def undo(root: Path, ids: list[str], check_mode: bool = False) -> dict:
    module = SimpleNamespace(check_mode=check_mode)
    return rel.switch(module, str(root), None, None, {"event": "rollback", "who": "ann", "rollout_id": "rb"}, None,
                      undo=ids)


def test_undo_goes_back_to_the_build_before_the_roll_out_and_restores_previous(root, tmp_path):
    # Given 0.9.0, then 1.0.0, then roll-out r1 brought 1.1.0 (previous: 1.0.0)
    deployed(root, tmp_path, ("0.9.0", "r0"), ("1.0.0", "r00"), ("1.1.0", "r1"))
    # When r1 is undone
    result = undo(root, ["r1"])
    # Then the host is on 1.0.0 again, .lrelease/previous is what it was before r1 (0.9.0), never 1.1.0
    assert result["changed"] and (result["target"], result["undone"], result["from"]) == ("1.0.0", "r1", "1.1.0")
    assert os.readlink(root / "current") == "releases/1.0.0" and previous_of(root) == "0.9.0"
    # And the ledger says which roll-out was undone and which build was left
    line = ledger_of(root)[-1]
    assert {k: line[k] for k in ("event", "build", "from", "to", "undoes", "who", "rollout_id", "previous")} == {
        "event": "rollback", "build": "1.1.0", "from": "1.1.0", "to": "1.0.0", "undoes": "r1", "who": "ann",
        "rollout_id": "rb", "previous": "1.0.0"}
    # And once settled, undoing it again changes nothing (already undone)
    (root / ".lrelease" / "pending").unlink()
    again = undo(root, ["r1"])
    assert not again["changed"] and again["target"] == "1.0.0" and "undone already" in again["unchanged_because"]
    assert len(ledger_of(root)) == 4


def test_undo_of_a_roll_out_and_its_resumes_starts_from_the_first_switch(root, tmp_path):
    # Given roll-out r1 brought 1.1.0 and its resume r2 brought 1.1.1 (two switches on this host)
    deployed(root, tmp_path, ("0.9.0", "r0"), ("1.0.0", "r00"), ("1.1.0", "r1"), ("1.1.1", "r2"))
    # When a dry run (check mode) asks what undoing r2 alone, then r1 with r2, would do
    alone = undo(root, ["r2"], check_mode=True)
    both = undo(root, ["r2", "r1"], check_mode=True)
    # Then r2 alone goes back to 1.1.0, both together to 1.0.0, the build before r1's first switch;
    # and the dry run changed nothing
    assert (alone["changed"], alone["from"], alone["target"], alone["undone"]) == (True, "1.1.1", "1.1.0", "r2")
    assert (both["changed"], both["from"], both["target"], both["undone"]) == (True, "1.1.1", "1.0.0", "r1")
    assert os.readlink(root / "current") == "releases/1.1.1" and len(ledger_of(root)) == 4
    assert not (root / ".lrelease" / "pending").exists()
    # When both are undone for real
    result = undo(root, ["r1", "r2"])
    # Then the host is on 1.0.0 with the previous it had before r1 (0.9.0)
    assert result["changed"] and result["current"] == "1.0.0" and previous_of(root) == "0.9.0"
    assert ledger_of(root)[-1]["undoes"] == "r1" and ledger_of(root)[-1]["build"] == "1.1.1"


def test_undo_leaves_alone_a_host_the_roll_out_never_switched_or_that_moved_since(root, tmp_path):
    # Given r1 brought 1.1.0, then r3 moved the host to 1.2.0
    deployed(root, tmp_path, ("1.0.0", "r0"), ("1.1.0", "r1"), ("1.2.0", "r3"))
    # When roll-outs that never touched this host, or r1, are undone
    never = undo(root, ["r9", "r8"])
    moved = undo(root, ["r1"])
    # Then nothing changes, and each says why
    assert not never["changed"] and never["unchanged_because"] == "not switched by roll-out r9, r8"
    assert (never["target"], never["undone"]) == (None, None)
    assert not moved["changed"] and (moved["target"], moved["undone"]) == ("1.0.0", "r1")
    assert moved["unchanged_because"] == "current is 1.2.0, which roll-out r1 did not bring (it brought 1.1.0): moved since, left alone"
    assert os.readlink(root / "current") == "releases/1.2.0" and len(ledger_of(root)) == 3
    # And a host whose `current` was removed since is left alone too
    (root / "current").unlink()
    gone = undo(root, ["r1"])
    assert not gone["changed"] and gone["unchanged_because"].startswith("current is not set, which roll-out r1")
    assert not os.path.lexists(root / "current") and len(ledger_of(root)) == 3


def test_undo_of_a_host_already_rolled_back_but_not_restarted_reports_the_owed_restart(root, tmp_path):
    # Given r1 brought 1.1.0 and an automatic rollback moved the host back but died before the restart
    deployed(root, tmp_path, ("1.0.0", "r0"), ("1.1.0", "r1"))
    rel.switch(LIVE, str(root), None, None, {"event": "rollback"}, None, only_if_current="1.1.0")
    # When r1 is undone
    result = undo(root, ["r1"])
    # Then it is reported as a resumed switch (the role restarts the host), with no new ledger line
    assert result["changed"] and result["resumed"] and (result["target"], result["undone"]) == ("1.0.0", "r1")
    assert result["from"] == "1.1.0" and [e["event"] for e in ledger_of(root)] == ["switch", "switch", "rollback"]


def test_undo_of_a_first_install_says_there_is_no_earlier_build(root, tmp_path):
    # Given r1 was this host's first install
    deployed(root, tmp_path, ("1.0.0", "r1"))
    # When r1 is undone, Then nothing changes, and the result says it was a first install and what to do
    result = undo(root, ["r1"])
    assert not result["changed"] and result["first_install"] is True and result["target"] is None
    assert result["unchanged_because"] == ("roll-out r1 was this host's first install: there is no earlier build "
                                           "to go back to (name one with --to)")
    assert os.readlink(root / "current") == "releases/1.0.0" and len(ledger_of(root)) == 1
    assert not (root / ".lrelease" / "pending").exists()


def test_undo_from_ledger_lines_written_before_previous_was_recorded_removes_previous(root, tmp_path):
    # Given a host whose ledger was written by an older module (no `id`, no `previous`), now on 1.1.0
    for build in ("1.0.0", "1.1.0"):
        stage(root, tmp_path, build)
    rel.point_current(str(root), "1.1.0")
    (root / ".lrelease").mkdir()
    (root / ".lrelease" / "previous").write_text("1.0.0\n")
    (root / ".lrelease" / "ledger.jsonl").write_text(
        '{"event": "switch", "build": "1.1.0", "from": "1.0.0", "to": "1.1.0", "rollout_id": "r1"}\n')
    # When r1 is undone
    result = undo(root, ["r1"])
    # Then the host is on 1.0.0 and no previous is claimed (the bad build is never left as previous)
    assert result["changed"] and os.readlink(root / "current") == "releases/1.0.0"
    assert previous_of(root) is None


def test_a_first_install_whose_ledger_cannot_be_written_is_undone(root, tmp_path):
    # Given a host with no `current` yet and an unwritable ledger
    stage(root, tmp_path, "1.0.0")
    (root / ".lrelease" / "ledger.jsonl").mkdir(parents=True)
    # When the first switch is tried
    with pytest.raises(rel.LayoutError, match="cannot write the ledger, switch undone"):
        rel.switch(LIVE, str(root), "1.0.0", None, {"event": "switch"}, None)
    # Then there is no `current` again, no previous and no intent left
    assert not os.path.lexists(root / "current")
    assert not (root / ".lrelease" / "previous").exists() and not (root / ".lrelease" / "pending").exists()


def test_a_plain_text_marker_from_an_older_module_is_still_resumed(root, tmp_path):
    # Given a host upgraded mid-way: current 1.1.0 and the old marker (a bare build id) saying it is not restarted
    deployed(root, tmp_path, ("1.0.0", "r0"), ("1.1.0", "r1"))
    (root / ".lrelease" / "pending").write_text("1.1.0\n")
    # When the switch to 1.1.0 runs again
    again = rel.switch(LIVE, str(root), "1.1.0", None, {"event": "switch", "rollout_id": "r1"}, None)
    # Then it is resumed from the build recorded as previous, with no new ledger line
    assert again["changed"] and again["resumed"] and again["from"] == "1.0.0" and len(ledger_of(root)) == 2
    # And an old marker for a switch that never moved `current` does not stop a new switch
    (root / ".lrelease" / "pending").write_text("1.0.0\n")
    moved = rel.switch(LIVE, str(root), "1.0.0", None, {"event": "switch", "rollout_id": "r2"}, None)
    assert moved["changed"] and "resumed" not in moved and ledger_of(root)[-1]["rollout_id"] == "r2"
    assert pending_to(root) == "1.0.0"


def test_a_ledger_line_cut_short_does_not_swallow_the_next_one(root, tmp_path):
    # Given a ledger whose last line was cut short (a full disk)
    stage(root, tmp_path, "1.0.0")
    (root / ".lrelease").mkdir()
    (root / ".lrelease" / "ledger.jsonl").write_text('{"event": "sw')
    # When a switch is recorded
    rel.switch(LIVE, str(root), "1.0.0", None, {"event": "switch", "rollout_id": "r1"}, None)
    # Then its line is whole and readable on its own
    assert [e["rollout_id"] for e in rel.read_ledger(str(root))] == ["r1"]


def test_prune_keeps_both_builds_of_an_unfinished_switch(root, tmp_path):
    # Given a switch from r2 to r1 (the older release) recorded but not yet done
    for age, build in enumerate(["r1", "r2", "r3"]):
        stage(root, tmp_path, build)
        os.utime(root / "releases" / build, (1000 + age, 1000 + age))
    rel.switch(LIVE, str(root), "r2", None, None, None)
    rel.write_pending(str(root), {"id": "x", "from": "r2", "to": "r1", "previous_before": None,
                                  "previous_after": "r2", "entry": None})
    # When all but the newest are pruned, Then r1 (the switch's target) stays
    assert rel.prune(LIVE, str(root), 1)["removed"] == []


@pytest.mark.parametrize("args,message", [
    ({"state": "info", "build": "1.0.0\n"}, "build must match"),
    ({"state": "current", "previous": "1.0.0\n", "build": "1.0.0"}, "previous must be a build id"),
    ({"state": "staged", "build": "1.0.0", "sha256": "a" * 64 + "\n", "src": "/nonexistent"}, "sha256 must be 64 hex"),
    ({"state": "current", "undo": ["r1"], "build": "1.0.0"}, "mutually exclusive: undo|build"),
    ({"state": "current", "undo": ["r1"], "only_if_current": "1.0.0"}, "mutually exclusive: undo|only_if_current"),
    ({"state": "current", "undo": []}, "undo goes with state=current and names roll-out ids"),
    ({"state": "current", "undo": [" r1"]}, "undo goes with state=current and names roll-out ids"),
    ({"state": "info", "undo": ["r1"]}, "undo goes with state=current"),
    ({"state": "current", "undo": ["r1"], "ledger": {"event": "switch"}}, "ledger.event must be rollback with undo"),
], ids=["build-newline", "previous-newline", "sha256-newline", "undo-and-build", "undo-and-only-if", "undo-empty",
        "undo-spaces", "undo-not-current", "undo-switch-event"])
def test_bad_arguments_fail_with_one_line_and_change_nothing(root, tmp_path, args, message):
    # Given a host on 1.0.0 switched by r1
    deployed(root, tmp_path, ("1.0.0", "r1"))
    before = sorted(str(p) for p in root.rglob("*")), ledger_of(root)
    # When the module is called with a bad argument
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, root=str(root))}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, timeout=60,
                          check=False)
    # Then it fails with a message naming the argument, and the host is as it was
    result = json.loads(proc.stdout)
    assert proc.returncode == 1 and result["failed"] and message in result["msg"], result
    assert "\n" not in result["msg"]
    assert (sorted(str(p) for p in root.rglob("*")), ledger_of(root)) == before
