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
  - C(staged) verifies an artifact already on the host against O(sha256), unpacks it (O(format),
    O(strip_components)) into
    C(releases/.<build>.partial), writes the manifest there and renames the directory to
    C(releases/<build>) in one step, so C(releases/<build>) is either absent or complete.
    An existing release with the same sha256 is kept (no change); a different one is replaced
    unless it is C(current).
  - "C(current) first writes the whole switch to C(.lrelease/pending) (JSON, renamed into place: C(id),
    C(from), C(to), C(previous_before), C(previous_after), C(entry)), then records C(.lrelease/previous)
    (the build that was current, or O(previous) when given), points C(current) at C(releases/<build>)
    with a new symlink renamed over the old one (atomic), and appends the O(ledger) line to
    C(.lrelease/ledger.jsonl) when given. Every step checks before it acts, so a run that finds an
    unfinished switch in C(.lrelease/pending) (an earlier run was killed) completes it first, writing
    its ledger line only if that line's C(id) is not in the ledger yet. If a step fails the switch is
    undone (C(current) and C(.lrelease/previous) as before; no C(current) again on a first install), so
    no switch goes unrecorded. Nothing changes when C(current) already is the build."
  - "C(.lrelease/pending) stays after the switch as the marker 'switched, not yet restarted': the roles
    remove it once the service runs the build. A plain build id in it (written by older versions) is
    read too."
  - "C(current) with O(undo): undo roll-outs from the host's own ledger. The first C(switch) line of
    one of those roll-outs gives the target (its C(from)); the host moves there only when C(current)
    is a build those roll-outs brought (C(to) of their C(switch) lines), with a C(rollback) line that
    carries C(undoes), and C(.lrelease/previous) goes back to what it was before that first switch
    (the line's C(previous); removed when the line has none). Unchanged, with C(unchanged_because),
    when no such line exists, when the host is on the target already, or when it was moved to another
    build since, or when the roll-out was the host's first install (no earlier build: RV(first_install))."
  - "Test-only: the environment variable C(LRELEASE_TEST_KILL_AFTER=<step>) (intent, previous, current,
    ledger, restart; shared, staging's first shared path linked in the partial release; or prune, a prune's
    first release renamed aside, not yet removed), or once the file C(.lrelease/test-kill-after) holding a
    step's name, makes the module exit at once after that step, to prove the steps restartable. Never set
    either in production."
  - C(pruned) removes all but the O(keep) newest releases, never the current or the previous
    one (nor, while a switch is unsettled, any build its revert needs), and leftovers of interrupted staging
    or pruning. Each release goes out of C(releases/) by an atomic rename before it is removed, so a killed
    prune leaves a leftover, never a release missing files.
options:
  root: {description: Deploy root (absolute)., type: path, required: true}
  state: {description: What to do., type: str, choices: [info, staged, current, pruned], default: info}
  build:
    description:
      - "Build id: required for C(staged); for C(current) the target, and when omitted the build in
        C(.lrelease/previous) (a rollback); optional for C(info)."
    type: str
  src: {description: "C(staged): path of the artifact on the host; not needed when the release is already staged.", type: path}
  format:
    description:
      - "C(staged): what the artifact is: a C(tar.gz), a C(tar.zst) (decompressed by the C(zstd) command on the
        host), a C(zip), or a C(binary), a single executable installed as C(releases/<build>/<binary_name>),
        mode 0755. Archives are unpacked safely: a member with an absolute or C(..) path, a link pointing
        outside the release, a device or a fifo fails the step and leaves nothing."
    type: str
    choices: [tar.gz, tar.zst, zip, binary]
    default: tar.gz
  strip_components:
    description:
      - "C(staged), archives: leading directories dropped from every member, C(0) to C(8), or C(auto):
        an archive whose members all lie in one top directory (and holds nothing else at the top) is
        unpacked without it (C(shop-1.0.0/bin/shop) becomes C(releases/<build>/bin/shop)), any other as is.
        A file lying above the stripped directories is refused."
    type: raw
    default: auto
  binary_name: {description: "C(staged) with O(format=binary): the executable's file name in C(releases/<build>/).", type: str}
  artifact:
    description:
      - "C(staged): controller path of the artifact; the action plugin of the same name sends it to
        O(src) on the host in one transfer first."
    type: path
  restart:
    description:
      - "C(current): a command (argv list, no shell, like M(ansible.builtin.command)) run on the host once
        C(current) has moved or a switch is resumed (changed), e.g. C([/srv/app/bin/app-service, restart]):
        a switch and a restart in one module run. Its outcome is returned as C(restart); when it exits
        non-zero the task fails (C(msg): C(switched to B, but 'CMD' exited N: its output), or C(rolled back
        to B, ...) for a rollback), the switch standing: the result still says C(changed), C(current) and C(from), for
        the caller to put the host back."
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
  undo:
    description:
      - "C(current): roll-out ids to undo (a roll-out and its resumes), decided from the host's own
        C(.lrelease/ledger.jsonl) (see the description). Its O(ledger) line is a C(rollback) (C(event) may be
        omitted), with C(build) the build left and C(undoes) the roll-out matched. In check mode nothing
        changes and C(target) and C(from) say what would happen."
      - Mutually exclusive with O(build), O(only_if_current) and O(previous).
    type: list
    elements: str
  keep:
    description:
      - "C(pruned): how many of the newest releases to keep (default 5)."
      - "C(current): when given, the same module run then prunes as C(pruned) does (after the restart, when
        O(restart) is given and it exited 0; never with O(undo) or O(only_if_current)): the releases it removed
        are returned as C(removed). One module run per host for a roll-out's switch and its cleanup."
    type: int
  shared:
    description:
      - "C(staged): paths kept across releases, C({dirs: [log], files: [.env]}) (relative to the release). Each is
        linked (relative symlink) to C(<root>/shared/<path>) in the release being unpacked, before it is renamed
        into place, replacing what the artifact ships there; a missing shared directory is made, a missing shared
        file created empty (mode 0640). A release already staged and not current gets its missing links."
    type: dict
  ledger:
    description:
      - "C(current): ledger line to append: C(event) (switch, rollback, switch-reverted), C(build)
        (default O(build); for C(rollback) the build left), C(who), C(rollout_id); C(id) (unique), C(from), C(to),
        C(previous) (C(.lrelease/previous) before the switch), C(time) (ISO 8601 UTC) and, with O(undo),
        C(undoes) are added."
    type: dict
