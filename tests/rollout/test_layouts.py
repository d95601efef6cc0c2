"""Artifact layouts on the sandbox, through the CLI over real SSH: a tarball whose members sit in a
top directory ``<app>-<version>/`` (the usual layout of build tools), then a zip of the same kind,
each unpacked without that directory (strip_components: auto), the app restarted by a
``service.shell`` line."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import yaml

from tests.rollout.conftest import Project


def with_top_directory(project: Project, build: str, fmt: str) -> Path:
    """The demo app's build repacked as <app>-<build>.<fmt> with every member under <app>-<build>/,
    plus its .sha256 (the flat tarball of the same build is removed)."""
    flat = project.build(build)
    top = f"{project.cfg.app}-{build}"
    with tarfile.open(flat.path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    flat.path.unlink()
    flat.sha256_path.unlink()
    out = flat.path.with_name(f"{top}.{fmt}")
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w") as zf:
            for m, data in members:
                info = zipfile.ZipInfo(f"{top}/{m.name}")
                info.external_attr = (0o100000 | m.mode) << 16
                zf.writestr(info, data)
    else:
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for m, data in members:
                m.name = f"{top}/{m.name}"
                tar.addfile(m, io.BytesIO(data))
    out.write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    out.with_name(out.name + ".sha256").write_text(f"{digest}  {out.name}\n")
    return out


def use_format(project: Project, fmt: str) -> None:
    data = yaml.safe_load(project.path.read_text())
    data["artifacts"]["format"] = fmt
    project.path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_tarball_and_a_zip_with_a_top_directory_are_deployed_without_it(fleet, tmp_path):
    # Given lrelease.yml restarting the app with a shell line (the action as "$1"), and
    # demoapp-2.0.0.tar.gz whose members all lie in demoapp-2.0.0/
    root = fleet.config.deploy_root
    project = Project(fleet, tmp_path, waves=["100%"], bake_seconds=1, gate_timeout_seconds=10,  # one wave: lean
                      service={"shell": f'cd {root} && exec ./bin/{fleet.config.app}-service "$1"'})
    with_top_directory(project, "2.0.0", "tar.gz")
    # When it is deployed
    out = project.json("deploy", "--env", "production", "--build", "2.0.0", "--yes")
    # Then every node serves it, from releases/2.0.0/app.py (the top directory is gone)
    assert out["exit_code"] == 0, out
    assert {n: project.serving(n) for n in project.nodes} == {n: "2.0.0" for n in project.nodes}
    node_root = project.cfg.node_root(project.cfg.find_node(project.nodes[0]))
    assert sorted(p.name for p in (node_root / "releases" / "2.0.0").iterdir()) == [
        ".lrelease-manifest.json", "VERSION", "app.py", "behaviour.json"]

    # Given artifacts.format: zip and demoapp-2.1.0.zip, also with a top directory
    use_format(project, "zip")
    with_top_directory(project, "2.1.0", "zip")
    # When it is deployed
    out = project.json("deploy", "--env", "production", "--build", "2.1.0", "--yes")
    # Then every node serves 2.1.0, unpacked the same way, app.py still executable
    assert out["exit_code"] == 0, out
    assert {n: project.serving(n) for n in project.nodes} == {n: "2.1.0" for n in project.nodes}
    app = node_root / "releases" / "2.1.0" / "app.py"
    assert app.is_file() and app.stat().st_mode & 0o111
    assert not (node_root / "releases" / "2.1.0" / f"{fleet.config.app}-2.1.0").exists()
