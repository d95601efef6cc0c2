"""Shared paths: linked by lrelease_release into each release while it is staged, before the rename,
so a release is never in place without its links and a rollback finds them there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.unit.test_release_module import LIVE, make_artifact, rel, run_module

SHARED = {"dirs": ["log", "var/uploads"], "files": [".env"]}


def stage(root: Path, tmp_path: Path, build: str, members: dict[str, bytes], shared=SHARED, links=None) -> dict:
    art = tmp_path / f"app-{build}.tar.gz"
    sha = make_artifact(art, members, links)
    return rel.stage(LIVE, str(root), build, str(art), sha, {}, True, shared=shared)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "srv"
    (r / "releases").mkdir(parents=True)
    return r


def test_shared_paths_are_created_and_linked_into_each_release(root, tmp_path):
    # Given an artifact that ships its own log/ directory (with a file) and nothing else shared
    stage(root, tmp_path, "1.0.0", {"VERSION": b"1.0.0", "log/shipped.log": b"from the artifact"})
    a = root / "releases" / "1.0.0"
    # Then each shared path is a relative link into <root>/shared, the shipped log/ replaced
    assert os.readlink(a / "log") == "../../shared/log"
    assert os.readlink(a / "var" / "uploads") == "../../../shared/var/uploads"
    assert os.readlink(a / ".env") == "../../shared/.env"
    assert not (root / "shared" / "log" / "shipped.log").exists()
    # And the missing ones were created: directories, and an empty file of mode 0640
    assert (root / "shared" / "var" / "uploads").is_dir()
    env = root / "shared" / ".env"
    assert env.read_text() == "" and stat.S_IMODE(env.stat().st_mode) == 0o640
    # And nothing was left behind by the staging
    assert not list((root / "releases").glob(".*"))

    # When release A writes a log line and a second release is staged
    (a / "log" / "app.log").write_text("written by 1.0.0\n")
    (root / "shared" / ".env").write_text("SECRET_NAME=x\n")
    stage(root, tmp_path, "1.1.0", {"VERSION": b"1.1.0"})
    b = root / "releases" / "1.1.0"
    # Then release B sees what A wrote, through its own links
    assert (b / "log" / "app.log").read_text() == "written by 1.0.0\n"
    assert (b / ".env").read_text() == "SECRET_NAME=x\n"


def test_a_release_staged_before_shared_paths_were_set_gets_its_links_unless_it_is_live(root, tmp_path):
    # Given two releases staged without shared paths, 1.0.0 live
    stage(root, tmp_path, "1.0.0", {"VERSION": b"1"}, shared=None)
    stage(root, tmp_path, "1.1.0", {"VERSION": b"2"}, shared=None)
    rel.switch(LIVE, str(root), "1.0.0", None, None, None)
    # When the module is asked to stage each again with shared paths (the artifact already there)
    staged = {}
    for build in ("1.1.0", "1.0.0"):
        manifest = rel.read_manifest(str(root / "releases" / build))
        staged[build] = run_module(tmp_path, root=str(root), state="staged", build=build, sha256=manifest["sha256"],
                                   shared=SHARED)
    # Then the release not yet live is linked (changed), the live one is left as it is
    assert staged["1.1.0"]["changed"] and staged["1.1.0"]["linked"] == ["log", "var/uploads", ".env"]
    assert os.readlink(root / "releases" / "1.1.0" / "log") == "../../shared/log"
    assert not staged["1.0.0"]["changed"] and not (root / "releases" / "1.0.0" / "log").exists()


@pytest.mark.parametrize("shared, message", [
    ({"dirs": ["../escape"]}, "must be relative to the release"),
    ({"dirs": ["/var/log"]}, "must be relative to the release"),
    ({"files": [".lrelease-manifest.json"]}, "must be relative to the release"),
    ({"dirs": ["data/log"]}, "is a symlink or a file in the release"),
])
def test_a_shared_path_that_would_leave_the_release_is_refused_and_nothing_is_staged(root, tmp_path, shared,
                                                                                     message):
    # Given an artifact whose data/ is a link (inside the release, as archives may hold)
    with pytest.raises(rel.LayoutError, match=message):
        stage(root, tmp_path, "6.6.6", {"VERSION": b"x", "real/keep": b"k"}, shared=shared, links={"data": "real"})
    # Then no release is in place (the stage role's rescue removes the partial directory)
    assert not (root / "releases" / "6.6.6").exists()


def test_a_shared_path_of_the_wrong_kind_is_refused(root, tmp_path):
    # Given shared/log is a file on the host
    (root / "shared").mkdir()
    (root / "shared" / "log").write_text("not a directory")
    # When it is configured as a shared directory, Then staging says so
    with pytest.raises(rel.LayoutError, match="shared/log exists but is not a directory"):
        stage(root, tmp_path, "1.0.0", {"VERSION": b"1"}, shared={"dirs": ["log"]})
    assert not (root / "releases" / "1.0.0").exists()
