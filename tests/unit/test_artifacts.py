"""Artifact layouts: what ends up in releases/<build>/ for each format (tar.gz, tar.zst, zip, a
single binary), the automatic strip of one top directory, and the refusals that keep every file
inside the release. The unpack logic is the lrelease_release module's own (run on real archives
in a temporary deploy root); the format keys of lrelease.yml are checked through the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.config import load_config
from tests.unit.test_release_module import LIVE, MODULE, rel

# An app whose tarball has a top directory <app>-<version>/, as most build tools make it.
SHOP = {
    "shop-1.0.0/": None,
    "shop-1.0.0/start.sh": (b"#!/bin/sh\nexec ./bin/shop\n", 0o755),
    "shop-1.0.0/bin/shop": (b"\x7fELF...", 0o755),
    "shop-1.0.0/etc/shop.conf": (b"port=9000\n", 0o644),
}


def tar_bytes(entries: dict, compression: str = "gz", links: dict | None = None, fifo: str | None = None) -> bytes:
    """A tar archive: ``entries`` name -> (data, mode), or None for a directory; ``links`` name -> target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w") as tar:
        for name, spec in entries.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            if spec is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data, info.mode = spec
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        if fifo:
            info = tarfile.TarInfo(fifo)
            info.type = tarfile.FIFOTYPE
            tar.addfile(info)
    return buf.getvalue()


