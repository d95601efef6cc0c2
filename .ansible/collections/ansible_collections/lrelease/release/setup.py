"""Build hook: the wheel carries the Ansible content the wrapper runs.

The playbooks, roles and plugins live at the repository root (the checkout is the collection
lrelease.release); a wheel gets a copy of them as the collection
``lrelease/_content/ansible_collections/lrelease/release`` so that a non-editable install runs
outside the checkout (lrelease.ansible finds it). Everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
COLLECTION = ("galaxy.yml", "meta", "playbooks", "roles")
PLUGIN_TYPES = ("action", "modules", "inventory", "lookup", "callback")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "molecule")


class BuildPyWithContent(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout itself
        dest = Path(self.build_lib) / "lrelease" / "_content" / "ansible_collections" / "lrelease" / "release"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for name in COLLECTION:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=_IGNORE)
            else:
                shutil.copy2(src, dest / name)
        for kind in PLUGIN_TYPES:
            shutil.copytree(ROOT / "lrelease" / "ansible" / kind, dest / "plugins" / kind, ignore=_IGNORE)


setup(cmdclass={"build_py": BuildPyWithContent})