"""

EXAMPLES = r"""
- name: Read the host's releases
  lrelease.release.lrelease_release:
    root: /srv/shop
    build: "2026.11.30-1"
  register: releases

- name: Stage a build from the controller (sent straight to src, sha256 checked on the host)
  lrelease.release.lrelease_release:
    root: /srv/shop
    state: staged
    build: "2026.11.30-1"
    artifact: /builds/shop-2026.11.30-1.tar.gz
    src: /srv/shop/.lrelease/incoming/shop-2026.11.30-1.tar.gz
    sha256: "{{ lookup('ansible.builtin.file', '/builds/shop-2026.11.30-1.tar.gz.sha256').split() | first }}"

- name: Switch to it (atomic rename of the current symlink, with a ledger line)
  lrelease.release.lrelease_release:
    root: /srv/shop
    state: current
    build: "2026.11.30-1"
    ledger:
      event: switch
      who: release-bot
"""

RETURN = r"""
current: {description: "Build C(current) points at (after the change), or null.", type: str, returned: always}
current_changed_at: {description: "When C(current) last changed (seconds since the epoch, the host's clock; the symlink's own mtime), or null. The APM gate's window before a switch starts no earlier.", type: float, returned: always}
previous: {description: "Content of C(.lrelease/previous), or null.", type: str, returned: always}
releases: {description: "Build -> C({mtime, manifest, sha256}); C(manifest) is null when missing or unreadable.", type: dict, returned: always}
order: {description: "Builds, newest first.", type: list, returned: always}
release: {description: "The entry of O(build) in C(releases), or null.", type: dict, returned: when build is given}
from: {description: "C(current): the build that was current before.", type: str, returned: state=current}
previous_before: {description: "C(current): C(.lrelease/previous) before (to undo a switch).", type: str, returned: state=current}
entry: {description: "C(current): the ledger line written.", type: dict, returned: when a ledger line was written}
unchanged_because: {description: "C(current): why nothing was switched.", type: str, returned: "when O(only_if_current) or O(undo) left the host alone"}
target: {description: "C(current) with O(undo): the build moved to, or that would be moved to (check mode); null when the host was not switched by those roll-outs.", type: str, returned: with undo}
undone: {description: "C(current) with O(undo): the roll-out id whose first switch gave the target, or null.", type: str, returned: with undo}
first_install:
  description:
    - "C(current) with O(undo): true when the roll-out undone was this host's first install (its first switch
      came from no build): nothing changes and there is nothing to go back to; the rollback role then stops
      the app and leaves the host drained."
  type: bool
  returned: with undo
completed:
  description:
    - "C(current): the C(id) of an unfinished switch (C(.lrelease/pending)) that this run completed before
      doing what was asked; the result is then changed."
  type: str
  returned: when an earlier run's switch was completed
resumed:
  description:
    - "C(current): true when C(current) already was the target but C(.lrelease/pending) says an earlier run
      switched it and died before the restart (also with O(only_if_current), when that run moved the host off
      that build, and with O(undo), when the host is on the target): reported as changed, without a new ledger
      line, so the restart and checks run again. C(from) and C(previous_before) are then those of that switch."
  type: bool
  returned: when an earlier switch is resumed
