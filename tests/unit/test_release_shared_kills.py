"""Staging killed while the shared paths are being linked into ``releases/.<build>.partial``: the
module in its own process (as Ansible runs it on a host), killed by its test-only hook
LRELEASE_TEST_KILL_AFTER=shared right after the first link (os._exit(137), like a SIGKILL, with
nothing cleaned up: what a host keeps when the controller died too and no rescue ran)."""

from __future__ import annotations

import json
import os

from tests.unit.test_release_module import make_artifact
from tests.unit.test_release_module_kills import run

SHARED = {"dirs": ["log", "var/uploads"], "files": [".env"]}


def test_staging_killed_half_linked_leaves_no_release_and_the_next_run_redoes_it(tmp_path):
    # Given a host on 1.0.0 and the artifact of 1.1.0 sent to it
    root = tmp_path / "srv"
    (root / "releases" / "1.0.0").mkdir(parents=True)
    (root / "current").symlink_to("releases/1.0.0")
    art = tmp_path / "app-1.1.0.tar.gz"
    sha = make_artifact(art, {"VERSION": b"1.1.0\n", "log/shipped.log": b"x"})
    args = {"root": str(root), "state": "staged", "build": "1.1.0", "src": str(art), "sha256": sha,
            "shared": SHARED}
    # When the module dies right after linking the first shared path
    killed = run(tmp_path, args, kill_after="shared")
    # Then it died mid-way (no result), with the partial release half-linked: log/ only
    assert killed.returncode == 137 and killed.stdout == "", (killed.returncode, killed.stdout)
    partial = root / "releases" / ".1.1.0.partial"
    assert os.readlink(partial / "log") == "../../shared/log"
    assert not (partial / "var" / "uploads").exists() and not (partial / ".env").exists()
    # And nothing is in place under the build's name; current is untouched
    assert not (root / "releases" / "1.1.0").exists()
    assert os.readlink(root / "current") == "releases/1.0.0"

    # When staging runs again
    again = run(tmp_path, args)
    # Then it redoes the release from scratch: in place, every path linked, the partial gone
    result = json.loads(again.stdout)
    assert again.returncode == 0 and result["changed"] and not result.get("failed"), result
    release = root / "releases" / "1.1.0"
    assert [os.readlink(release / p) for p in ("log", "var/uploads", ".env")] == [
        "../../shared/log", "../../../shared/var/uploads", "../../shared/.env"]
    assert (release / ".lrelease-manifest.json").is_file()
    assert not partial.exists()
    assert os.readlink(root / "current") == "releases/1.0.0"
