"""Waves: the same batches Ansible's `serial` makes, capacity per wave, resume, estimate."""

from __future__ import annotations

import itertools
import json

import pytest
from ansible.executor.playbook_executor import PlaybookExecutor

from lrelease.plan import check_wave, estimate_seconds, plan_waves, skip_done


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
    assert set(data) == {"spec", "serial", "fleet_size", "hosts", "done", "waves"}
    assert data["spec"] == [1, "100%"] and data["done"] == ["a"] and data["serial"] == [2]
    assert data["waves"] == [{"index": 1, "hosts": ["b", "c"], "size": 2, "switched_before": 1,
                              "in_service_after": 0, "in_service_pct": 0.0}]