restart: {description: "C(current) with O(restart): C(cmd), C(rc), C(stdout), C(stderr) of the command.", type: dict, returned: when current moved (or a switch was resumed) and restart was given}
removed: {description: "C(pruned), or C(current) with O(keep): what was removed.", type: list, returned: state=pruned, or current with keep}
linked: {description: "C(staged) with O(shared), release already staged: the paths whose link was made.", type: list, returned: when links were checked on a staged release}
"""

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
import uuid
import zipfile

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


def current_changed_at(root):
    """When ``current`` last changed (seconds since the epoch, the host's clock): the symlink's own
    mtime, set when a switch created it before renaming it into place; None without one."""
    try:
        return os.lstat(os.path.join(root, "current")).st_mtime
    except OSError:
        return None


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
        "current_changed_at": current_changed_at(root),
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


FORMATS = ("tar.gz", "tar.zst", "zip", "binary")
MAX_STRIP = 8
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BINARY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,127}$")


def strip_setting(value):
    """``strip_components`` as given (``auto``, or 0..8 as a number or digits) -> "auto" or an int."""
    text = str(value).strip()
    if text == "auto":
        return "auto"
    if re.fullmatch(r"[0-9]", text) and int(text) <= MAX_STRIP and not isinstance(value, bool):
        return int(text)
    raise LayoutError("strip_components must be auto or 0..%d, got %r" % (MAX_STRIP, value))


def member_parts(name):
    """The path components of an archive member, normalised; refused when absolute or escaping."""
    norm = os.path.normpath(name)
    if name.startswith("/") or norm == ".." or norm.startswith("../"):
        raise LayoutError("archive member %r is outside the release directory" % name)
    return [] if norm == "." else norm.split("/")


def leading_dirs(entries, strip):
    """How many leading directories to drop: ``strip`` itself, or for "auto" 1 when every member
    lies under one top directory (and that directory is all there is at the top), else 0.
    ``entries`` are (parts, is_dir)."""
    if strip != "auto":
        return strip
    tops = {parts[0] for parts, _ in entries if parts}
    if len(tops) != 1:
        return 0
    nested = any(len(parts) > 1 for parts, _ in entries)
    only_dir = all(is_dir for parts, is_dir in entries if len(parts) == 1)
    return 1 if nested and only_dir else 0


def stripped(parts, is_dir, n, name):
    """The member's path once ``n`` leading directories are dropped; None for one of those
    directories themselves. A file that lies above them would be lost: refused."""
    if len(parts) > n:
        return "/".join(parts[n:])
    if is_dir or not parts:
        return None
    raise LayoutError("archive member %r lies above the %d leading director%s to strip (strip_components)"
                      % (name, n, "y" if n == 1 else "ies"))


def inside(dest, path):
    """``path`` resolved (symlinks already unpacked included) stays in ``dest``."""
    real = os.path.realpath(path)
    return real == dest or real.startswith(dest + os.sep)


def check_link(dest, name, linkname):
    """A symlink's target must be relative and resolve inside the release."""
    target = os.path.join(dest, os.path.dirname(name), linkname)
    if os.path.isabs(linkname) or not inside(dest, target):
        raise LayoutError("archive link %r points outside the release directory" % name)


def tar_plan(tar, dest, strip):
    """The members to unpack, renamed by the strip; refuses devices, fifos, escaping paths and links."""
    members = tar.getmembers()
    parts = [member_parts(m.name) for m in members]
    n = leading_dirs(list(zip(parts, (m.isdir() for m in members))), strip)
    out = []
    for m, p in zip(members, parts):
        if m.isdev():
            raise LayoutError("archive member %r is a device or fifo" % m.name)
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise LayoutError("archive member %r is not a file, directory or link" % m.name)
        name = stripped(p, m.isdir(), n, m.name)
        if name is None:
            continue
        if m.islnk():  # a hard link names another member: stripped the same way
            target = stripped(member_parts(m.linkname), False, n, m.linkname)
            m.linkname = target
        elif m.issym():
            check_link(dest, name, m.linkname)
        m.name = name
        m.mode &= 0o755  # no setuid/setgid/sticky, no group/other write
        if m.isdir():
            m.mode |= 0o700  # the deploying user can fill it, and prune it later
        m.uid, m.gid, m.uname, m.gname = os.geteuid(), os.getegid(), "", ""
        out.append(m)
    return out


def landing(dest, m):
    """Check a tar member against what has landed before it (a link unpacked earlier may lead out)."""
    target = os.path.join(dest, m.name)
    if not inside(dest, os.path.dirname(target)):
        raise LayoutError("archive member %r is outside the release directory" % m.name)
    if m.issym():
        check_link(dest, m.name, m.linkname)
    elif m.islnk() and not inside(dest, os.path.join(dest, m.linkname)):
        raise LayoutError("archive link %r points outside the release directory" % m.name)
    if not m.isdir() and os.path.islink(target):
        os.unlink(target)  # never write through a link


def unpack_tar(path, dest, strip, mode="r:gz"):
    with tarfile.open(path, mode) as tar:
        members = tar_plan(tar, dest, strip)
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python's own checks, too
        for m in members:  # one by one, each checked against the files already there
            landing(dest, m)
            tar.extract(m, dest, numeric_owner=True, **kwargs)
    return sum(1 for m in members if not m.isdir())


def unpack_zst(src, dest, strip):
    """A zstd-compressed tar: decompressed by the host's ``zstd`` next to ``src``, then as a tar."""
    zstd = shutil.which("zstd")
    if zstd is None:
        raise LayoutError("a tar.zst artifact needs the zstd command on the host (Debian/Ubuntu package "
                          "zstd); it is not on PATH")
    with open(src, "rb") as fh:
        if fh.read(4) != ZSTD_MAGIC:  # zstd -d would also read a gzip or xz file
            raise LayoutError("artifact is not a tar.zst archive (artifacts.format): no zstd frame")
    plain = src + ".tar"
    try:
        proc = subprocess.run([zstd, "-d", "-q", "-f", "-o", plain, src], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LayoutError("artifact is not a tar.zst archive (zstd: %s)" % (proc.stderr.strip() or proc.returncode))
        return unpack_tar(plain, dest, strip, "r:")
    finally:
        if os.path.lexists(plain):
            os.unlink(plain)


def unpack_zip(src, dest, strip):
    with zipfile.ZipFile(src) as zf:
        infos = zf.infolist()
        parts = [member_parts(i.filename) for i in infos]
        n = leading_dirs(list(zip(parts, (i.is_dir() for i in infos))), strip)
        count = 0
        for info, p in zip(infos, parts):
            name = stripped(p, info.is_dir(), n, info.filename)
            if name is None:
                continue
            unix = info.external_attr >> 16
            kind = stat.S_IFMT(unix)
            target = os.path.join(dest, name)
            if not inside(dest, os.path.dirname(target)):
                raise LayoutError("archive member %r is outside the release directory" % info.filename)
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            if kind == stat.S_IFLNK:
                linkname = zf.read(info).decode("utf-8")
                check_link(dest, name, linkname)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if os.path.lexists(target):
                    os.unlink(target)
                os.symlink(linkname, target)
            elif kind in (0, stat.S_IFREG):  # 0: a zip made without Unix modes
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if os.path.islink(target):
                    os.unlink(target)  # never write through a link
                with zf.open(info) as fin, open(target, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                os.chmod(target, (unix & 0o755) or 0o644)
            else:
                raise LayoutError("archive member %r is a device or fifo" % info.filename)
            count += 1
    return count


def install_binary(src, dest, name):
    if not name or not BINARY_NAME_RE.match(name) or name in (".", "..", MANIFEST):
        raise LayoutError("binary_name must be a file name (letters, digits, . _ + @ -), got %r" % name)
    shutil.copyfile(src, os.path.join(dest, name))
    os.chmod(os.path.join(dest, name), 0o755)
    return 1


def unpack(src, dest, fmt, strip="auto", binary_name=None):
    """Put the artifact's files into the empty directory ``dest``: an archive (tar.gz, tar.zst, zip)
    without its ``strip`` leading directories, or a single executable (binary) named ``binary_name``.
    Nothing may land outside ``dest``: absolute or ``..`` paths, links pointing out, devices and
    fifos are refused (LayoutError), as is an archive without a file. Returns the files unpacked."""
    if fmt not in FORMATS:
        raise LayoutError("format must be one of %s, got %r" % (", ".join(FORMATS), fmt))
    dest = os.path.realpath(dest)
    if fmt == "binary":
        return install_binary(src, dest, binary_name)
    strip = strip_setting(strip)
    try:
        if fmt == "zip":
            count = unpack_zip(src, dest, strip)
        elif fmt == "tar.zst":
            count = unpack_zst(src, dest, strip)
        else:
            count = unpack_tar(src, dest, strip)
    except getattr(tarfile, "FilterError", ()) as exc:  # the data filter, as a member lands
        raise LayoutError("archive member refused: %s (outside the release directory, or not a plain file)" % exc)
    except (tarfile.TarError, zipfile.BadZipFile) as exc:
        raise LayoutError("artifact is not a %s archive (artifacts.format): %s" % (fmt, exc))
    if count == 0:
        raise LayoutError("the artifact holds no files%s" % (" once its leading directories are stripped"
                                                           if strip not in ("auto", 0) else ""))
    return count


def write_atomic(path, text):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def stage(module, root, build, src, sha256, extra, remove_src, fmt="tar.gz", strip="auto", binary_name=None,
          shared=None):
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
    try:
        unpack(src, partial, fmt, strip, binary_name)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # nothing half-unpacked stays behind
        raise
    link_shared(root, partial, shared)  # before the rename: a release is never there unlinked
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


SHARED_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._+@-]{1,255}$")


def shared_parts(path):
    """The segments of a shared path: relative to the release, safe characters, no . or .. segment."""
    parts = path.rstrip("/").split("/") if isinstance(path, str) else []
    if (not parts or path.startswith("/") or parts[0] == MANIFEST
            or not all(SHARED_SEGMENT_RE.match(p) and p not in (".", "..") for p in parts)):
        raise LayoutError("shared path %r must be relative to the release: segments of letters, digits and "
                          ". _ + @ - separated by /, no . or .. segment" % (path,))
    return parts


def real_dirs(base, parts):
    """base/parts... as real directories inside the release (made when missing): a symlink there
    (the artifact may ship one) is refused rather than followed out of the release."""
    cur = base
    for part in parts:
        cur = os.path.join(cur, part)
        if os.path.islink(cur) or (os.path.lexists(cur) and not os.path.isdir(cur)):
            raise LayoutError("cannot link a shared path under %s: it is a symlink or a file in the release" % cur)
        if not os.path.lexists(cur):
            os.mkdir(cur, 0o755)
    return cur


def link_shared(root, release, shared):
    """Link each of ``shared`` (``{dirs, files}``, paths relative to the release) in ``release`` to
    ``<root>/shared/<path>``: a relative symlink, which replaces whatever the release ships there.
    A missing shared directory is made (mkdir -p), a missing shared file created empty (0640).
    Returns the paths whose link was (re)made; a link already right is left alone."""
    linked = []
    for kind in ("dirs", "files"):
        for path in (shared or {}).get(kind) or []:
            parts = shared_parts(path)
            target = os.path.join(root, "shared", *parts)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target) and kind == "dirs":
                os.mkdir(target, 0o755)
            elif not os.path.lexists(target):
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))
                os.chmod(target, 0o640)
            if not (os.path.isdir(target) if kind == "dirs" else os.path.isfile(target)):
                raise LayoutError("shared/%s exists but is not a %s" % (path, "directory" if kind == "dirs" else "file"))
            parent = real_dirs(release, parts[:-1])
            link = os.path.join(parent, parts[-1])
            rel = os.path.relpath(target, parent)
            if os.path.islink(link) and os.readlink(link) == rel:
                continue
            tmp = link + ".lrelease-link"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(rel, tmp)
            if os.path.isdir(link) and not os.path.islink(link):
                shutil.rmtree(link)  # the release ships this directory: the shared one replaces it
            os.rename(tmp, link)
            linked.append(path)
            step_done("shared")  # test-only: dies with the release half-linked (the others not yet)
    return linked