def zip_bytes(entries: dict, links: dict | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, spec in entries.items():
            if spec is None:
                zf.writestr(zipfile.ZipInfo(name if name.endswith("/") else name + "/"), b"")
                continue
            data, mode = spec
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def zst_bytes(entries: dict, tmp_path: Path, links: dict | None = None) -> bytes:
    plain = tmp_path / "plain.tar"
    plain.write_bytes(tar_bytes(entries, compression="", links=links))
    subprocess.run(["zstd", "-q", "-f", str(plain), "-o", str(tmp_path / "plain.tar.zst")], check=True)
    return (tmp_path / "plain.tar.zst").read_bytes()


ARCHIVES = {
    "tar.gz": lambda entries, tmp, links=None: tar_bytes(entries, links=links),
    "tar.zst": lambda entries, tmp, links=None: zst_bytes(entries, tmp, links=links),
    "zip": lambda entries, tmp, links=None: zip_bytes(entries, links=links),
}


def stage(root: Path, tmp_path: Path, data: bytes, fmt: str, strip="auto", build="1.0.0", binary_name=None):
    """The module's `staged` step on an artifact holding ``data``; returns releases/<build>."""
    src = tmp_path / f"incoming-{build}.{fmt}"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    rel.stage(LIVE, str(root), build, str(src), sha, {}, True, fmt, strip, binary_name)
    return root / "releases" / build


def files(release: Path) -> dict[str, str]:
    """Every entry under the release (manifest aside): path -> 'dir', 'link:<target>' or the file's mode."""
    out = {}
    for p in sorted(release.rglob("*")):
        name = str(p.relative_to(release))
        if name == ".lrelease-manifest.json":
            continue
        out[name] = (f"link:{p.readlink()}" if p.is_symlink() else "dir" if p.is_dir()
                     else oct(p.stat().st_mode & 0o7777))
    return out


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "srv"
    (r / "releases").mkdir(parents=True)
    return r


# -- what ends up in releases/<build>/ ------------------------------------------------------
@pytest.mark.parametrize("fmt", sorted(ARCHIVES))
def test_an_archive_with_one_top_directory_is_unpacked_without_it(root, tmp_path, fmt):
    # Given shop-1.0.0.<fmt> whose members all lie in shop-1.0.0/
    data = ARCHIVES[fmt](SHOP, tmp_path)
    # When it is staged with the default strip_components (auto)
    release = stage(root, tmp_path, data, fmt)
    # Then current/start.sh is where the docs say: the top directory is gone, modes are kept
    assert files(release) == {"bin": "dir", "bin/shop": "0o755", "etc": "dir", "etc/shop.conf": "0o644",
                              "start.sh": "0o755"}
    assert (release / "start.sh").read_bytes().startswith(b"#!/bin/sh")
    assert json.loads((release / ".lrelease-manifest.json").read_text())["build"] == "1.0.0"


@pytest.mark.parametrize("fmt", sorted(ARCHIVES))
def test_strip_components_0_keeps_the_top_directory(root, tmp_path, fmt):
    release = stage(root, tmp_path, ARCHIVES[fmt](SHOP, tmp_path), fmt, strip=0)
    assert (release / "shop-1.0.0" / "start.sh").is_file() and not (release / "start.sh").exists()


@pytest.mark.parametrize("entries, expected", [
    # files at the top: kept as they are (the demo app's layout)
    ({"VERSION": (b"1\n", 0o644), "app.py": (b"x", 0o755)}, {"VERSION", "app.py"}),
    # one top directory and a file beside it: not "exactly one top directory", kept
    ({"shop/": None, "shop/a": (b"a", 0o644), "README": (b"r", 0o644)}, {"shop", "shop/a", "README"}),
    # members written as ./shop/...: the same single top directory
    ({"./shop/": None, "./shop/a": (b"a", 0o644)}, {"a"}),
    # a top directory without its own entry (only its files are listed) still counts
    ({"shop/a": (b"a", 0o644), "shop/sub/b": (b"b", 0o644)}, {"a", "sub", "sub/b"}),
])
def test_auto_strips_only_a_single_top_directory(root, tmp_path, entries, expected):
    release = stage(root, tmp_path, tar_bytes(entries), "tar.gz")
    assert set(files(release)) == expected


def test_an_explicit_strip_drops_that_many_leading_directories(root, tmp_path):
    entries = {"dist/shop-1.0.0/bin/shop": (b"x", 0o755), "dist/shop-1.0.0/VERSION": (b"1", 0o644)}
    release = stage(root, tmp_path, tar_bytes(entries), "tar.gz", strip=2)
    assert files(release) == {"VERSION": "0o644", "bin": "dir", "bin/shop": "0o755"}


def test_a_strip_that_would_drop_a_file_is_refused_and_leaves_nothing(root, tmp_path):
    # Given an archive with a file at the top level, and strip_components 1
    entries = {"README": (b"r", 0o644), "shop/a": (b"a", 0o644)}
    # When staged, Then it is refused by name, and no release or partial directory is left
    with pytest.raises(rel.LayoutError, match="'README' lies above the 1 leading directory to strip"):
        stage(root, tmp_path, tar_bytes(entries), "tar.gz", strip=1)
    assert list((root / "releases").iterdir()) == []


def test_links_inside_the_release_survive_the_strip(root, tmp_path):
    entries = {"shop-1/": None, "shop-1/bin/shop": (b"x", 0o755)}
    for fmt in ("tar.gz", "zip"):
        data = ARCHIVES[fmt](entries, tmp_path, links={"shop-1/current-bin": "bin/shop"})
        release = stage(root, tmp_path, data, fmt, build=f"1.0.{len(fmt)}")
        assert files(release)["current-bin"] == "link:bin/shop", fmt
        assert (release / "current-bin").read_bytes() == b"x"


def test_a_single_binary_is_installed_executable_under_the_app_name(root, tmp_path):
    # Given an artifact that is one executable (shop-1.0.0, no archive)
    data = b"\x7fELF\x02\x01\x01" + b"\0" * 64
    # When staged as format binary for app shop
    release = stage(root, tmp_path, data, "binary", binary_name="shop")
    # Then releases/1.0.0/shop is that file, mode 0755, beside the manifest
    assert files(release) == {"shop": "0o755"}
    assert (release / "shop").read_bytes() == data


@pytest.mark.parametrize("fmt", ["tar.zst", "zip", "binary"])
def test_the_sha256_is_checked_on_the_host_for_every_format(root, tmp_path, fmt):
    data = ARCHIVES[fmt](SHOP, tmp_path) if fmt != "binary" else b"\x7fELF"
    src = tmp_path / "artifact"
    src.write_bytes(data)
    with pytest.raises(rel.LayoutError, match="expected 0000"):
        rel.stage(LIVE, str(root), "1.0.0", str(src), "0" * 64, {}, True, fmt, "auto", "shop")
    assert list((root / "releases").iterdir()) == []


# -- refusals: nothing lands outside the release -------------------------------------------
ESCAPES = [
    ("dot-dot path", {"../evil": (b"x", 0o644)}, None, "outside the release"),
    ("absolute path", {"/etc/evil": (b"x", 0o644)}, None, "outside the release"),
    ("dot-dot inside a path", {"shop/../../evil": (b"x", 0o644)}, None, "outside the release"),
    ("absolute link", {"a": (b"x", 0o644)}, {"passwd": "/etc/passwd"}, "outside the release"),
    ("link out", {"a": (b"x", 0o644)}, {"up": "../../etc"}, "outside the release"),
    # the top directory is stripped, so a link that stayed inside it now points one level further out
    ("link out once stripped", {"shop/": None, "shop/a": (b"x", 0o644)}, {"shop/up": "../a"}, "outside the release"),
    # lexically inside (p/q/y/../.. is p), but p/q/y is itself a link to the release root
    ("link chain", {"p/": None, "p/q/": None}, {"p/q/y": "../..", "x": "p/q/y/../.."}, "outside the release"),
]


@pytest.mark.parametrize("fmt", sorted(ARCHIVES))
@pytest.mark.parametrize("case, entries, links, message", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_an_archive_reaching_outside_the_release_is_refused_and_leaves_nothing(root, tmp_path, fmt, case, entries,
                                                                               links, message):
    # Given an archive that tries to put a file or a link outside the release directory
    data = ARCHIVES[fmt](entries, tmp_path, links=links)
    # When it is staged, Then it is refused, and nothing is left in releases/ or beside the deploy root
    with pytest.raises(rel.LayoutError, match=message):
        stage(root, tmp_path, data, fmt)
    inputs = {f"incoming-1.0.0.{fmt}", "plain.tar", "plain.tar.zst"}
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.name not in inputs) == [
        "srv", "srv/releases"]


def test_a_link_chain_is_refused_without_pythons_own_tar_filter_too(root, tmp_path, monkeypatch):
    # Given a Python without tarfile's data filter (before 3.11.4), and the link chain above
    monkeypatch.delattr(rel.tarfile, "data_filter")
    data = tar_bytes({"p/": None, "p/q/": None}, links={"p/q/y": "../..", "x": "p/q/y/../.."})
    # When staged, Then the module's own checks refuse it, and nothing is left
    with pytest.raises(rel.LayoutError, match="'x' points outside the release directory"):
        stage(root, tmp_path, data, "tar.gz")
    assert list((root / "releases").iterdir()) == []


def test_devices_and_fifos_are_refused(root, tmp_path):
    data = tar_bytes({"a": (b"x", 0o644)}, fifo="pipe")
    with pytest.raises(rel.LayoutError, match="'pipe' is a device or fifo"):
        stage(root, tmp_path, data, "tar.gz")
    info = zipfile.ZipInfo("dev")
    info.external_attr = (stat.S_IFCHR | 0o644) << 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(info, b"")
    with pytest.raises(rel.LayoutError, match="'dev' is a device or fifo"):
        stage(root, tmp_path, buf.getvalue(), "zip")
    assert list((root / "releases").iterdir()) == []


def test_setuid_bits_and_group_write_are_dropped(root, tmp_path):
    release = stage(root, tmp_path, tar_bytes({"run": (b"x", 0o6777)}), "tar.gz")
    assert files(release) == {"run": "0o755"}


@pytest.mark.parametrize("declared, data", [
    ("tar.gz", zip_bytes({"a": (b"x", 0o644)})),
    ("zip", tar_bytes({"a": (b"x", 0o644)})),
    ("tar.zst", tar_bytes({"a": (b"x", 0o644)})),  # zstd itself would read a gzip: refused
], ids=["zip as tar.gz", "tar.gz as zip", "tar.gz as tar.zst"])
def test_an_artifact_that_is_not_the_declared_format_is_refused(root, tmp_path, declared, data):
    with pytest.raises(rel.LayoutError, match=f"not a {declared} archive"):
        stage(root, tmp_path, data, declared)
    assert list((root / "releases").iterdir()) == []


def test_an_empty_archive_is_refused(root, tmp_path):
    with pytest.raises(rel.LayoutError, match="holds no files"):
        stage(root, tmp_path, tar_bytes({"shop/": None}), "tar.gz")


def test_a_tar_zst_without_zstd_on_the_host_says_what_to_install(root, tmp_path, monkeypatch):
    monkeypatch.setattr(rel.shutil, "which", lambda name: None)
    with pytest.raises(rel.LayoutError, match="needs the zstd command on the host"):
        stage(root, tmp_path, zst_bytes(SHOP, tmp_path), "tar.zst")


@pytest.mark.parametrize("args, message", [
    ({"format": "binary"}, "binary_name"),
    ({"format": "tar.gz", "strip_components": 9}, "strip_components must be auto or 0..8, got 9"),
    ({"format": "tar.gz", "strip_components": "all"}, "strip_components must be auto or 0..8"),
    ({"format": "rar"}, "format"),
])
def test_the_module_refuses_bad_format_arguments_before_changing_anything(root, tmp_path, args, message):
    # Given an artifact on the host and bad format arguments, as Ansible passes them
    src = tmp_path / "a.tar.gz"
    src.write_bytes(tar_bytes(SHOP))
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(
        args, root=str(root), state="staged", build="1.0.0", src=str(src),
        sha256=hashlib.sha256(src.read_bytes()).hexdigest())}))
    # When the module runs, Then it fails naming the argument, and nothing was unpacked
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, timeout=60)
    result = json.loads(proc.stdout)
    assert result["failed"] and message in result["msg"], result
    assert list((root / "releases").iterdir()) == [] and src.exists()


