"""Waves: the same batches Ansible's `serial` makes, capacity per wave, resume, estimate."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from ansible.executor.playbook_executor import PlaybookExecutor
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.config import load_config
from lrelease.plan import GateTiming, Pace, check_wave, estimate, estimate_seconds, plan_waves, skip_done
from lrelease.state import StateStore


def ansible_batches(hosts: list[str], serial: list) -> list[list[str]]:
    """Ansible's own batching (PlaybookExecutor._get_serialized_batches), on a stub play."""

    class Inventory:
        def get_hosts(self, pattern, order=None):
            return list(hosts)

    class Play:
        pass

    play = Play()
    play.hosts, play.order, play.serial = "all", "inventory", list(serial)
    executor = PlaybookExecutor.__new__(PlaybookExecutor)  # no playbooks, no TQM: batching only
    executor._inventory = Inventory()
    return executor._get_serialized_batches(play)


SERIALS = [
    [1], [2], [5], [1, "100%"], [1, 1, "50%", "100%"], ["10%"], ["33%"], ["1%"], ["100%"],
    [1, "25%"], [3, 2, 1], ["50%", 1], [1, "30%", "60%"], [2, "75%", 1], ["99%"], [7, "20%", "40%", "100%"],
]


@pytest.mark.parametrize("serial", SERIALS, ids=[json.dumps(s) for s in SERIALS])
def test_batches_match_ansible_for_every_fleet_size_up_to_60(serial):
    for count in range(0, 61):
        # Given a fleet of `count` hosts in inventory order
        hosts = [f"node{i}" for i in range(1, count + 1)]
        # When lrelease plans it and Ansible batches it with the same serial list
        plan = plan_waves(hosts, serial)
        # Then the waves are the same hosts in the same order
        assert [list(w.hosts) for w in plan.waves] == ansible_batches(hosts, serial), (count, serial)


def test_generated_serial_combinations_match_ansible():
    # Given every serial list of up to three values drawn from a mix of counts and percentages
    values = [1, 2, 4, "5%", "20%", "34%", "50%", "100%"]
    for size in (1, 2, 3):
        for serial in itertools.product(values, repeat=size):
            for count in (1, 2, 3, 6, 7, 10, 19, 20, 23):
                hosts = [f"h{i}" for i in range(count)]
                # Then lrelease and Ansible agree on every one of them
                assert [list(w.hosts) for w in plan_waves(hosts, serial).waves] == ansible_batches(hosts, list(serial))


def test_six_nodes_canary_then_growing_waves_and_capacity_left():
    # Given six hosts, canary first, and the production waves
    hosts = ["node1", "node2", "node3", "node4", "node5", "node6"]
    # When planned
    plan = plan_waves(hosts, [1, 1, "50%", "100%"])
    # Then: 1, 1, 3 (50% of 6), then the last 1
    assert [w.hosts for w in plan.waves] == [("node1",), ("node2",), ("node3", "node4", "node5"), ("node6",)]
    assert [w.index for w in plan.waves] == [1, 2, 3, 4]
    # And the hosts still on the old build and serving while each wave switches
    assert [w.in_service_after for w in plan.waves] == [5, 4, 1, 0]
    assert [w.in_service_pct for w in plan.waves] == [83.3, 66.7, 16.7, 0.0]
    assert [w.switched_before for w in plan.waves] == [0, 1, 2, 5]
    assert plan.serial == (1, 1, 3, 1)
    assert plan.fleet_size == 6 and plan.hosts == tuple(hosts)


def test_percentages_are_of_the_whole_fleet_not_of_what_is_left():
    # Given 10 hosts and 1 then 50%
    plan = plan_waves([f"n{i}" for i in range(10)], [1, "50%"])
    # Then 50% is 5 of 10 each time (not half of the 9 remaining)
    assert plan.serial == (1, 5, 4)


def test_small_percentages_round_down_but_never_to_zero():
    assert plan_waves(["a", "b", "c"], ["10%"]).serial == (1, 1, 1)
    assert plan_waves(["a", "b", "c"], ["66%"]).serial == (1, 1, 1)
    assert plan_waves(["a", "b", "c"], ["67%"]).serial == (2, 1)


def test_duplicate_hosts_count_once_like_ansible():
    plan = plan_waves(["a", "b", "a", "c"], [1])
    assert plan.hosts == ("a", "b", "c") and plan.fleet_size == 3


def test_no_hosts_no_waves():
    plan = plan_waves([], [1, "100%"])
    assert plan.waves == () and estimate_seconds(plan, 10) == 0.0