def write_previous(root, value):
    path = os.path.join(root, ".lrelease", "previous")
    if value:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, value + "\n")
    elif os.path.lexists(path):
        os.unlink(path)


# Test-only fault injection: with LRELEASE_TEST_KILL_AFTER=<step> in its environment the module
# dies (os._exit(137), as if SIGKILLed: no cleanup, no result) right after that step of a switch,
# so the tests can prove that a re-run completes every half-done switch. Steps, in order:
# intent (.lrelease/pending written), previous, current, ledger, restart; when a run finishes an
# earlier run's switch, only the steps it actually does count. One step of staging: shared (the
# first shared path linked into releases/.<build>.partial, before the others, the manifest and the
# rename). One of a prune (state=pruned, or current with keep): prune (the first release to go
# renamed out of releases/, not yet removed). Never set it outside the tests.
# On a host reached over SSH (the sandbox tests), where the environment does not travel, the file
# .lrelease/test-kill-after naming a step does the same once: it is removed before the exit.
KILL_AFTER_ENV = "LRELEASE_TEST_KILL_AFTER"
KILL_AFTER_FILE = "test-kill-after"
STEPS = ("intent", "previous", "current", "ledger", "restart")  # a switch's; staging's: "shared"; a prune's: "prune"
_kill_file = None  # set by main() for the deploy root in use


