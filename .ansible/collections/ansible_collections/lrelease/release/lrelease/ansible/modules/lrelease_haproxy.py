#!/usr/bin/python
# Copyright lrelease contributors
# Apache-2.0
"""lrelease_haproxy: read or set a server's state through HAProxy's runtime API (no socat)."""

DOCUMENTATION = r"""
module: lrelease_haproxy
short_description: Drain, re-enable or read one HAProxy server through the runtime API socket
description:
  - Speaks to HAProxy's admin socket (C(stats socket ... level admin)) directly; no socat needed.
  - Runs where the socket is, usually the controller (C(delegate_to=localhost)); there the
    action plugin of the same name runs this code in-process instead of starting a module.
  - Without O(state) it only reads the server's state.
  - C(drain) leaves a server in C(maint) alone (it already takes no traffic); with O(keep_maint),
    C(ready) leaves it in C(maint) too, so lrelease never undoes an operator's maintenance.
options:
  socket: {description: Path of the runtime API unix socket., type: path, required: true}
  backend: {description: Backend name., type: str, required: true}
  server: {description: Server name inside the backend., type: str, required: true}
  state:
    description: Wanted administrative state; omit to only read.
    type: str
    choices: [ready, drain, maint]
  keep_maint: {description: With C(state=ready), leave a server in maintenance as it is., type: bool, default: false}
  wait_drained:
    description: With C(state=drain), wait up to this many seconds for the server's current sessions to reach 0.
    type: float
    default: 0
  timeout: {description: Seconds allowed for one socket command., type: float, default: 5}
"""

EXAMPLES = r"""
- name: Take node1 out of rotation
  lrelease.release.lrelease_haproxy:
    socket: /run/haproxy/admin.sock
    backend: be_app
    server: node1
    state: drain
    wait_drained: 10
  delegate_to: localhost
"""

RETURN = r"""
before: {description: "State before: C(state) (ready, drain, maint), C(operational) (stopped, starting, running, stopping), C(sessions).", type: dict, returned: always}
after: {description: State after, same keys., type: dict, returned: always}
"""

import csv
import socket
import time

from ansible.module_utils.basic import AnsibleModule

# srv_admin_state bits (HAProxy include/haproxy/server-t.h)
ADMF_MAINT = 0x01 | 0x02 | 0x04 | 0x20  # forced, inherited, config, resolution
ADMF_DRAIN = 0x08 | 0x10  # forced, inherited
OPERATIONAL = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}


class RuntimeApiError(Exception):
    pass


def command(path, line, timeout):
    """Send one command, return HAProxy's whole answer (it closes the connection after it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as exc:
            raise RuntimeApiError("HAProxy runtime API at %s: %s" % (path, exc))
    return b"".join(chunks).decode("utf-8", "replace")


def read_state(path, backend, server, timeout):
    text = command(path, "show servers state %s" % backend, timeout)
    header, row = None, None
    names = []
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split()
        elif header and line.strip():
            fields = dict(zip(header, line.split()))
            names.append(fields.get("srv_name"))
            if fields.get("srv_name") == server:
                row = fields
    if header is None:
        raise RuntimeApiError("HAProxy runtime API: unexpected answer to 'show servers state %s': %s"
                              % (backend, text.strip()[:200]))
    if row is None:
        raise RuntimeApiError("HAProxy backend %s has no server %r (servers: %s)"
                              % (backend, server, ", ".join(n for n in names if n) or "none"))
    admin = int(row["srv_admin_state"])
    state = "maint" if admin & ADMF_MAINT else "drain" if admin & ADMF_DRAIN else "ready"
    return {
        "state": state,
        "operational": OPERATIONAL.get(int(row["srv_op_state"]), row["srv_op_state"]),
        "sessions": sessions(path, backend, server, timeout),
    }


def sessions(path, backend, server, timeout):
    text = command(path, "show stat", timeout)
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        return None
    reader = csv.DictReader([lines[0][2:]] + lines[1:])
    for row in reader:
        if row.get("pxname") == backend and row.get("svname") == server:
            return int(row.get("scur") or 0)
    return None


ARGUMENT_SPEC = dict(
    socket=dict(type="path", required=True),
    backend=dict(type="str", required=True),
    server=dict(type="str", required=True),
    state=dict(type="str", choices=["ready", "drain", "maint"]),
    keep_maint=dict(type="bool", default=False),
    wait_drained=dict(type="float", default=0),
    timeout=dict(type="float", default=5),
)


def apply(p, check_mode):
    """Read the server, change it if asked; the result dict (raises RuntimeApiError)."""
    before = read_state(p["socket"], p["backend"], p["server"], p["timeout"])
    wanted = p["state"]
    if wanted == "drain" and before["state"] == "maint":
        wanted = None  # already out of rotation
    if wanted == "ready" and before["state"] == "maint" and p["keep_maint"]:
        wanted = None
    changed = wanted is not None and wanted != before["state"]
    if check_mode:
        return dict(changed=changed, before=before, after=dict(before, state=wanted) if changed else before)
    if changed:
        answer = command(p["socket"], "set server %s/%s state %s" % (p["backend"], p["server"], wanted),
                         p["timeout"]).strip()
        if answer:
            raise RuntimeApiError("HAProxy refused 'set server %s/%s state %s': %s"
                                  % (p["backend"], p["server"], wanted, answer))
    after = read_state(p["socket"], p["backend"], p["server"], p["timeout"]) if changed else dict(before)
    if p["state"] == "drain" and p["wait_drained"] > 0:
        deadline = time.monotonic() + p["wait_drained"]
        while (after["sessions"] or 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
            after = read_state(p["socket"], p["backend"], p["server"], p["timeout"])
    return dict(changed=changed, before=before, after=after)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = apply(module.params, module.check_mode)
    except RuntimeApiError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
