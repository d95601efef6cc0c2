"""What the lrelease package ships: no test doubles (the vendor fakes live in tests/fakes/)."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def shipped_modules() -> set[str]:
    """Every module the build would put in the package, found the way the build finds them:
    setuptools' package discovery with pyproject.toml's own include patterns (a ``pip show -f``
    of the installed package lists the same tree)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    modules: set[str] = set()
    for package in find_packages(where=str(ROOT), include=include):
        modules.add(package)
        path = ROOT.joinpath(*package.split("."))
        modules.update(f"{package}.{info.name}" for info in pkgutil.iter_modules([str(path)]))
    return modules


def test_the_built_package_has_no_fakes_and_no_tests():
    # Given the modules the build packages
    modules = shipped_modules()
    assert "lrelease.apm.scrape" in modules and "lrelease.apm.datadog" in modules  # the finder works
    # Then none of them is a fake or a test module: the vendor imitations are test-only
    assert [m for m in modules if "fake" in m.rsplit(".", 1)[-1]] == []
    assert [m for m in modules if m.split(".")[0] != "lrelease"] == []


def test_the_vendor_fakes_are_importable_from_the_tests():
    from tests.fakes import apm

    assert {"FakeDatadog", "FakeNewRelic"} <= set(vars(apm))
    assert "test-only" in (apm.__doc__ or "").lower()
