"""Artifact layouts on the sandbox, through the CLI over real SSH, on a slice of two hosts: a
tar.zst whose members sit in a top directory ``<app>-<version>/`` (the usual layout of build tools),
then a zip of the same kind, each unpacked without that directory (strip_components: auto), the app
restarted by a ``service.shell`` line; then a single binary, installed as ``releases/<build>/<app>``
and run as it is. (A tar.gz with a top directory: the second app's roll-outs, test_second_app.py.)"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import yaml

from lrelease.sandbox import provision
from lrelease.sandbox.demoapp import app as demoapp
from tests.rollout.conftest import Project
from tests.rollout.test_step_kills import SLICE, root_of, sliced


def published(project: Project, name: str, data: bytes) -> Path:
    """``data`` as the artifact ``name`` in the project's artifact directory, with its .sha256."""
    out = project.cfg.artifacts_dir / name
    out.write_bytes(data)
    out.with_name(name + ".sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    return out


def with_top_directory(project: Project, build: str, fmt: str) -> Path:
    """The demo app's build repacked as <app>-<build>.<fmt> with every member under <app>-<build>/,
    plus its .sha256 (the flat tarball of the same build is removed)."""
    flat = project.build(build)
    top = f"{project.cfg.app}-{build}"
    with tarfile.open(flat.path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    flat.path.unlink()
    flat.sha256_path.unlink()
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w") as zf:
            for m, data in members:
                info = zipfile.ZipInfo(f"{top}/{m.name}")
                info.external_attr = (0o100000 | m.mode) << 16
                zf.writestr(info, data)
        packed = buf.getvalue()
    else:  # tar.zst: a plain tar, compressed by the zstd command (as build tools do)
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for m, data in members:
                m.name = f"{top}/{m.name}"
                tar.addfile(m, io.BytesIO(data))
        packed = subprocess.run(["zstd", "-q", "-c"], input=buf.getvalue(), capture_output=True, check=True).stdout
    return published(project, f"{top}.{fmt}", packed)


def binary(project: Project, build: str) -> Path:
    """<app>-<build>: the demo app as one executable file (a Python script with its version baked
    in: a binary has no VERSION file beside it)."""
    source = Path(demoapp.__file__).read_text()
    main = 'if __name__ == "__main__":'
    assert source.startswith("#!") and source.count(main) == 1
    source = source.replace(main, f"load_version = lambda directory: {build!r}  # noqa: E731\n\n\n{main}")
    return published(project, f"{project.cfg.app}-{build}", source.encode())


def use_format(project: Project, fmt: str, **environment) -> None:
    data = yaml.safe_load(project.path.read_text())
    data["artifacts"]["format"] = fmt
    data["environments"]["production"].update(environment)
    project.path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_archives_with_a_top_directory_and_a_single_binary_are_deployed_and_run(fleet, tmp_path):
    # Given lrelease.yml restarting the app with a shell line (the action as "$1"), artifacts.format
    # tar.zst, and demoapp-2.0.0.tar.zst whose members all lie in demoapp-2.0.0/
    root, app = fleet.config.deploy_root, fleet.config.app
    project = sliced(Project(fleet, tmp_path, waves=["100%"], bake_seconds=0, gate_timeout_seconds=10,  # lean
                             service={"shell": f'cd {root} && exec ./bin/{app}-service "$1"'}), tmp_path)
    use_format(project, "tar.zst")
    with_top_directory(project, "2.0.0", "tar.zst")
    # When it is deployed
    out = project.json("deploy", "--env", "production", "--build", "2.0.0", "--yes")
    # Then every host serves it, from releases/2.0.0/app.py (the top directory is gone)
    assert out["exit_code"] == 0, out["message"]
    assert {n: project.serving(n) for n in SLICE} == {n: "2.0.0" for n in SLICE}
    node_root = root_of(project, SLICE[0])
    assert sorted(p.name for p in (node_root / "releases" / "2.0.0").iterdir()) == [
        ".lrelease-manifest.json", "VERSION", "app.py", "behaviour.json"]

    # Given artifacts.format: zip and demoapp-2.1.0.zip, also with a top directory
    use_format(project, "zip")
    with_top_directory(project, "2.1.0", "zip")
    # When it is deployed
    out = project.json("deploy", "--env", "production", "--build", "2.1.0", "--yes")
    # Then every host serves 2.1.0, unpacked the same way, app.py still executable
    assert out["exit_code"] == 0, out["message"]
    assert {n: project.serving(n) for n in SLICE} == {n: "2.1.0" for n in SLICE}
    app_py = node_root / "releases" / "2.1.0" / "app.py"
    assert app_py.is_file() and app_py.stat().st_mode & 0o111
    assert not (node_root / "releases" / "2.1.0" / f"{app}-2.1.0").exists()

    # Given artifacts.format: binary, demoapp-2.2.0 a single executable, and a service line that
    # stops the running app and starts that executable itself (no interpreter named)
    start = (f'cd {root} && ./bin/{app}-service stop >/dev/null; [ "$1" = stop ] && exit 0; '
             '[ -f etc/service.env ] && . ./etc/service.env; '
             f'setsid ./current/{app} --port "${{PORT:-8080}}" >> log/app.log 2>&1 < /dev/null & echo $! > run/app.pid')
    use_format(project, "binary", service={"shell": start})
    binary(project, "2.2.0")
    try:
        # When it is deployed
        out = project.json("deploy", "--env", "production", "--build", "2.2.0", "--yes")
        # Then every host serves 2.2.0 from the one file releases/2.2.0/demoapp, mode 0755, run as it is
        assert out["exit_code"] == 0, out["message"]
        assert {n: project.serving(n) for n in SLICE} == {n: "2.2.0" for n in SLICE}
        release = node_root / "releases" / "2.2.0"
        assert sorted(p.name for p in release.iterdir()) == [".lrelease-manifest.json", app]
        assert (release / app).stat().st_mode & 0o777 == 0o755
        cmdline = Path(f"/proc/{provision.app_pid(project.cfg, project.cfg.find_node(SLICE[0]))}/cmdline")
        assert f"./current/{app}" in cmdline.read_bytes().split(b"\0")[1].decode()
    finally:  # the demo app's own service script knows only current/app.py: stop what it cannot
        for n in SLICE:
            provision.kill_app(project.cfg, project.cfg.find_node(n))
