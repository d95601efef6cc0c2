"""The repository builds as the collection lrelease.release and works once installed elsewhere:
`ansible-galaxy collection build` here, `ansible-galaxy collection install` into an empty
collections path, then ansible-doc and ansible-playbook --syntax-check by fully qualified names
from a directory outside the checkout with no ANSIBLE_CONFIG (no ansible.cfg anywhere)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NS = "lrelease.release"


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The collection built from the checkout and installed into a fresh collections path; an
    environment and a working directory that know nothing of the checkout."""
    base = tmp_path_factory.mktemp("collection")
    home, work, dist, collections = (base / n for n in ("home", "work", "dist", "collections"))
    for d in (home, work, dist, collections):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(HOME=str(home), ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(base / ".ansible-tmp"), PATH=f"{BIN}:{env.get('PATH', '')}")
    run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(dist), str(ROOT)], work, env)
    tarballs = list(dist.glob("lrelease-release-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    run([str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(collections), str(tarballs[0])], work, env)
    return tarballs[0], collections / "ansible_collections" / "lrelease" / "release", work, env


def test_the_tarball_carries_the_content_and_none_of_the_checkout_tooling(installed):
    # Given the built tarball  Then it has the roles, playbooks, plugins, runtime and changelog
    tarball, *_ = installed
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    for must in ("MANIFEST.json", "meta/runtime.yml", "changelogs/changelog.yaml",
                 "playbooks/deploy.yml", "playbooks/rollback.yml", "playbooks/status.yml",
                 "roles/lrelease_switch/meta/argument_specs.yml",
                 "plugins/modules", "plugins/action", "plugins/inventory", "plugins/lookup"):
        assert must in names, must
    # and none of the tests, benchmarks, venv or the checkout's self-link
    for never in ("tests", "bench", ".venv", "collections", "molecule", "lrelease.egg-info"):
        assert not any(n == never or n.startswith(never + "/") for n in names), never


def test_installed_plugins_resolve_to_files(installed):
    # Given the installed collection  Then every plugin directory holds the plugin files
    _, root, *_ = installed
    for kind, name in (("modules", "lrelease_release.py"), ("modules", "lrelease_gate.py"),
                       ("action", "lrelease_gate.py"), ("inventory", "lrelease_fleet.py"),
                       ("lookup", "lrelease_lock.py")):
        assert (root / "plugins" / kind / name).is_file(), f"{kind}/{name}"


def test_ansible_doc_finds_the_installed_module_by_fqcn(installed):
    # When ansible-doc is asked for the module by FQCN, outside the checkout, without ansible.cfg
    _, _, work, env = installed
    proc = run([str(BIN / "ansible-doc"), f"{NS}.lrelease_release"], work, env)
    # Then it shows the module's page
    assert f"{NS}.lrelease_release" in proc.stdout and "OPTIONS" in proc.stdout


@pytest.mark.parametrize("playbook", ["deploy", "rollback", "status"])
def test_installed_playbooks_parse_by_fqcn_outside_the_checkout(installed, playbook):
    # When ansible-playbook --syntax-check runs the playbook by its FQCN from an empty directory
    _, root, work, env = installed
    proc = run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", f"{NS}.{playbook}"], work, env)
    # Then the installed copy is the one read, and every module, action and role it names resolves
    assert f"playbook: {root}/playbooks/{playbook}.yml" in proc.stdout
    assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, proc.stderr
