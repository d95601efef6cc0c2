"""Bad sandbox input gets one clear line and exit 2, and changes nothing."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.errors import ConfigError
from lrelease.sandbox.config import SandboxConfig


@pytest.mark.parametrize("settings, key", [
    ({"nodes": 0}, "nodes"),
    ({"nodes": 65}, "nodes"),
    ({"subnet": "not-a-net"}, "subnet"),
    ({"subnet": "127.0.0.0/24"}, "subnet"),
    ({"subnet": "198.18.77.0/28"}, "subnet"),
    ({"bridge": "a-very-long-bridge"}, "bridge"),
    ({"deploy_root": "relative/path"}, "deploy_root"),
    ({"deploy_root": "/srv"}, "deploy_root"),
    ({"mode": "docker"}, "mode"),
    ({"gate": "datadog"}, "gate"),
])
def test_bad_settings_name_the_key_and_what_was_expected(settings, key):
    with pytest.raises(ConfigError) as err:
        SandboxConfig(**settings)
    assert err.value.key == key
    assert str(err.value).startswith(f"sandbox settings: {key}: ")
    assert "\n" not in str(err.value)


def test_nodes_get_addresses_names_and_veths_in_order():
    cfg = SandboxConfig(nodes=12, subnet="198.18.77.0/24", bridge="lrbr0")
    nodes = cfg.all_nodes()
    assert [n.name for n in nodes][:3] == ["node1", "node2", "node3"]
    assert nodes[0].address == "198.18.77.11" and nodes[11].address == "198.18.77.22"
    assert nodes[11].veth == "lrbr0-12" and len(nodes[11].veth) <= 15
    assert cfg.gateway == "198.18.77.1"


def test_cli_rejects_a_bad_subnet_in_one_line_and_writes_nothing(tmp_path):
    state = tmp_path / "state"
    result = CliRunner().invoke(cli, ["sandbox", "up", "--subnet", "10.0.0.0/30", "--state-dir", str(state)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "subnet" in result.output
    assert not state.exists()


def test_unknown_node_is_a_usage_error(tmp_path):
    SandboxConfig(nodes=2, state_dir=str(tmp_path)).save()
    result = CliRunner().invoke(cli, ["sandbox", "fault", "node9", "link-down", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "node: one of node1, node2, got 'node9'" in result.output


def test_without_root_the_netns_sandbox_is_refused_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    result = CliRunner().invoke(cli, ["sandbox", "up", "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "needs root" in result.output and "--local" in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("provider", ["scrape", "prometheus"])
def test_the_sandbox_project_config_with_an_apm_gate_loads_as_written(tmp_path, provider):
    # Given the lrelease.yml a sandbox writes with --gate (and the fleet file it points at)
    import yaml

    from lrelease.config import load_config
    from lrelease.sandbox.fleet import project_config

    cfg = SandboxConfig(state_dir=str(tmp_path), gate=provider)
    data = project_config(cfg, gate_provider=cfg.gate)
    data["fleet"] = str(tmp_path / "fleet.yml")
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(
        {"nodes": {"node1": {"environment": "production", "address": "198.18.77.11"}}}))
    (tmp_path / "lrelease.yml").write_text(yaml.safe_dump(data))
    # When it is loaded
    env = load_config(tmp_path / "lrelease.yml").environment("production")
    # Then production is judged by the APM gate with that provider and the sandbox's bake
    assert env.gate is not None and env.gate.provider == provider
    assert env.gate.judge_config().max_bake_seconds == 80
    # And without a gate the same config checks /health only
    assert "gate" not in project_config(cfg)["environments"]["production"]
