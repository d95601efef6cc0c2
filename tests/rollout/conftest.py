"""A project (lrelease.yml + state) on the session's sandbox fleet, fresh for every test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.sandbox import provision
from lrelease.sandbox.demoapp.build import Behaviour
from lrelease.sandbox.fleet import project_config


def fleet_file(fleet, path: Path, envs: dict[str, tuple[str, ...]], rest: str = "spare") -> Path:
    """The session fleet's nodes in a fleet file of a test's own (``path``), each node in the
    environment ``envs`` names it under, every other node in ``rest``."""
    nodes = yaml.safe_load(fleet.config.fleet_path.read_text())
    for name, node in nodes["nodes"].items():
        node["environment"] = next((env for env, members in envs.items() if name in members), rest)
    path.write_text(yaml.safe_dump(nodes, sort_keys=False))
    return path


class Project:
    """lrelease.yml in a temp dir, pointing at the sandbox; runs the CLI in-process."""

    def __init__(self, sandbox, root: Path, **production) -> None:
        self.sandbox, self.cfg = sandbox, sandbox.config
        data = project_config(self.cfg, **production)
        data["state_dir"] = str(root / "state")
        self.path = root / "lrelease.yml"
        self.path.write_text(yaml.safe_dump(data, sort_keys=False))

    def build(self, build: str, **behaviour) -> provision.Artifact:
        return provision.artifact(self.cfg, build, Behaviour(**behaviour))

    def cli(self, *args: str):
        result = CliRunner().invoke(cli, [*args, "--config", str(self.path)], catch_exceptions=False)
        return result

    def json(self, *args: str) -> dict:
        result = self.cli(*args, "--json")
        start = result.stdout.index("{")
        return {"exit_code": result.exit_code, **json.loads(result.stdout[start:])}

    # -- what the hosts say -------------------------------------------------------------
    def current(self, node: str) -> str:
        return (self.cfg.node_root(self.cfg.find_node(node)) / "current").readlink().name

    def ledger(self, node: str) -> list[dict]:
        path = self.cfg.node_root(self.cfg.find_node(node)) / ".lrelease" / "ledger.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def serving(self, node: str) -> str:
        import requests

        n = self.cfg.find_node(node)
        return requests.get(f"http://{n.address}:{n.app_port}/version", timeout=5).text.strip()

    @property
    def nodes(self) -> list[str]:
        return [n.name for n in self.cfg.all_nodes()]


@pytest.fixture
def project(fleet, tmp_path):
    return Project(fleet, tmp_path, bake_seconds=1, gate_timeout_seconds=10)
