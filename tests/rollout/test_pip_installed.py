"""A non-editable `pip install` of the package deploys on the sandbox from an empty directory with
its own lrelease.yml (issue 11, "Must show").

The wheel is built once (``pip wheel . --no-deps``, tests/wheel.py) and installed with
``pip install --no-deps`` into a fresh venv in a temp dir. To stay fast and offline the venv's
dependencies are the test venv's: a ``.pth`` line puts the test venv's site-packages after the new
venv's own (a plain path: its .pth files, among them this checkout's editable hook, are not run),
and the new venv gets the ``ansible*`` console scripts pip writes for ansible-core (the test
venv's, their interpreter line pointing at the new venv). lrelease itself comes from the wheel
(asserted: ``lrelease.__file__`` and the playbooks it runs lie under the new venv). Then that
venv's ``lrelease deploy`` runs from the project directory, with the session's fleet.
The same venv's ansible-playbook then runs the installed collection's deploy playbook by its FQCN
as AWX would (no wrapper): its state goes to the project's state_dir, never into the package.
Measured: about 60 s with the fleet up (wheel ~10 s, install ~3 s, each roll-out ~20 s)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import requests
import yaml

from lrelease.config import load_config
from lrelease.sandbox import provision
from lrelease.sandbox.fleet import project_config
from tests.wheel import build_wheel

GOOD, PLAIN = "7.1.0", "7.2.0"


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the wheel pip-installed (not editable), its dependencies borrowed."""
    tmp = tmp_path_factory.mktemp("pip-installed")
    wheel = build_wheel(tmp)
    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    pip = _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                "--no-deps", "--no-index", str(wheel)])
    assert pip.returncode == 0, pip.stderr[-2000:]
    (_site_packages(venv) / "test-venv-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for script in Path(sys.executable).parent.glob("ansible*"):
        lines = script.read_text().splitlines(keepends=True)
        assert lines[0].startswith("#!"), script
        target = venv / "bin" / script.name
        target.write_text(f"#!{venv / 'bin' / 'python'}\n" + "".join(lines[1:]))
        target.chmod(0o755)
    return venv


def _environ(venv: Path) -> dict[str, str]:
    """A shell with the new venv activated: nothing of the checkout or the test venv on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_CONFIG", "VIRTUAL_ENV",
                                                             "LRELEASE_CONFIG", "LRELEASE_STATE_URL",
                                                             "LRELEASE_STATE_URL_FILE")}
    return {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"}


def test_a_pip_installed_lrelease_deploys_from_an_empty_directory(venv, fleet, tmp_path):
    # Given the package pip-installed (not editable) into a fresh venv, and an empty directory
    # with its own lrelease.yml for the session's fleet (no state_dir: the default, .lrelease
    # beside lrelease.yml) and a good build
    env = _environ(venv)
    where = _run([str(venv / "bin" / "python"), "-c",
                  "import lrelease, lrelease.runner as r; print(lrelease.__file__); print(r.PLAYBOOKS)"],
                 cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    package, playbooks = (Path(line) for line in where.stdout.split())
    assert package.is_relative_to(venv) and playbooks.is_relative_to(venv), where.stdout
    project = tmp_path / "project"
    project.mkdir()
    config = project_config(fleet.config, waves=[1, "100%"], bake_seconds=1, gate_timeout_seconds=10)
    del config["state_dir"]
    (project / "lrelease.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    provision.artifact(fleet.config, GOOD)

    # When that venv's `lrelease deploy` runs there
    deploy = _run([str(venv / "bin" / "lrelease"), "deploy", "--env", "production", "--build", GOOD, "--yes"],
                  cwd=project, env=env)
    history = _run([str(venv / "bin" / "lrelease"), "history", "--json"], cwd=project, env=env)

    # Then the build rolled out: every host serves it, and the roll-out is recorded in the
    # project's own state dir; nothing was written into the installed package
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr[-3000:]
    for node in fleet.config.all_nodes():
        served = requests.get(f"http://{node.address}:{node.app_port}/version", timeout=5).text.strip()
        assert served == GOOD, node.name
    assert history.returncode == 0, history.stderr
    assert (project / ".lrelease" / "lrelease.db").is_file()
    rollouts = yaml.safe_load(history.stdout)["rollouts"]
    assert [(r["build"], r["status"]) for r in rollouts] == [(GOOD, "succeeded")], rollouts
    written = [p for p in venv.rglob("*") if p.suffix in (".db", ".jsonl", ".lock") or p.name == ".lrelease"]
    assert written == [], written


def test_a_plain_run_of_the_installed_collection_keeps_its_state_in_the_project(venv, fleet, tmp_path):
    # Given the installed package's collection on Ansible's collections path, an empty project
    # directory with its own lrelease.yml, its inventory generated by the installed CLI, and a build
    env = _environ(venv)
    content = next(_site_packages(venv).glob("lrelease/_content"))
    project = tmp_path / "project"
    project.mkdir()
    config = project_config(fleet.config, waves=[1, "100%"], bake_seconds=0, gate_timeout_seconds=10)
    del config["state_dir"]
    (project / "lrelease.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    generated = _run([str(venv / "bin" / "lrelease"), "inventory", "generate"], cwd=project, env=env)
    assert generated.returncode == 0, generated.stderr
    art = provision.artifact(fleet.config, PLAIN)
    extravars = {**load_config(project / "lrelease.yml").environment("production").playbook_vars(),
                 "lrelease_build": PLAIN, "lrelease_artifact": str(art.path), "lrelease_artifact_sha256": art.sha256,
                 "lrelease_hosts": "production", "lrelease_config": str(project / "lrelease.yml"),
                 "awx_user_name": "alice", "awx_job_id": 4280}
    (project / "vars.json").write_text(yaml.safe_dump(extravars))

    # When that venv's ansible-playbook runs lrelease.release.deploy there, as AWX would (no wrapper)
    run = _run([str(venv / "bin" / "ansible-playbook"), "-i", str(project / "inventories" / "generated" / "production.yml"),
                "lrelease.release.deploy", "-e", "@vars.json"], cwd=project,
               env={**env, "ANSIBLE_COLLECTIONS_PATH": str(content), "ANSIBLE_NOCOLOR": "1"})

    # Then the build rolled out, and the run is recorded in the project's state dir (what the
    # installed `lrelease history` reads), nothing inside the installed package
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    for node in fleet.config.all_nodes():
        assert requests.get(f"http://{node.address}:{node.app_port}/version", timeout=5).text.strip() == PLAIN
    history = _run([str(venv / "bin" / "lrelease"), "history", "--json"], cwd=project, env=env)
    assert history.returncode == 0, history.stderr
    rollouts = yaml.safe_load(history.stdout)["rollouts"]
    assert [(r["build"], r["status"], r["actor"]) for r in rollouts] == [(PLAIN, "succeeded", "alice")], rollouts
    written = [p for p in venv.rglob("*") if p.suffix in (".db", ".jsonl", ".lock") or p.name == ".lrelease"]
    assert written == [], written