def test_the_module_stages_a_zip_with_its_arguments_as_ansible_passes_them(root, tmp_path):
    src = tmp_path / "a.zip"
    src.write_bytes(zip_bytes(SHOP))
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        "root": str(root), "state": "staged", "build": "1.0.0", "src": str(src), "format": "zip",
        "strip_components": "auto", "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, timeout=60)
    result = json.loads(proc.stdout)
    assert result["changed"] and not result.get("failed"), result
    assert (root / "releases" / "1.0.0" / "start.sh").is_file() and not src.exists()


# -- lrelease.yml: artifacts.format and artifacts.strip_components ---------------------------
def project(tmp_path: Path, artifacts: dict, *, build: str | None = None, name: str | None = None) -> Path:
    """An lrelease.yml (example fleet) with these artifacts settings, and optionally an artifact."""
    shutil.copytree(Path(__file__).resolve().parents[2] / "inventories", tmp_path / "inventories")
    (tmp_path / "inventories" / "fleet.yml").write_text((tmp_path / "inventories" / "fleet.example.yml").read_text())
    data = {"version": 1, "app": "shop", "artifacts": artifacts, "environments": {"production": {
        "deploy_root": "/opt/shop", "service": {"command": "/opt/shop/current/start.sh"}}}}
    path = tmp_path / "lrelease.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    if build and name:
        (tmp_path / "artifacts").mkdir(exist_ok=True)
        (tmp_path / "artifacts" / name).write_bytes(b"bytes")
        digest = hashlib.sha256(b"bytes").hexdigest()
        (tmp_path / "artifacts" / f"{name}.sha256").write_text(f"{digest}  {name}\n")
    return path


