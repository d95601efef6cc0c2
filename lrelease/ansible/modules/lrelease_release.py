#!/usr/bin/python
# Copyright lrelease contributors
# Apache-2.0
"""lrelease_release: the release layout of a deploy root (see docs/design.md)."""

DOCUMENTATION = r"""
module: lrelease_release
short_description: Read, stage, switch or prune the releases of a deploy root
description:
  - "Layout: C(releases/<build>/) (with C(.lrelease-manifest.json)), C(current -> releases/<build>)
    (relative symlink), C(.lrelease/previous)."
  - C(info) reads the layout and changes nothing.
  - C(staged) verifies an artifact already on the host against O(sha256), unpacks it into
    C(releases/.<build>.partial), writes the manifest there and renames the directory to
    C(releases/<build>) in one step, so C(releases/<build>) is either absent or complete.
    An existing release with the same sha256 is kept (no change); a different one is replaced
    unless it is C(current).
  - C(current) records the current build in C(.lrelease/previous) (or O(previous) when given),
    then points C(current) at C(releases/<build>) with a new symlink renamed over the old one
    (atomic), then appends the O(ledger) line to C(.lrelease/ledger.jsonl) when given. If the
    ledger cannot be written the switch is undone, so no switch goes unrecorded. Nothing changes
    when C(current) already is the build.
  - C(pruned) removes all but the O(keep) newest releases, never the current or the previous
    one, and leftovers of interrupted staging.
options:
  root: {description: Deploy root (absolute)., type: path, required: true}
  state: {description: What to do., type: str, choices: [info, staged, current, pruned], default: info}
  build:
    description:
      - "Build id: required for C(staged); for C(current) the target, and when omitted the build in
        C(.lrelease/previous) (a rollback); optional for C(info)."
    type: str
  src: {description: "C(staged): path of the artifact (.tar.gz) on the host; not needed when the release is already staged.", type: path}
  artifact:
    description:
      - "C(staged): controller path of the artifact; the action plugin of the same name sends it to
        O(src) on the host in one transfer first."
    type: path
  restart:
    description:
      - "C(current): a command (argv list, no shell, like M(ansible.builtin.command)) run on the host once
        C(current) has moved or a switch is resumed (changed), e.g. C([/srv/app/bin/app-service, restart]):
        a switch and a restart in one module run. Its outcome is returned as C(restart), not judged: the
        switch stands either way."
    type: list
    elements: str
  sha256: {description: "C(staged): expected sha256 of the artifact (hex). C(current): when set, the release's manifest must carry it.", type: str}
  manifest: {description: "C(staged): extra manifest fields (C(commit), C(who), C(rollout_id)).", type: dict, default: {}}
  remove_src: {description: "C(staged): delete O(src) once the release is in place.", type: bool, default: true}
  previous: {description: "C(current): value for C(.lrelease/previous) (empty removes it); default the build that was current.", type: str}
  only_if_current:
    description:
      - "C(current): change nothing unless C(current) is this build (rollback of a failed build), or an
        earlier run moved the host off it and died before the restart (C(.lrelease/pending)): then the
        result is C(resumed), as for a switch."
    type: str
  keep: {description: "C(pruned): how many of the newest releases to keep.", type: int, default: 5}
  ledger:
    description:
      - "C(current): ledger line to append: C(event) (switch, rollback, switch-reverted), C(build)
        (default O(build); for C(rollback) the build left), C(who), C(rollout_id); C(from), C(to) and C(time) (ISO 8601 UTC) are added."
    type: dict
"""

RETURN = r"""
current: {description: Build C(current) points at (after the change), or null., type: str, returned: always}
previous: {description: Content of C(.lrelease/previous), or null., type: str, returned: always}
releases: {description: "Build -> C({mtime, manifest, sha256}); C(manifest) is null when missing or unreadable.", type: dict, returned: always}
order: {description: Builds, newest first., type: list, returned: always}
release: {description: "The entry of O(build) in C(releases), or null.", type: dict, returned: when build is given}
from: {description: "C(current): the build that was current before.", type: str, returned: state=current}
previous_before: {description: "C(current): C(.lrelease/previous) before (to undo a switch).", type: str, returned: state=current}
entry: {description: "C(current): the ledger line written.", type: dict, returned: when a ledger line was written}
resumed:
  description:
    - "C(current): true when C(current) already was the target but C(.lrelease/pending) says an earlier run
      switched it and died before the restart (also with O(only_if_current), when that run moved the host off
      that build): reported as changed, without a new ledger line, so the restart and checks run again."
  type: bool
  returned: when an earlier switch is resumed
restart: {description: "C(current) with O(restart): C(cmd), C(rc), C(stdout), C(stderr) of the command.", type: dict, returned: when current moved (or a switch was resumed) and restart was given}
removed: {description: "C(pruned): what was removed.", type: list, returned: state=pruned}
"""

