"""Molecule's own sandbox fleet: `up` and `down` with fixed settings (a network, names and ports of
its own), for create.yml and destroy.yml when no LRELEASE_SANDBOX_DIR names a fleet to reuse.

    python sandbox.py up|down STATE_DIR SETTINGS_JSON

`lrelease sandbox up` cannot set the prefix, bridge or ports, hence the Python API. `down` only
tears down a sandbox whose saved settings are these ones: never someone else's fleet, and never
a missing one (Sandbox.down() on an empty state dir would fall back to the default settings,
which are the demo fleet's)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lrelease.sandbox.config import SandboxConfig
from lrelease.sandbox.fleet import Sandbox


def main(action: str, state_dir: str, settings_json: str) -> int:
    settings = json.loads(settings_json)
    nodes = settings.pop("nodes")
    sandbox = Sandbox(Path(state_dir))
    if action == "up":
        sandbox.up(nodes=nodes, load_rate=0, **settings)
        print(f"sandbox up: {nodes} nodes in {state_dir}")
        return 0
    saved = SandboxConfig.load(Path(state_dir))
    if saved is None:
        print(f"no sandbox at {state_dir}: nothing to tear down")
        return 0
    mismatch = {key: getattr(saved, key) for key, value in settings.items() if getattr(saved, key) != value}
    if mismatch:
        print(f"refusing to tear down {state_dir}: not molecule's sandbox ({mismatch})", file=sys.stderr)
        return 2
    sandbox.down()
    print(f"sandbox down: {state_dir}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("up", "down"):
        print("usage: sandbox.py up|down STATE_DIR SETTINGS_JSON", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
