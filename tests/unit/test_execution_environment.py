"""execution-environment.yml (ansible-builder v3): `ansible-builder create` makes a build context
from it that installs ansible-core, ansible-runner, the lrelease package and `requests` (no
container engine is needed to create the context; docs/awx.md, "The execution environment")."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def create(context: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ansible-builder"), "create", "--file", "execution-environment.yml",
                           "--context", str(context), "--output-filename", "Containerfile"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_definition_is_ansible_builder_v3():
    data = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert data["version"] == 3 and data["images"]["base_image"]["name"]
    deps = data["dependencies"]
    assert {"python", "galaxy", "system", "ansible_core", "ansible_runner"} <= set(deps)
    # the Ansible versions are the ones the package pins
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"{deps["ansible_core"]["package_pip"]}"' in pyproject
    assert f'"{deps["ansible_runner"]["package_pip"]}"' in pyproject


def test_ansible_builder_create_makes_a_context_that_installs_the_package_and_requests(tmp_path):
    # Given the repository's execution-environment.yml
    context = tmp_path / "context"
    # When ansible-builder creates its build context
    proc = create(context)
    # Then it succeeds and writes the Containerfile and the requirements it was given
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / "Containerfile").read_text()
    build = context / "_build"
    assert "requests" in (build / "requirements.txt").read_text()
    assert "openssh-clients" in (build / "bindep.txt").read_text()
    assert yaml.safe_load((build / "requirements.yml").read_text()) == {"collections": []}
    assert 'ANSIBLE_INSTALL_REFS="ansible-core>=2.19,<2.20 ansible-runner>=2.4,<2.5"' in containerfile
    assert 'PYCMD="/usr/bin/python3.11"' in containerfile
    # and the final image installs the package from the source copied into the context
    src = build / "lrelease-src"
    assert (src / "pyproject.toml").is_file() and (src / "lrelease" / "awxexport.py").is_file()
    final = containerfile.split("FROM base AS final", 1)[1]
    assert "COPY _build/lrelease-src /tmp/lrelease-src" in final
    assert "pip install --no-cache-dir /tmp/lrelease-src" in final
    assert "tests" not in {p.name for p in src.iterdir()}


def test_the_packaged_source_in_the_context_builds_a_wheel(tmp_path):
    # Given the context's copy of the package source
    context = tmp_path / "context"
    assert create(context).returncode == 0
    src = context / "_build" / "lrelease-src"
    shutil.rmtree(src / "lrelease" / "__pycache__", ignore_errors=True)
    # When pip builds it (what the image's `pip install` does first)
    proc = subprocess.run([str(BIN / "pip"), "wheel", "-q", "--no-deps", str(src), "-w", str(tmp_path / "wheels")],
                          capture_output=True, text=True, timeout=300)
    # Then a wheel with the lrelease package comes out
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("lrelease-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lrelease/awxexport.py" in names and "lrelease/schemas/lrelease.schema.json" in names
