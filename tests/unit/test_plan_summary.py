"""`lrelease plan` on a big fleet: each wave shows its first hosts and "+N more", so the table stays
readable on a narrow terminal; `--json` still lists every host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.cli.planview import HOSTS_SHOWN, summarise

WAVES = [1, 1, "5%", "25%", "100%"]


def write_big_project(root: Path, count: int) -> Path:
    """lrelease.yml (production, waves [1, 1, 5%, 25%, 100%]) and a fleet of ``count`` nodes, node00001 the canary."""
    lines = ["nodes:\n"]
    for i in range(1, count + 1):
        tags = " tags: [canary]," if i == 1 else ""
        address = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        lines.append(f"  node{i:05d}: {{environment: production,{tags} address: {address}}}\n")
    (root / "fleet.yml").write_text("".join(lines))
    config = {"version": 1, "app": "shop", "fleet": "fleet.yml", "state_dir": "state",
              "environments": {"production": {"waves": WAVES, "bake_seconds": 5, "deploy_root": "/srv/shop",
                                              "service": {"systemd": "shop"}}}}
    path = root / "lrelease.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def plan(path: Path, *args: str, columns: int = 80):
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(cli, ["plan", "--env", "production", *args,
                                                               "--config", str(path)], catch_exceptions=False)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    return write_big_project(tmp_path_factory.mktemp("big"), 10_000)


@pytest.mark.parametrize("columns", [80, 50])
def test_a_ten_thousand_host_plan_shows_each_waves_first_hosts_and_counts_the_rest(big, columns):
    # Given a fleet of 10,000 hosts in waves [1, 1, 5%, 25%, 100%]
    # When plan runs on a narrow terminal
    result = plan(big, columns=columns)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    # Then the big waves show their first hosts and, on a line of the cell, how many more: 500, 2,500 and the 6,998 left
    for more in (500 - HOSTS_SHOWN, 2500 - HOSTS_SHOWN, 6998 - HOSTS_SHOWN):
        assert f"│ +{more} more " in result.output if columns >= 80 else f"│ +{more}" in result.output
    # And no host past the first ones of its wave is named
    assert "node00006" not in out and "node00506" not in out and "node09999" not in out
    if columns >= 80:  # narrower, a name folds over two lines of its cell (never cut)
        assert "node00003*" in out and "node00503*" in out
    # And the first installs (every host: nothing recorded) are summarised the same way
    assert "no build recorded for node00001, node00002, node00003, +9997 more" in out
    # And the whole plan stays a screenful, not 10,000 names
    assert len(result.output.splitlines()) < 120
    assert max(len(line) for line in result.output.splitlines()) <= columns


def test_the_json_plan_still_lists_every_host(big):
    # Given the same 10,000 hosts
    # When plan runs with --json
    result = plan(big, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # Then every host is in the plan, once, in switching order, and in its wave
    expected = [f"node{i:05d}" for i in range(1, 10_001)]
    assert data["hosts"] == expected
    assert [h for w in data["waves"] for h in w["hosts"]] == expected
    assert [w["size"] for w in data["waves"]] == [1, 1, 500, 2500, 6998]
    assert data["first_install"] == expected


@pytest.mark.parametrize("hosts, text", [
    ([], ""),
    (["a"], "a"),
    (["a", "b", "c"], "a, b, c"),
    (["a", "b", "c", "d"], "a, b, c, d"),  # "+1 more" would be no shorter than the name
    (["a", "b", "c", "d", "e"], "a, b, c, +2 more"),
    ([f"h{i}" for i in range(1000)], "h0, h1, h2, +997 more"),
])
def test_summarise_names_the_first_hosts_and_counts_the_rest(hosts, text):
    assert HOSTS_SHOWN == 3
    assert summarise(hosts) == text


def test_summarise_marks_first_installs_among_the_names_it_shows():
    assert summarise(["a", "b", "c", "d", "e"], {"b", "e"}) == "a, b*, c, +2 more"
    assert summarise(["a", "b", "c", "d", "e"], more=",\n") == "a, b, c,\n+2 more"


def test_a_small_wave_is_shown_whole(tmp_path):
    # Given six hosts in waves [1, 1, 5%, 25%, 100%]: waves of 1, 1, 1, 1 and 2
    path = write_big_project(tmp_path, 6)
    # When plan runs
    out = " ".join(plan(path).output.split())
    # Then every host is named in the table and none is counted away there
    table = out.split("bake 5s: the environment's")[0]
    assert all(f"node0000{i}" in table for i in range(1, 7)) and "more" not in table
