"""Handling a roll-out's events is O(1) per event: no event makes the wrapper look through every
host or every event so far (the run's result, the progress view). bench/scale_bench.py measures it;
this test pins it without a clock: every collection that grows with the fleet refuses to be walked
while the events are handled."""

from __future__ import annotations

import io
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
from rich.console import Console

from lrelease.cli.progress import ProgressView
from lrelease.runner import RunResult, _EventTranslator

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from event_stream import deploy_events  # noqa: E402


class Scanned(AssertionError):
    pass


def _refuse(self, *args, **kwargs):
    raise Scanned(f"a {type(self).__name__} of {len(self)} was walked while events were handled")


class NoScanSet(set):
    __iter__ = _refuse


class NoScanDict(dict):
    __iter__ = keys = values = items = copy = _refuse


class NoScanOrderedDict(OrderedDict):
    __iter__ = keys = values = items = copy = _refuse


class NoScanList(list):
    __iter__ = _refuse


def guarded_result() -> RunResult:
    result = RunResult(status="successful")
    for name in ("staged", "switched", "reverted", "rolled_back", "app_stopped", "failed", "unreachable"):
        setattr(result, name, NoScanSet())
    result.failures, result.host_status, result.gates = NoScanDict(), NoScanDict(), NoScanList()
    return result


def guarded_view(hosts: list[str]) -> ProgressView:
    view = ProgressView(hosts, live=False, console=Console(file=io.StringIO(), width=120))
    view.state = NoScanDict(view.state)
    view.counts = NoScanDict(view.counts)
    view.recent = NoScanOrderedDict(view.recent)
    return view


@pytest.mark.parametrize("count", [100, 1000])
def test_no_event_walks_the_hosts_or_the_events_so_far(count):
    # Given a roll-out's events for `count` hosts, and a result and a progress view that refuse to be walked
    events = deploy_events(count)
    hosts = [f"node{i:05d}" for i in range(1, count + 1)]
    result, view = guarded_result(), guarded_view(hosts)
    handle = _EventTranslator(result, view.update)
    # When every event is handled
    for event in events:
        handle(event)
    # Then none was walked, and the run's result and the view hold every host
    assert result.stats is not None and result.waves == 5
    assert len(result.staged) == len(result.switched) == len(result.gates) == count
    assert dict.get(view.state, hosts[-1])[0] == "gate passed"
    assert dict.__getitem__(view.counts, "gate passed") == count


def test_a_walk_would_be_caught():
    # Given a guarded set
    guarded = NoScanSet({"a", "b"})
    # Then membership and size are fine, walking it is not
    assert "a" in guarded and len(guarded) == 2
    with pytest.raises(Scanned):
        sorted(guarded)


def render(view: ProgressView) -> str:
    console = Console(file=io.StringIO(), width=160)
    console.print(view)
    return console.file.getvalue()


def test_the_live_table_of_a_big_fleet_shows_the_last_changes_and_a_count_per_state():
    # Given a 1,000-host roll-out handled up to the middle of its last wave
    events = deploy_events(1000)
    hosts = [f"node{i:05d}" for i in range(1, 1001)]
    view = ProgressView(hosts, live=False, console=Console(file=io.StringIO()))
    handle = _EventTranslator(RunResult(status="successful"), view.update)
    cut = next(i for i, e in enumerate(events) if e["event_data"].get("host") == "node00600"
               and e["event_data"]["task"] == "lrelease gate")
    for event in events[:cut + 1]:
        handle(event)
    # When the live table is drawn
    table = view.__rich__()
    out = render(view)
    # Then it has 20 rows, the hosts that changed last (node00581 to node00600), not 1,000
    assert table.row_count == 20
    assert "node00600" in out and "node00581" in out and "node00580" not in out and "node00001" not in out
    # And its caption counts every host by state
    caption = " ".join(out.split())
    assert "1000 hosts: 400 staged, 600 gate passed; the last 20 that changed above" in caption


def test_a_small_fleet_still_shows_every_host():
    # Given six hosts, one staged
    view = ProgressView([f"h{i}" for i in range(6)], live=False, console=Console(file=io.StringIO()))
    handle = _EventTranslator(RunResult(status="successful"), view.update)
    handle({"event": "runner_on_ok", "event_data": {"host": "h3", "task": "staged", "role": "lrelease_stage",
                                                    "res": {"current": "1.0.0"}}})
    # Then the table lists all six, no caption
    out = render(view)
    assert view.__rich__().row_count == 6 and all(f"h{i}" in out for i in range(6)) and "hosts:" not in out