def step_done(name):
    if os.environ.get(KILL_AFTER_ENV) == name:
        os._exit(137)
    if _kill_file is not None and read_text(_kill_file) == name:
        os.unlink(_kill_file)
        os._exit(137)


def pending_path(root):
    return os.path.join(root, ".lrelease", "pending")


def checked_build(value, what):
    """A build id read back from the host's own files, or None; refused when it is not a build id."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not BUILD_RE.fullmatch(value):
        raise LayoutError("%s is not a build id: %r" % (what, value))
    return value


def read_intent(root):
    """.lrelease/pending: None, or the switch it records. This module writes the whole transition as
    JSON (`id`, `from`, `to`, `previous_before`, `previous_after`, `entry`); earlier versions wrote
    the bare build id (read as {"to": build, "legacy": True}: only the build switched to is known)."""
    path = pending_path(root)
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not text:
        return None
    if not text.startswith("{"):
        return {"to": checked_build(text, path), "legacy": True}
    try:
        intent = json.loads(text)
    except ValueError as exc:
        raise LayoutError("%s is not valid JSON (%s); check the host and remove it" % (path, exc))
    if (not isinstance(intent, dict) or not checked_build(intent.get("to"), path + " `to`")
            or not isinstance(intent.get("id"), str)):
        raise LayoutError("%s names no switch (`id`, `to`); check the host and remove it" % path)
    for key in ("from", "previous_before", "previous_after"):
        checked_build(intent.get(key), "%s `%s`" % (path, key))
    if intent.get("entry") is not None and not (isinstance(intent["entry"], dict) and intent["entry"].get("id")):
        raise LayoutError("%s: `entry` is not a ledger line with an `id`" % path)
    return intent


def write_pending(root, intent):
    os.makedirs(os.path.dirname(pending_path(root)), exist_ok=True)
    write_atomic(pending_path(root), json.dumps(intent, sort_keys=True) + "\n")


LEDGER_EVENTS = ("switch", "rollback", "switch-reverted")


def ledger_path(root):
    return os.path.join(root, ".lrelease", "ledger.jsonl")


def read_ledger(root):
    """The host's ledger lines, oldest first (a line that is not a JSON object is skipped)."""
    try:
        with open(ledger_path(root)) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def in_ledger(root, entry_id):
    return any(e.get("id") == entry_id for e in read_ledger(root))