@pytest.mark.parametrize("bad", [0, -1, True, "0%", "101%", "50", "5.5%", "%", None, 1.5, [1]])
def test_values_ansible_would_misread_are_refused(bad):
    with pytest.raises(ValueError, match="percentage"):
        check_wave(bad)
    with pytest.raises(ValueError, match=r"wave .*expected"):
        plan_waves(["a"], [1, bad])


def test_resume_skips_hosts_already_done_and_drops_empty_waves():
    # Given the production plan, where the canary and node3 already run the new build
    plan = plan_waves([f"node{i}" for i in range(1, 7)], [1, 1, "50%", "100%"])
    # When resuming
    resumed = skip_done(plan, ["node1", "node3", "not-in-plan"])
    # Then the canary's wave is gone, node3 left its wave, and waves are renumbered
    assert [w.hosts for w in resumed.waves] == [("node2",), ("node4", "node5"), ("node6",)]
    assert [w.index for w in resumed.waves] == [1, 2, 3]
    assert resumed.done == ("node1", "node3")
    # And done hosts count as switched: they serve the new build
    assert [w.in_service_after for w in resumed.waves] == [3, 1, 0]
    assert resumed.serial == (1, 2, 1)
    # And the explicit serial makes Ansible batch the remaining hosts exactly as planned
    assert [tuple(b) for b in ansible_batches(list(resumed.hosts), list(resumed.serial))] == \
        [w.hosts for w in resumed.waves]


def test_resuming_twice_keeps_what_was_done_the_first_time():
    plan = plan_waves(["a", "b", "c", "d"], [1])
    twice = skip_done(skip_done(plan, ["a"]), ["b"])
    assert twice.done == ("a", "b") and twice.hosts == ("c", "d")
    assert skip_done(plan, ["a", "b", "c", "d"]).waves == ()


def test_estimate_counts_stage_once_then_switch_and_bake_per_wave():
    plan = plan_waves([f"n{i}" for i in range(6)], [1, 1, "50%", "100%"])
    assert estimate_seconds(plan, 10, per_host_switch_seconds=4, stage_seconds=15) == 15 + 4 * 4 + 10 * 4
    # a wave wider than the forks switches in several rounds
    wide = plan_waves([f"n{i}" for i in range(30)], ["100%"])
    assert estimate_seconds(wide, 0, per_host_switch_seconds=2, stage_seconds=0, forks=24) == 4
    with pytest.raises(ValueError):
        estimate_seconds(wide, 0, forks=0)


def test_to_dict_is_json_with_stable_keys():
    plan = skip_done(plan_waves(["a", "b", "c"], [1, "100%"]), ["a"])
    data = json.loads(json.dumps(plan.to_dict()))
    assert set(data) == {"spec", "serial", "fleet_size", "hosts", "done", "waves", "pauses"}
    assert data["spec"] == [1, "100%"] and data["done"] == ["a"] and data["serial"] == [2]
    assert data["waves"] == [{"index": 1, "hosts": ["b", "c"], "size": 2, "switched_before": 1,
                              "in_service_after": 0, "in_service_pct": 0.0}]


# -- the estimate with its gate, and `plan` / `deploy --dry-run` through the CLI ----------------
# (plan reads no host: the fleet's addresses are documentation ones no test may reach)
FLEET = {"nodes": {f"node{i}": {"environment": "production", "address": f"198.51.100.{10 + i}",
                                **({"tags": ["canary"]} if i == 1 else {})} for i in range(1, 7)}}
APM_GATE = {"provider": "scrape", "bake_seconds": 20, "interval_seconds": 20, "max_bake_seconds": 80, "policy": "halt"}


def write_project(root: Path, **env) -> Path:
    """lrelease.yml (one environment, production, six nodes in waves [1, 1, 50%, 100%]) and its fleet."""
    (root / "fleet.yml").write_text(yaml.safe_dump(FLEET))
    production = {"waves": [1, 1, "50%", "100%"], "bake_seconds": 5, "gate_timeout_seconds": 20,
                  "deploy_root": "/srv/shop", "service": {"systemd": "shop"}, **env}
    config = {"version": 1, "app": "shop", "fleet": "fleet.yml", "state_dir": "state",
              "environments": {"production": production}}
    path = root / "lrelease.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def env_of(path):
    return load_config(path).environment("production")