@pytest.mark.parametrize("fmt, name", [("tar.gz", "shop-1.0.0.tar.gz"), ("tar.zst", "shop-1.0.0.tar.zst"),
                                       ("zip", "shop-1.0.0.zip"), ("binary", "shop-1.0.0")])
def test_each_format_names_its_artifact_and_reaches_the_playbooks(tmp_path, fmt, name):
    # Given artifacts.format and an artifact named <app>-<build>[.<format>] with its .sha256
    path = project(tmp_path, {"source": "dir", "path": "artifacts", "format": fmt}, build="1.0.0", name=name)
    # When the build's artifact is looked up
    ref = load_config(path).artifact_for("1.0.0")
    # Then that file is found, and the format and the default strip go to the playbooks
    assert ref.path == tmp_path / "artifacts" / name
    assert ref.playbook_vars() == {"lrelease_build": "1.0.0", "lrelease_artifact_sha256": hashlib.sha256(
        b"bytes").hexdigest(), "lrelease_artifact": str(ref.path), "lrelease_artifact_format": fmt,
        "lrelease_artifact_strip_components": "auto"}


def test_defaults_are_tar_gz_and_auto_and_a_url_source_takes_them_too(tmp_path):
    assert load_config(project(tmp_path / "a", {"source": "dir"})).artifacts.format == "tar.gz"
    cfg = load_config(project(tmp_path / "b", {"source": "url", "url": "https://ci.example.com/{app}-{build}.zip",
                                               "format": "zip", "strip_components": 1}))
    assert (cfg.artifacts.format, cfg.artifacts.strip_components) == ("zip", 1)
    ref = cfg.artifact_for("2.0.0", sha256="b" * 64)
    assert ref.playbook_vars()["lrelease_artifact_format"] == "zip"
    assert ref.playbook_vars()["lrelease_artifact_strip_components"] == 1


