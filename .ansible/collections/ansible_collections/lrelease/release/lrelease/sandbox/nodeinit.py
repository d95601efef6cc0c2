"""The first process (pid 1) of a sandbox node.

Started by the sandbox inside the node's fresh mount, UTS and PID namespaces
(``python -m lrelease.sandbox.nodeinit SPEC``, SPEC a JSON object written by
``netns.node_spec``). It names the node, mounts its private directories (an overlay per
directory, the machine's own content as the read-only lower layer, the node's writes in the
upper layer under the node's state), gives root a fresh home with a minimal shell profile,
binds the node's deploy root, prints ``ready`` and then
reaps orphaned processes until it is told to stop (SIGTERM). The kernel ends every process
of a PID namespace when its first process ends, so stopping this one stops the whole node.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
import time

MS_BIND = 0x1000
MS_REC = 0x4000
_libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2) itself: paths are resolved here, in this process (``/proc/self/fd/N`` works)."""
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                   ctypes.c_ulong(flags), data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} on {target}: {os.strerror(err)}")


def setup(spec: dict) -> None:
    socket.sethostname(spec["hostname"])
    state_dir = spec["state_dir"]
    # The node's own state (upper layers, sshd files, the deploy root's filesystem) may sit
    # below a directory that becomes private (/var/lib): reach it through a descriptor opened
    # before anything is mounted over it.
    fd = os.open(state_dir, os.O_PATH | os.O_DIRECTORY)

    def real(path: str) -> str:
        return f"/proc/self/fd/{fd}/{os.path.relpath(path, state_dir)}"

    for d in spec["overlays"]:
        mount("overlay", d["path"], "overlay",
              data=f"lowerdir={d['path']},upperdir={real(d['upper'])},workdir={real(d['work'])}")
    for path in spec["fresh"]:
        mount("tmpfs", path, "tmpfs", data="mode=0700,size=64m")
    for name, text in spec["home_files"].items():  # the node's own (fresh) home: a minimal shell profile
        with open(os.path.join(spec["home"], name), "w", encoding="utf-8") as f:
            f.write(text)
    if spec["rebind_state"]:  # the state dir lies in a private directory: the real one on top
        mount(f"/proc/self/fd/{fd}", state_dir, None, MS_BIND | MS_REC)
    os.makedirs(spec["deploy_root"], exist_ok=True)
    mount(real(spec["node_root"]), spec["deploy_root"], None, MS_BIND)
    os.close(fd)


def reap_forever() -> None:
    """Wait for children (and every orphan of the node, which the kernel hands to pid 1)."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(1)
        except InterruptedError:
            continue


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # pid 1 ignores signals it does not handle
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        setup(json.loads(argv[1]))
    except (OSError, ValueError, KeyError, IndexError) as exc:
        print(f"nodeinit: {exc}", flush=True)
        return 1
    print("ready", flush=True)
    reap_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