def lrelease(path, *args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(cli, [*args, "--config", str(path)], catch_exceptions=False)


def test_the_apm_gate_bake_wins_over_the_environments_and_its_looks_bound_the_longest_estimate(tmp_path):
    # Given an environment with bake_seconds 5 and an APM gate baking 20 s, a look every 20 s up to 80 s
    gate = GateTiming.for_environment(env_of(write_project(tmp_path, gate=APM_GATE)))
    plan = plan_waves([f"node{i}" for i in range(1, 7)], [1, 1, "50%", "100%"])
    # Then the gate's bake applies, and it says where it comes from
    assert (gate.kind, gate.bake_seconds, gate.bake_from, gate.max_looks) == ("apm", 20, "gate.bake_seconds", 4)
    # And with no gate recorded, the estimate is staging, then per wave the switch, the bake and
    # 2.5 looks (the middle of 1 to 4: the second look 20 s after the first, the third 40 s)
    est = estimate(plan, gate, Pace(stage_seconds=15, switch_seconds=4))
    assert gate.look_seconds == 1 and est.waves == (55.0, 55.0, 55.0, 55.0) and est.seconds == 15 + 4 * 55
    # And the range runs from one look per gate to all four
    assert (est.low_seconds, est.high_seconds) == (15 + 4 * 25, 15 + 4 * 85)
    # And the longest is every wave baking to its maximum, its last look's work on top
    assert est.max_seconds == 15 + 4 * (4 + 80 + 1)


def test_without_its_own_bake_the_gate_takes_the_environments():
    class Env:  # duck-typed like EnvironmentConfig: no gate section
        gate, bake_seconds, gate_timeout_seconds, health_path = None, 7.0, 30.0, "/healthz"

    http = GateTiming.for_environment(Env())
    assert (http.kind, http.bake_seconds, http.bake_from) == ("http", 7.0, "bake_seconds")
    plan = plan_waves(["a", "b"], [1])
    est = estimate(plan, http, Pace(stage_seconds=10, switch_seconds=2))
    assert (est.seconds, est.max_seconds) == (10 + 2 * (2 + 7 + 1), 10 + 2 * (2 + 7 + 30 + 1))


def test_a_gate_section_without_bake_seconds_uses_the_environments(tmp_path):
    gate = dict(APM_GATE)
    del gate["bake_seconds"]
    timing = GateTiming.for_environment(env_of(write_project(tmp_path, bake_seconds=12, gate=gate)))
    assert (timing.bake_seconds, timing.bake_from) == (12, "bake_seconds (gate.bake_seconds unset or equal)")


def test_plan_shows_each_waves_gate_which_bake_applies_and_the_gated_estimate(tmp_path):
    # Given a project whose production environment has the APM gate
    path = write_project(tmp_path, gate=APM_GATE)
    # When plan runs
    result = lrelease(path, "plan", "--env", "production")
    # Then every wave names its gate: provider, what it compares with, bake, looks and policy
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert out.count("apm scrape vs") == 4 and "vs 5 hosts not yet switched" in out and "vs 1 host not yet" in out
    assert "apm scrape vs its own past, health /health: bake 20s, a look every 20s up to 80s, policy halt" in out
    # And it says which bake_seconds applies
    assert "bake 20s: the gate's bake_seconds, which wins over the environment's bake_seconds (5s" in out
    # And the estimate counts the gate's bake, not the environment's
    data = json.loads(lrelease(path, "plan", "--env", "production", "--json").stdout)
    expected = estimate(plan_waves(data["hosts"], [1, 1, "50%", "100%"]), GateTiming.for_environment(env_of(path)))
    # With no gate recorded, each gate is expected to take the middle of its 1 to 4 looks, and the
    # range runs from every gate deciding at its first look to every gate taking all four
    assert "the bake and 2.5 looks (no gate recorded yet: the middle of 1 to 4)" in out
    assert data["gate"]["looks_range"] == [1, 4]
    assert data["estimate_low_seconds"] == expected.low_seconds < expected.seconds < expected.high_seconds
    assert expected.high_seconds - expected.low_seconds == pytest.approx(4 * 3 * 20)  # 4 waves, 3 more looks, 20 s apart
    assert (f"usually {expected.low_seconds:.0f}-{expected.high_seconds:.0f} s (every gate deciding at look 1 to "
            "look 4: nothing recorded yet)") in out
    assert "Staging and switch times: defaults (no roll-out recorded for production yet)" in out
    assert data["estimate_seconds"] == expected.seconds > 4 * 20
    assert data["estimate_max_seconds"] == expected.max_seconds > 4 * 80
    assert [w["estimate_seconds"] for w in data["waves"]] == list(expected.waves)
    assert f"about {expected.seconds / 60:.1f} min ({expected.seconds:.0f} s" in out
    assert f"up to {expected.max_seconds / 60:.1f} min ({expected.max_seconds:.0f} s) if every gate looks" in out


def test_plan_marks_hosts_with_no_build_recorded_as_first_installs(tmp_path):
    # Given a state database where node1 passed its gate, node2 was rolled back after a failed gate,
    # node3 was switched by an interrupted roll-out, and node4's first install failed its gate
    # (its app stopped: no rollback); node5 and node6 were never touched
    path = write_project(tmp_path)
    with StateStore(tmp_path / "state" / "lrelease.db") as store:
        store.start_rollout("production", "1.0.0", "deploy", "ann", rollout_id="r1")
        for host, phases in {"node1": ("switched", "gate_passed"), "node2": ("switched", "gate_failed", "rolled_back"),
                             "node3": ("switched",), "node4": ("switched", "gate_failed"), "node5": ("staged",)}.items():
            for phase in phases:
                store.record_host("r1", host, phase)
        store.finish_rollout("r1", "rolled_back", 1)
        store.start_rollout("staging", "1.0.0", "deploy", "ann", rollout_id="r2")  # another environment's
        store.record_host("r2", "node6", "gate_passed")
    # When plan runs (as JSON and for a human)
    data = json.loads(lrelease(path, "plan", "--env", "production", "--json").stdout)
    out = " ".join(lrelease(path, "plan", "--env", "production").stdout.split())  # as read, not as wrapped
    # Then exactly the hosts without a recorded build are first installs
    assert data["first_install"] == ["node4", "node5", "node6"]
    assert "node3, node4*, node5*" in out and "node6*" in out and "node1*" not in out
    # And it says what that means and that it is the state database's view
    assert "* first install (no build recorded): the state database has no build recorded for node4, node5, node6" in out
    assert "a failed gate stops its app and leaves it drained: there is nothing to roll back to" in out
    assert "This is the state database's view, not the host's" in out


def test_deploy_dry_run_shows_the_same_plan(tmp_path):
    # Given the gated project and a build's artifact
    path = write_project(tmp_path, gate=APM_GATE)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    tarball = artifacts / "shop-2.0.0.tar.gz"
    tarball.write_bytes(b"not really a tarball, but its checksum is right")
    (artifacts / "shop-2.0.0.tar.gz.sha256").write_text(hashlib.sha256(tarball.read_bytes()).hexdigest() + "\n")
    # When deploy --dry-run runs
    dry = lrelease(path, "deploy", "--env", "production", "--build", "2.0.0", "--dry-run", "--json")
    # Then it is the plan's output, gate, estimate and first installs included, and nothing ran
    assert dry.exit_code == 0, dry.output
    data, plan = json.loads(dry.stdout), json.loads(lrelease(path, "plan", "--env", "production", "--json").stdout)
    assert data["dry_run"] is True
    for key in ("estimate_seconds", "estimate_max_seconds", "gate", "bake", "first_install", "waves"):
        assert data[key] == plan[key], key
    assert data["first_install"] == [f"node{i}" for i in range(1, 7)]
    with StateStore(tmp_path / "state" / "lrelease.db") as store:
        assert store.history("production") == []


def test_the_looks_a_wave_usually_takes_come_from_the_gates_recorded_for_the_environment(tmp_path):
    # Given production's last APM gates took 1, 2 and 3 looks (6 s of fetching and judging in all),
    # beside an http gate and another environment's APM gate, which do not count
    path = write_project(tmp_path, gate=APM_GATE)
    with StateStore(tmp_path / "state" / "lrelease.db") as store:
        store.start_rollout("production", "1.0.0", "deploy", "ann", rollout_id="r1")
        for wave, looks in enumerate((1, 2, 3), 1):
            store.record_gate("r1", wave, f"node{wave}", "pass", {"gate": "apm", "looks": looks, "gate_seconds": 2.0})
        store.record_gate("r1", 4, "node4", "pass", {"gate": "http", "elapsed": 3.0})
        store.start_rollout("staging", "1.0.0", "deploy", "ann", rollout_id="r2")
        store.record_gate("r2", 1, "node6", "pass", {"gate": "apm", "looks": 4, "gate_seconds": 9.0})
        assert store.gate_history("production") == [(3, 2.0), (2, 2.0), (1, 2.0)]
    # When plan runs
    data = json.loads(lrelease(path, "plan", "--env", "production", "--json").stdout)
    text = " ".join(lrelease(path, "plan", "--env", "production").stdout.split())
    # Then a one-host wave's gate is its bake and 2 looks, the mean (the second look an interval
    # later, its work of 1 s on top); a wave of hosts waits for its slowest gate: the expected
    # largest of that many draws from {1, 2, 3}, e.g. 1/9 + 2 x 3/9 + 3 x 5/9 = 22/9 looks for two
    gate = data["gate"]
    assert (gate["expected_looks"], gate["look_seconds"], gate["looks_from"]) == (2.0, 1.0, 3)
    switch = 4.0  # per wave of at most 24 hosts (DEFAULT_SWITCH_SECONDS)
    largest = {1: 2.0, 2: 22 / 9, 3: 1 / 27 + 2 * 7 / 27 + 3 * 19 / 27}
    sizes = [len(w["hosts"]) for w in data["waves"]]
    assert sizes[:2] == [1, 1] and max(sizes) > 1
    assert data["estimate_wave_seconds"] == pytest.approx([switch + 20 + 20 * (largest[n] - 1) + 1.0 for n in sizes])
    assert "the bake and 2.0 looks, the mean of the last 3 gates recorded" in text
    assert "waits for its slowest gate" in text
    # And the range runs from every gate deciding at its first look to every gate at its third,
    # as the recorded gates did
    assert gate["looks_range"] == [1, 3]
    stage = data["estimate_stage_seconds"]
    assert data["estimate_low_seconds"] == pytest.approx(stage + len(sizes) * (switch + 20 + 1.0))
    assert data["estimate_high_seconds"] == pytest.approx(stage + len(sizes) * (switch + 20 + 40 + 1.0))
    assert (f"usually {data['estimate_low_seconds']:.0f}-{data['estimate_high_seconds']:.0f} s (every gate deciding "
            "at look 1 to look 3: as the last 3 gates recorded did)") in text


class Clock:
    """The state store's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 21, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_staging_and_switch_times_are_learned_from_the_roll_outs_recorded_for_the_environment(tmp_path):
    # Given a recorded roll-out of production: staged 30 s after it started, then two waves whose
    # gates took 25 s each, finished 100 s after the start: 20 s went to the work around the gates
    path = write_project(tmp_path, gate=APM_GATE)
    clock = Clock()
    with StateStore(tmp_path / "state" / "lrelease.db", clock=clock) as store:
        store.start_rollout("production", "1.0.0", "deploy", "ann", rollout_id="r1")
        clock.wait(30)
        store.record_host("r1", "node1", "staged")
        for wave in (1, 2):
            store.record_gate("r1", wave, f"node{wave}", "pass", {"gate": "apm", "looks": 1, "elapsed": 25.0,
                                                                   "gate_seconds": 1.0})
        clock.wait(70)
        store.finish_rollout("r1", "succeeded", 0)
        # and one that did not succeed, which teaches nothing
        store.start_rollout("production", "1.1.0", "deploy", "ann", rollout_id="r2")
        clock.wait(500)
        store.finish_rollout("r2", "rolled_back", 1)
    # When plan runs
    data = json.loads(lrelease(path, "plan", "--env", "production", "--json").stdout)
    text = " ".join(lrelease(path, "plan", "--env", "production").stdout.split())
    # Then staging takes 30 s and each wave 10 s beyond its gate (bake 20 s and one look of 1 s)
    assert data["pace"] == {"stage_seconds": 30.0, "switch_seconds": 10.0, "runs": 1}
    assert data["estimate_stage_seconds"] == 30.0 and data["estimate_wave_seconds"] == [10.0 + 20 + 1] * 4
    assert "Staging and switch times: the median of the last 1 roll-outs recorded for production" in text


def test_a_recorded_run_that_does_not_add_up_is_skipped():
    good = {"started_at": "2026-11-29T21:00:00+00:00", "staged_at": "2026-11-29T21:00:10+00:00",
            "finished_at": "2026-11-29T21:01:10+00:00", "gate_seconds": {1: 20.0, 2: 20.0}}
    bad = [{**good, "staged_at": None}, {**good, "gate_seconds": {}}, {**good, "finished_at": "2026-11-29T21:00:20"},
           {**good, "gate_seconds": {1: float("nan")}}, {"started_at": "yesterday"}]
    assert Pace.from_runs([good, *bad]) == Pace(stage_seconds=10.0, switch_seconds=10.0, runs=1)
    assert Pace.from_runs(bad) == Pace()