def append_ledger(root, entry):
    os.makedirs(os.path.dirname(ledger_path(root)), exist_ok=True)
    fd = os.open(ledger_path(root), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:  # one write(2) with O_APPEND: concurrent writers never interleave within a line
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # a line cut short (disk full) stays apart
        os.write(fd, (("\n" if torn else "") + json.dumps(entry, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def point_current(root, build, staged=False):
    if staged and not os.path.isdir(os.path.join(root, "releases", build)):
        raise LayoutError("cannot point current at releases/%s: it is gone (%s names it); check the host, "
                          "then remove that file" % (build, pending_path(root)))
    link = os.path.join(root, "current")
    tmp = os.path.join(root, ".current.lrelease-tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink("releases/%s" % build, tmp)
    os.replace(tmp, link)  # rename(2): readers see the old link or the new one, never none


def complete(root, intent, fresh=False):
    """Do every step of a recorded switch that is not done yet (each step checks first, so a re-run
    after a kill at any point finishes it); returns whether anything changed. When a step fails the
    whole switch is undone (`current`, `.lrelease/previous` as before, no intent): a switch is
    either complete with its ledger line or did not happen."""
    to, entry, after = intent["to"], intent.get("entry"), intent.get("previous_after")
    steps = (
        ("previous", "write .lrelease/previous",
         lambda: read_text(os.path.join(root, ".lrelease", "previous")) != after, lambda: write_previous(root, after)),
        ("current", "move current", lambda: current_build(root) != to, lambda: point_current(root, to, staged=True)),
        ("ledger", "write the ledger", lambda: entry is not None and not in_ledger(root, entry["id"]),
         lambda: append_ledger(root, entry)),
    )
    changed = False
    for name, doing, needed, act in steps:
        try:
            did = needed()
            if did:
                act()
        except OSError as exc:  # undo: a switch must never go unrecorded
            undo_intent(root, intent)
            raise LayoutError("cannot %s, switch undone: %s" % (doing, exc))
        changed = changed or did
        if fresh or did:  # the test-only kill hook: after each step of a new switch, or one really done
            step_done(name)
    return changed


def undo_intent(root, intent):
    """Put back what the intent changed; the intent goes last, so a kill here is rolled forward."""
    link = os.path.join(root, "current")
    if intent.get("from"):
        point_current(root, intent["from"])
    elif os.path.lexists(link):  # a first install: there was no `current`
        os.unlink(link)
    write_previous(root, intent.get("previous_before"))
    os.unlink(pending_path(root))


def settle(module, root):
    """Finish a switch an earlier run recorded in .lrelease/pending but did not complete (roll
    forward; not in check mode). Returns (intent or None, whether this run changed the host)."""
    intent = read_intent(root)
    if intent is None or intent.get("legacy") or module.check_mode:
        return intent, False
    return intent, complete(root, intent)


def view(module, root, intent):
    """The layout as it is, or in check mode as it will be once the recorded switch is complete."""
    state = info(root)
    if module.check_mode and intent is not None and not intent.get("legacy"):
        state["current"], state["previous"] = intent["to"], intent.get("previous_after")
    return state


def ledger_view(module, root, intent):
    entries = read_ledger(root)
    entry = (intent or {}).get("entry")
    if module.check_mode and entry and not any(e.get("id") == entry["id"] for e in entries):
        entries.append(entry)
    return entries


def owed(state, intent):
    """A switch to the current build was done but its restart not yet settled (.lrelease/pending)."""
    return intent is not None and bool(state["current"]) and intent["to"] == state["current"]


def resumed(state, intent, **extra):
    """An earlier switch that still owes the restart, reported again as changed (the role restarts it)."""
    if intent.get("legacy"):  # only the build is known: the one before is at best .lrelease/previous
        before = {"from": state["previous"], "previous_before": state["previous"]}
    else:
        before = {"from": intent.get("from"), "previous_before": intent.get("previous_before")}
    return dict(state, changed=True, resumed=True, **dict(before, **extra))


def unchanged(state, because, **extra):
    result = dict(state, changed=False, **extra)
    if because:
        result["unchanged_because"] = because
    return result


def switch(module, root, build, previous, ledger, sha256, only_if_current=None, undo=None):
    """state=current: finish a switch an earlier run left half-done, then do what is asked."""
    intent, completed = settle(module, root)
    result = decide(module, root, intent, build, previous, ledger, sha256, only_if_current, undo)
    if completed:  # the host changed even if what was asked now needs nothing more
        result.update(changed=True, completed=intent["id"])
    return result


def decide(module, root, intent, build, previous, ledger, sha256, only_if_current, undo):
    state = view(module, root, intent)
    cur = state["current"]
    common = {"from": cur, "previous_before": state["previous"]}
    previous_after = cur if previous is None else (previous or None)
    extra = {}
    if undo is not None:
        plan = undo_plan(module, root, state, intent, undo)
        extra = {"target": plan["target"], "undone": plan["undone"], "first_install": plan.get("first_install", False)}
        if plan.get("because"):
            if owed(state, intent) and cur == plan["target"]:
                return resumed(state, intent, **extra)
            return unchanged(state, plan["because"], **dict(common, **extra))
        build, previous_after = plan["target"], plan["previous"]
        ledger = dict(ledger or {}, event="rollback", undoes=plan["undone"])
    elif only_if_current is not None and cur != only_if_current:
        if owed(state, intent) and build in (None, cur) and (
                state["previous"] if intent.get("legacy") else intent.get("from")) == only_if_current:
            # An earlier run moved `current` off the failed build but died before the service ran
            # the build it went to: report it again, as a resumed switch, so it is restarted.
            return resumed(state, intent)
        return unchanged(state, "current is %s, not %s" % (cur, only_if_current), **common)
    elif build is None:  # back to the build recorded before the last switch
        if only_if_current is None and owed(state, intent):  # that was done: its restart is owed
            return resumed(state, intent)
        build = state["previous"]
        if not build:
            raise LayoutError("no previous build is recorded (.lrelease/previous); name the target build")
        if build == cur:
            raise LayoutError(".lrelease/previous is %s, which is current already; name the target build" % build)
    release = state["releases"].get(build)
    if release is None and module.check_mode and build != cur and undo is None:
        # a check-mode run staged nothing, so the build is legitimately missing here
        return dict(state, changed=True, current=build, msg="releases/%s is not staged yet" % build, **common)
    if release is None:
        raise LayoutError("releases/%s is not staged on this host (releases: %s); nothing was changed"
                          % (build, ", ".join(state["order"]) or "none"))
    if sha256 and release["sha256"] != sha256:
        raise LayoutError("releases/%s on this host has sha256 %s, not %s; nothing was changed"
                          % (build, release["sha256"], sha256))
    if cur == build and owed(state, intent):
        # An earlier run switched `current` but died before the service ran the build:
        # report the switch again (no new ledger line) so the restart and checks run.
        return resumed(state, intent, **extra)
    if cur == build:
        return unchanged(state, None, **dict(common, **extra))
    if module.check_mode:
        return dict(state, changed=True, current=build, **dict(common, **extra))
    return begin(root, state, build, previous_after, ledger, extra)


def begin(root, state, build, previous_after, ledger, extra):
    """A new switch: the whole transition is written to .lrelease/pending first (write-ahead), then
    done step by step (complete); the file stays as the restart marker until the role removes it."""
    cur = state["current"]
    intent = {"id": uuid.uuid4().hex, "from": cur, "to": build, "previous_before": state["previous"],
              "previous_after": previous_after, "time": utc_now(), "entry": None}
    if ledger:
        intent["entry"] = {
            "id": intent["id"],
            "event": ledger["event"],
            # the build the event is about: the one deployed, or for a rollback the one left
            "build": ledger.get("build") or (cur if ledger["event"] == "rollback" else build),
            "from": cur,
            "to": build,
            "previous": state["previous"],  # .lrelease/previous before: what undoing a roll-out restores
            "time": intent["time"],
            "who": ledger.get("who") or None,
            "rollout_id": ledger.get("rollout_id") or None,
        }
        if ledger.get("undoes"):
            intent["entry"]["undoes"] = ledger["undoes"]
    write_pending(root, intent)
    step_done("intent")
    complete(root, intent, fresh=True)
    result = dict(info(root, build), changed=True, **{"from": cur, "previous_before": state["previous"]}, **extra)
    if intent["entry"] is not None:
        result["entry"] = intent["entry"]
    return result


def undo_plan(module, root, state, intent, undo):
    """Where undoing roll-outs `undo` (one and its resumes) takes this host, from its own ledger:
    {"target", "previous", "undone"}, plus "because" when nothing is to be done."""
    ids = set(undo)
    switches = [e for e in ledger_view(module, root, intent)
                if e.get("event") == "switch" and str(e.get("rollout_id")) in ids]
    if not switches:
        return {"target": None, "previous": None, "undone": None,
                "because": "not switched by roll-out %s" % ", ".join(undo)}
    first = switches[0]
    undone = str(first.get("rollout_id"))
    target = checked_build(first.get("from"), "the ledger's `from` of roll-out %s" % undone)
    brought = [e.get("to") for e in switches]
    plan = {"target": target, "undone": undone,
            "previous": checked_build(first.get("previous"), "the ledger's `previous` of roll-out %s" % undone)}
    cur = state["current"]
    if cur == target:
        plan["because"] = "current is already %s, the build before roll-out %s: undone already" % (cur, undone)
    elif cur not in brought:
        plan["because"] = "current is %s, which roll-out %s did not bring (it brought %s): moved since, left alone" % (
            cur or "not set", undone, ", ".join(sorted(set(map(str, brought)))))
    elif target is None:  # nothing to go back to: the caller stops the app (roles/lrelease_rollback)
        plan["first_install"] = True
        plan["because"] = ("roll-out %s was this host's first install: there is no earlier build to go back to "
                           "(name one with --to)" % undone)
    return plan


def restart_service(module, argv):
    """Run the restart command after a switch; return its outcome (the caller judges it)."""
    try:
        rc, out, err = module.run_command(argv, handle_exceptions=False)
    except OSError as exc:
        rc, out, err = (127 if isinstance(exc, FileNotFoundError) else 126), "", str(exc)
    return {"cmd": argv, "rc": rc, "stdout": out.strip(), "stderr": err.strip()}


def restart_failed(result, rollback):
    """The one line a failed restart after a switch fails the task with."""
    r = result["restart"]
    tail = r["stderr"] or r["stdout"]
    return "%s %s, but '%s' exited %d%s" % ("rolled back to" if rollback else "switched to", result["current"],
                                            " ".join(r["cmd"]), r["rc"], (": " + tail) if tail else "")


def prune(module, root, keep):
    state = info(root)
    # An unfinished switch needs both of its builds, and the previous build its revert restores: a
    # switch that prunes in its own run (keep) and is then reverted leaves the host as it found it.
    intent = read_intent(root) or {}
    protected = {state["current"], state["previous"], intent.get("to"), intent.get("from"), intent.get("previous_before")}
    keepers = set(state["order"][:keep]) | protected
    removed = [b for b in state["order"] if b not in keepers] + state["partials"]
    if not module.check_mode:
        for name in removed:
            # Renamed out of the releases first (atomic), then removed: a run killed half-way through
            # a removal leaves a leftover (.<build>.old-<pid>, which the next prune removes), never a
            # release directory whose manifest survived its files (a later switch would accept it).
            path = os.path.join(root, "releases", name)
            if not name.startswith("."):
                aside = os.path.join(root, "releases", ".%s.old-%d" % (name, os.getpid()))
                os.rename(path, aside)
                path = aside
                step_done("prune")
            shutil.rmtree(path)
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
            format=dict(type="str", choices=list(FORMATS), default="tar.gz"),
            strip_components=dict(type="raw", default="auto"),
            binary_name=dict(type="str"),
            previous=dict(type="str"),
            keep=dict(type="int"),
            ledger=dict(type="dict"),
            only_if_current=dict(type="str"),
            undo=dict(type="list", elements="str"),
            restart=dict(type="list", elements="str"),
            shared=dict(type="dict"),
        ),
        required_if=[
            ("state", "staged", ("build", "sha256")),
            ("format", "binary", ("binary_name",)),
        ],
        mutually_exclusive=[("undo", "build"), ("undo", "only_if_current"), ("undo", "previous")],
        supports_check_mode=True,
    )
    p = module.params
    root = p["root"].rstrip("/") or "/"
    global _kill_file
    _kill_file = os.path.join(root, ".lrelease", KILL_AFTER_FILE)
    if not os.path.isabs(root) or root == "/":
        module.fail_json(msg="root must be an absolute path other than /, got %r" % p["root"])
    build = p["build"]
    if build is not None and not BUILD_RE.fullmatch(build):
        module.fail_json(msg="build must match %s, got %r" % (BUILD_RE.pattern, build))
    if p["restart"] is not None and p["state"] != "current":
        module.fail_json(msg="restart goes with state=current, got state=%s" % p["state"])
    if p["previous"] and not BUILD_RE.fullmatch(p["previous"]):
        module.fail_json(msg="previous must be a build id, got %r" % p["previous"])
    undo = p["undo"]
    if undo is not None and (p["state"] != "current" or not undo or not all(i and i.strip() == i for i in undo)):
        module.fail_json(msg="undo goes with state=current and names roll-out ids (non-empty, no surrounding "
                             "spaces), got state=%s undo=%r" % (p["state"], undo))
    keep = p["keep"]
    if keep is not None and (keep < 1 or p["state"] not in ("current", "pruned")):
        module.fail_json(msg="keep goes with state=current or pruned and must be at least 1, got state=%s keep=%d"
                             % (p["state"], keep))
    try:
        if p["state"] == "staged":
            sha = (p["sha256"] or "").lower()
            if not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise LayoutError("sha256 must be 64 hex digits, got %r" % p["sha256"])
            strip_setting(p["strip_components"])  # refused before anything is sent or changed
            result = stage(module, root, build, p["src"], sha, p["manifest"], p["remove_src"],
                           p["format"], p["strip_components"], p["binary_name"], shared=p["shared"])
            if p["shared"] and not result["changed"] and result["current"] != build and not module.check_mode:
                linked = link_shared(root, os.path.join(root, "releases", build), p["shared"])  # staged before
                result.update(changed=bool(linked), linked=linked)
        elif p["state"] == "current":
            ledger = p["ledger"]
            events = ("rollback",) if undo is not None else LEDGER_EVENTS
            if ledger is not None and ledger.get("event", "rollback" if undo is not None else None) not in events:
                raise LayoutError("ledger.event must be %s%s, got %r" % (
                    "one of " if len(events) > 1 else "", ", ".join(events) + (" with undo" if undo else ""),
                    ledger.get("event")))
            sha = (p["sha256"] or "").lower() or None
            result = switch(module, root, build, p["previous"], ledger, sha, p["only_if_current"], undo)
            if p["restart"] and result["changed"] and not module.check_mode:
                result["restart"] = restart_service(module, p["restart"])
                step_done("restart")
                if result["restart"]["rc"] != 0:
                    module.fail_json(msg=restart_failed(result, rollback=undo is not None or (ledger or {}).get(
                        "event") == "rollback"), **result)
            if keep is not None and undo is None and p["only_if_current"] is None:
                result["removed"] = prune(module, root, keep)["removed"]
        elif p["state"] == "pruned":
            result = prune(module, root, 5 if keep is None else keep)
        else:
            result = dict(info(root, build), changed=False)
    except (LayoutError, OSError, tarfile.TarError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