import hashlib
import json
import os
import re
import shutil
import tarfile
import time

from ansible.module_utils.basic import AnsibleModule

BUILD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
MANIFEST = ".lrelease-manifest.json"


class LayoutError(Exception):
    pass


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_text(path):
    try:
        with open(path) as fh:
            return fh.read().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def current_build(root):
    try:
        target = os.readlink(os.path.join(root, "current"))
    except (FileNotFoundError, OSError):
        return None
    return os.path.basename(target.rstrip("/")) or None


def read_manifest(path):
    try:
        with open(os.path.join(path, MANIFEST)) as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def info(root, build=None):
    rel_dir = os.path.join(root, "releases")
    releases, partials = {}, []
    if os.path.isdir(rel_dir):
        for entry in os.scandir(rel_dir):
            if entry.name.startswith("."):
                if entry.name.endswith(".partial") or ".old-" in entry.name:
                    partials.append(entry.name)
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            manifest = read_manifest(entry.path)
            releases[entry.name] = {
                "mtime": entry.stat(follow_symlinks=False).st_mtime,
                "manifest": manifest,
                "sha256": (manifest or {}).get("sha256"),
            }
    order = sorted(releases, key=lambda b: (releases[b]["mtime"], b), reverse=True)
    result = {
        "root": root,
        "current": current_build(root),
        "previous": read_text(os.path.join(root, ".lrelease", "previous")),
        "releases": releases,
        "order": order,
        "partials": sorted(partials),
    }
    if build is not None:
        result["release"] = releases.get(build)
    return result


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checked_members(tar, dest):
    """Refuse what a release archive never needs: absolute or escaping paths, devices, links out."""
    dest = os.path.realpath(dest)
    members = []
    for m in tar.getmembers():
        name = os.path.normpath(m.name)
        if m.name.startswith("/") or name == ".." or name.startswith("../"):
            raise LayoutError("archive member %r is outside the release directory" % m.name)
        if m.isdev():
            raise LayoutError("archive member %r is a device or fifo" % m.name)
        if m.issym() or m.islnk():
            base = os.path.dirname(os.path.join(dest, name)) if m.issym() else dest
            target = os.path.normpath(os.path.join(base, m.linkname))
            if os.path.isabs(m.linkname) or not (target + os.sep).startswith(dest + os.sep):
                raise LayoutError("archive link %r points outside the release directory" % m.name)
        m.mode &= 0o755  # no setuid/setgid/sticky, no group/other write
        m.uid, m.gid, m.uname, m.gname = os.geteuid(), os.getegid(), "", ""
        members.append(m)
    return members


def write_atomic(path, text):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def stage(module, root, build, src, sha256, extra, remove_src):
    state = info(root, build)
    existing = state["release"]
    if existing and existing["sha256"] == sha256:
        if remove_src and src and os.path.exists(src) and not module.check_mode:
            os.unlink(src)
        return dict(state, changed=False, msg="releases/%s is already staged with this sha256" % build)
    if existing and state["current"] == build:
        raise LayoutError("releases/%s is live (current) with sha256 %s, not %s: refusing to replace a live "
                          "release; deploy it under a new build id" % (build, existing["sha256"], sha256))
    if module.check_mode:  # nothing was sent in check mode: report what would happen
        return dict(state, changed=True, msg="releases/%s would be staged" % build)
    if not src or not os.path.isfile(src):
        raise LayoutError("releases/%s is not staged and no artifact was given (src=%s)" % (build, src))
    actual = sha256_of(src)
    if actual != sha256:
        raise LayoutError("artifact %s has sha256 %s, expected %s" % (src, actual, sha256))
    rel_dir = os.path.join(root, "releases")
    os.makedirs(rel_dir, exist_ok=True)
    partial = os.path.join(rel_dir, ".%s.partial" % build)
    final = os.path.join(rel_dir, build)
    shutil.rmtree(partial, ignore_errors=True)
    os.mkdir(partial, 0o755)
    with tarfile.open(src) as tar:
        members = checked_members(tar, partial)
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(partial, members=members, numeric_owner=True, **kwargs)
    manifest = {
        "build": build,
        "sha256": sha256,
        "commit": extra.get("commit") or None,
        "staged_at": utc_now(),
        "who": extra.get("who") or None,
        "rollout_id": extra.get("rollout_id") or None,
    }
    write_atomic(os.path.join(partial, MANIFEST), json.dumps(manifest, sort_keys=True) + "\n")
    if existing:  # a different, not-live release under the same name: swap it out
        old = os.path.join(rel_dir, ".%s.old-%d" % (build, os.getpid()))
        os.rename(final, old)
        os.rename(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, final)
    if remove_src:
        os.unlink(src)
    return dict(info(root, build), changed=True, manifest=manifest, msg="releases/%s staged" % build)