BAD_ARTIFACTS = [
    ({"source": "dir", "format": "tgz"}, "artifacts.format", "one of tar.gz, tar.zst, zip, binary"),
    ({"source": "dir", "format": ["zip"]}, "artifacts.format", "one of tar.gz, tar.zst, zip, binary"),
    ({"source": "dir", "strip_components": 9}, "artifacts.strip_components", "auto or an integer from 0 to 8"),
    ({"source": "dir", "strip_components": -1}, "artifacts.strip_components", "auto or an integer from 0 to 8"),
    ({"source": "dir", "strip_components": True}, "artifacts.strip_components", "auto or an integer from 0 to 8"),
    ({"source": "dir", "strip_components": "1"}, "artifacts.strip_components", "auto or an integer from 0 to 8"),
    ({"source": "dir", "format": "binary", "strip_components": 1}, "artifacts.strip_components",
     "nothing with format: binary"),
]


@pytest.mark.parametrize("artifacts, key, expected", BAD_ARTIFACTS, ids=[str(b[0]) for b in BAD_ARTIFACTS])
def test_a_bad_format_or_strip_is_one_line_exit_2_and_changes_nothing(tmp_path, artifacts, key, expected):
    # Given an lrelease.yml with one bad artifacts key
    path = project(tmp_path, artifacts)
    # When any command loads it
    result = CliRunner().invoke(cli, ["plan", "--env", "production", "--config", str(path)])
    # Then one line names the file, the key and what was expected; exit 2; no state dir was made
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert f"{path}: {key}: " in line and expected in line, line
    assert not (tmp_path / ".lrelease").exists()


def test_a_missing_artifact_names_the_file_of_its_format(tmp_path):
    path = project(tmp_path, {"source": "dir", "format": "tar.zst"})
    result = CliRunner().invoke(cli, ["deploy", "--env", "production", "--build", "9.9.9", "--yes",
                                      "--config", str(path)])
    assert result.exit_code == 2
    assert "no artifacts/shop-9.9.9.tar.zst" in result.output