def write_previous(root, value):
    path = os.path.join(root, ".lrelease", "previous")
    if value:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, value + "\n")
    elif os.path.lexists(path):
        os.unlink(path)


def pending_path(root):
    return os.path.join(root, ".lrelease", "pending")


def read_pending(root):
    try:
        with open(pending_path(root)) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def write_pending(root, build):
    os.makedirs(os.path.dirname(pending_path(root)), exist_ok=True)
    write_atomic(pending_path(root), build + "\n")


LEDGER_EVENTS = ("switch", "rollback", "switch-reverted")


def append_ledger(root, entry):
    directory = os.path.join(root, ".lrelease")
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, "ledger.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:  # one write(2) with O_APPEND: concurrent writers never interleave within a line
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def point_current(root, build):
    link = os.path.join(root, "current")
    tmp = os.path.join(root, ".current.lrelease-tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink("releases/%s" % build, tmp)
    os.replace(tmp, link)  # rename(2): readers see the old link or the new one, never none


def resumable_rollback(root, state, build, only_if_current):
    """`current` is no longer on the failed build because an earlier run moved it off (to the
    build it names, when given), and .lrelease/pending says that build is not running yet."""
    cur = state["current"]
    return (bool(cur) and state["previous"] == only_if_current and build in (None, cur)
            and read_pending(root) == cur)


def switch(module, root, build, previous, ledger, sha256, only_if_current=None):
    if build is None or only_if_current is not None:
        state = info(root)
        if only_if_current is not None and state["current"] != only_if_current:
            if resumable_rollback(root, state, build, only_if_current):
                # An earlier run moved `current` off the failed build but died before the service
                # ran the build it went to: report it again, as a resumed switch, so it is restarted.
                return dict(state, changed=True, resumed=True, **{"from": state["previous"], "previous_before": state["previous"]})
            return dict(state, changed=False, unchanged_because="current is %s, not %s" % (state["current"], only_if_current),
                        **{"from": state["current"], "previous_before": state["previous"]})
        if build is None:  # back to the build recorded before the last switch
            build = state["previous"]
            if not build:
                raise LayoutError("no previous build is recorded (.lrelease/previous); name the target build")
            if build == state["current"]:
                raise LayoutError(".lrelease/previous is %s, which is current already; name the target build" % build)
    before = info(root, build)
    if before["release"] is None and module.check_mode and build != before["current"]:
        # a check-mode run staged nothing, so the build is legitimately missing here
        return dict(before, changed=True, current=build, msg="releases/%s is not staged yet" % build,
                    **{"from": before["current"], "previous_before": before["previous"]})
    if before["release"] is None:
        raise LayoutError("releases/%s is not staged on this host (releases: %s); nothing was changed"
                          % (build, ", ".join(before["order"]) or "none"))
    if sha256 and before["release"]["sha256"] != sha256:
        raise LayoutError("releases/%s on this host has sha256 %s, not %s; nothing was changed"
                          % (build, before["release"]["sha256"], sha256))
    cur = before["current"]
    common = {"from": cur, "previous_before": before["previous"]}
    if cur == build and read_pending(root) == build:
        # An earlier run switched `current` but died before the service ran the build:
        # report the switch again (no new ledger line) so the restart and checks run.
        return dict(before, changed=True, resumed=True, **{"from": before["previous"], "previous_before": before["previous"]})
    if cur == build:
        return dict(before, changed=False, **common)
    if module.check_mode:
        return dict(before, changed=True, current=build, **common)
    old_previous = before["previous"]
    entry = None
    if ledger:
        entry = {
            "event": ledger["event"],
            # the build the event is about: the one deployed, or for a rollback the one left
            "build": ledger.get("build") or (cur if ledger["event"] == "rollback" else build),
            "from": cur,
            "to": build,
            "time": utc_now(),
            "who": ledger.get("who") or None,
            "rollout_id": ledger.get("rollout_id") or None,
        }
    write_previous(root, cur if previous is None else previous)
    write_pending(root, build)  # cleared by the role once the service runs the build
    try:
        point_current(root, build)
    except OSError:
        write_previous(root, old_previous)
        raise
    if entry is not None:
        try:
            append_ledger(root, entry)
        except OSError as exc:  # undo: a switch must never go unrecorded
            if cur:
                point_current(root, cur)
            write_previous(root, old_previous)
            raise LayoutError("cannot write the ledger, switch undone: %s" % exc)
    result = dict(info(root, build), changed=True, **common)
    if entry is not None:
        result["entry"] = entry
    return result


def restart_service(module, argv):
    """Run the restart command after a switch; return its outcome (the caller judges it)."""
    try:
        rc, out, err = module.run_command(argv, handle_exceptions=False)
    except OSError as exc:
        rc, out, err = (127 if isinstance(exc, FileNotFoundError) else 126), "", str(exc)
    return {"cmd": argv, "rc": rc, "stdout": out.strip(), "stderr": err.strip()}


def prune(module, root, keep):
    state = info(root)
    protected = {state["current"], state["previous"]}
    keepers = set(state["order"][:keep]) | protected
    removed = [b for b in state["order"] if b not in keepers] + state["partials"]
    if not module.check_mode:
        for name in removed:
            shutil.rmtree(os.path.join(root, "releases", name))
    after = info(root) if removed and not module.check_mode else state
    return dict(after, changed=bool(removed), removed=removed)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            state=dict(type="str", choices=["info", "staged", "current", "pruned"], default="info"),
            build=dict(type="str"),
            src=dict(type="path"),
            sha256=dict(type="str"),
            manifest=dict(type="dict", default={}),
            remove_src=dict(type="bool", default=True),
            previous=dict(type="str"),
            keep=dict(type="int", default=5),
            ledger=dict(type="dict"),
            only_if_current=dict(type="str"),
            restart=dict(type="list", elements="str"),
        ),
        required_if=[
            ("state", "staged", ("build", "sha256")),
        ],
        supports_check_mode=True,
    )
    p = module.params
    root = p["root"].rstrip("/") or "/"
    if not os.path.isabs(root) or root == "/":
        module.fail_json(msg="root must be an absolute path other than /, got %r" % p["root"])
    build = p["build"]
    if build is not None and not BUILD_RE.match(build):
        module.fail_json(msg="build must match %s, got %r" % (BUILD_RE.pattern, build))
    if p["restart"] is not None and p["state"] != "current":
        module.fail_json(msg="restart goes with state=current, got state=%s" % p["state"])
    if p["previous"] and not BUILD_RE.match(p["previous"]):
        module.fail_json(msg="previous must be a build id, got %r" % p["previous"])
    try:
        if p["state"] == "staged":
            sha = (p["sha256"] or "").lower()
            if not re.match(r"^[0-9a-f]{64}$", sha):
                raise LayoutError("sha256 must be 64 hex digits, got %r" % p["sha256"])
            result = stage(module, root, build, p["src"], sha, p["manifest"], p["remove_src"])
        elif p["state"] == "current":
            ledger = p["ledger"]
            if ledger is not None and ledger.get("event") not in LEDGER_EVENTS:
                raise LayoutError("ledger.event must be one of %s, got %r" % (", ".join(LEDGER_EVENTS), ledger.get("event")))
            sha = (p["sha256"] or "").lower() or None
            result = switch(module, root, build, p["previous"], ledger, sha, p["only_if_current"])
            if p["restart"] and result["changed"] and not module.check_mode:
                result["restart"] = restart_service(module, p["restart"])
        elif p["state"] == "pruned":
            if p["keep"] < 1:
                raise LayoutError("keep must be at least 1, got %d" % p["keep"])
            result = prune(module, root, p["keep"])
        else:
            result = dict(info(root, build), changed=False)
    except (LayoutError, OSError, tarfile.TarError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
