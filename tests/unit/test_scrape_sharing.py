"""The scrape gate's readings file is append-only (JSON lines), and the gate tasks of one wave
share one reading per host per look: real processes, real files, real HTTP on loopback."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from pathlib import Path

import pytest

from lrelease.apm import HostRef, Window
from lrelease.apm.scrape import Failure, Reading, ReadingStore, ScrapeProvider, ScrapeSettings
from lrelease.sandbox.demoapp import gate as demo_gate
from tests.unit.loopback import serve

PAGE = (Path(__file__).parent / "fixtures" / "apm" / "scrape" / "demoapp_t0.txt").read_text()
FORK = multiprocessing.get_context("fork")


def settings(path: Path, **extra) -> ScrapeSettings:
    return ScrapeSettings(**{**demo_gate.SCRAPE, "state_path": str(path), **extra})


def r(at: float, value: float = 1.0) -> Reading:
    return Reading(at, 1.0, {("requests", (("code", "200"),)): value})


# --- the append-only store -------------------------------------------------------------------


def _append_batches(path: str, name: str, batches: int) -> None:
    store = ReadingStore(path)
    for i in range(batches):  # each batch: one reading of three hosts, as a look appends them
        store.add_many({f"{name}-{h}": r(float(i)) for h in range(3)})


def test_two_processes_appending_at_once_lose_nothing(tmp_path):
    # Given two processes appending 150 batches each to one readings file at the same time
    path = str(tmp_path / "readings.json")
    workers = [FORK.Process(target=_append_batches, args=(path, name, 150)) for name in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    # Then every line is whole JSON, and every reading of both is there exactly once
    lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert Counter(line["host"] for line in lines) == {f"{n}-{h}": 150 for n in "ab" for h in range(3)}
    store = ReadingStore(path)
    assert [x.at for x in store.readings("b-2")] == [float(i) for i in range(150)]


def test_a_reader_takes_in_only_what_was_appended_since_its_last_read(tmp_path):
    # Given a reader that has read the file once
    path = tmp_path / "readings.json"
    writer = ReadingStore(str(path))
    writer.add("n1", r(1.0))
    reader = ReadingStore(str(path))
    assert [x.at for x in reader.readings("n1")] == [1.0]
    read_up_to = path.stat().st_size
    # When another store appends two more readings
    writer.add_many({"n1": r(2.0), "n2": r(2.0)})
    # Then the reader's refresh reads from where it stopped, and takes in each reading once
    with open(path, "r+b") as f:  # spoil the bytes already read: a reader reading afresh would lose n1@1
        f.write(b"X" * read_up_to)
    reader.refresh()
    reader.refresh()
    assert [x.at for x in reader.readings("n1")] == [1.0, 2.0]
    assert [x.at for x in reader.readings("n2")] == [2.0]


def test_a_partial_last_line_is_left_and_the_next_writer_ends_it(tmp_path):
    # Given a file whose last line a killed writer left half written
    path = tmp_path / "readings.json"
    ReadingStore(str(path)).add("n1", r(1.0))
    with open(path, "ab") as f:
        f.write(b'{"host":"n1","at":2.0,"start_ti')
    # When a store reads it, Then the whole lines count and the half line does not
    store = ReadingStore(str(path))
    assert [x.at for x in store.readings("n1")] == [1.0]
    # When a writer appends next
    store.add("n1", r(3.0))
    # Then its line stands on its own: a fresh reader sees readings 1 and 3, the half line skipped
    assert [x.at for x in ReadingStore(str(path)).readings("n1")] == [1.0, 3.0]
    assert path.read_text().splitlines()[1] == '{"host":"n1","at":2.0,"start_ti'


def test_the_file_is_compacted_rarely_and_readers_follow_it(tmp_path, monkeypatch):
    # Given stores that keep 5 readings per host in memory, and a reader that has read the file
    monkeypatch.setattr(ReadingStore, "MAX_PER_HOST", 5)
    path = tmp_path / "readings.json"
    writer, reader = ReadingStore(str(path)), ReadingStore(str(path))
    # When 40 readings of one host are appended one by one
    for i in range(40):
        writer.add("n1", r(float(i)))
    # Then the file never holds more than twice what is kept (plus the line that tipped it)
    assert len(path.read_text().splitlines()) <= 2 * 5 + 1
    # And it was rewritten only now and then, not at every write
    assert writer.bytes_written < 3 * 40 * len(path.read_text().splitlines()[0])
    # And the reader, whose offset pointed into the old file, reads the new one afresh
    reader.refresh()
    assert [x.at for x in reader.readings("n1")] == [35.0, 36.0, 37.0, 38.0, 39.0]
    # And a compaction keeps the reading whose append set it off
    for i in range(40, 100):
        writer.add("n1", r(float(i)))
        assert ReadingStore(str(path)).latest("n1").at == float(i)


def test_the_whole_file_format_of_earlier_versions_is_still_read(tmp_path):
    # Given a readings file as lrelease wrote it before JSON lines (a resume after an upgrade)
    path = tmp_path / "readings.json"
    path.write_text(json.dumps({"n1": [{"at": 5.0, "start_time": 1.0, "counters": [["requests", [], 3]]}]}))
    # When a store reads it and appends
    store = ReadingStore(str(path))
    store.add("n1", r(6.0))
    # Then both readings are there, for this store and a fresh one
    assert [x.at for x in store.readings("n1")] == [5.0, 6.0]
    assert [x.at for x in ReadingStore(str(path)).readings("n1")] == [5.0, 6.0]


# --- one reading per host per look for the whole wave -----------------------------------------


@pytest.fixture
def fleet():
    """Hosts on one loopback server: host i answers /h<i>/metrics with a demo app page."""
    with serve(lambda req: (200, PAGE, {"Content-Type": "text/plain; version=0.0.4"})) as stub:
        yield stub


def _gate_task(path: str, urls: list[str], canary: int, barrier, out) -> None:
    """One gate task of a wave (its own process): mark every host, then one look."""
    provider = ScrapeProvider(settings(Path(path), tolerance=30.0))
    hosts = [HostRef(f"h{i}", url=url) for i, url in enumerate(urls)]
    mine = [hosts[canary], *hosts[len(urls) // 2:]]  # the canary, and the reference hosts
    barrier.wait(timeout=30)
    provider.mark(mine)
    start = min(x.at for x in provider.store.readings(mine[0].name))
    barrier.wait(timeout=30)
    os.sched_yield()
    looked = provider.fetch(mine, Window(start, start + 1.0))
    out.put((canary, provider.scrapes, {n: (m.requests, m.reachable, m.detail) for n, m in looked.items()}))


def test_the_tasks_of_one_look_read_each_host_once(tmp_path, fleet):
    # Given a wave of 4 canaries against 4 reference hosts, each canary's gate task its own process
    urls = [f"{fleet.url}/h{i}" for i in range(8)]
    path = str(tmp_path / "readings.json")
    barrier, out = FORK.Barrier(4), FORK.Queue()
    # When all four mark their hosts and look at the same moment
    tasks = [FORK.Process(target=_gate_task, args=(path, urls, c, barrier, out)) for c in range(4)]
    for t in tasks:
        t.start()
    results = [out.get(timeout=60) for _ in tasks]
    for t in tasks:
        t.join(timeout=30)
    # Then each host's /metrics was read once per look (a mark and a look: twice), not once per task
    served = Counter(req.path for req in fleet.requests)
    assert served == {f"/h{i}/metrics": 2 for i in range(8)}
    assert sum(scrapes for _, scrapes, _ in results) == 16
    # And every task saw the same reference hosts alike (no new traffic: 0 requests, reachable)
    for _, _, looked in results:
        assert {n: v for n, v in looked.items() if n >= "h4"} == {f"h{i}": (0.0, True, "") for i in range(4, 8)}


def test_a_host_that_cannot_be_read_is_tried_once_and_reported_alike_by_every_task(tmp_path, fleet):
    # Given two gate tasks of one wave, and a reference host whose /metrics answers 503
    with serve(lambda req: (503, "overloaded")) as down:
        hosts = [HostRef("ok", url=f"{fleet.url}/ok"), HostRef("down", url=down.url)]
        first, second = (ScrapeProvider(settings(tmp_path / "readings.json", tolerance=30.0)) for _ in range(2))
        # When both look at the same moment
        a = first.fetch(hosts, Window(0.0, 1e10))["down"]
        b = second.fetch(hosts, Window(0.0, 1e10))["down"]
    # Then it was asked once, and both report it as a task reading it itself would
    assert len(down.requests) == 1 and second.scrapes == 0
    assert (a.no_data, a.reachable, a.detail) == (True, True, b.detail) and "HTTP 503" in b.detail
    assert b.reachable is True and b.no_data


def test_an_unreachable_host_is_reported_unreachable_by_the_task_that_did_not_try(tmp_path):
    # Given a failed read another task kept a moment ago
    path = tmp_path / "readings.json"
    ReadingStore(str(path)).add_many({"gone": Failure(999.0, Failure.UNREACHABLE, "scrape: cannot reach x")})
    provider = ScrapeProvider(settings(path), get=lambda url: pytest.fail("asked again"), clock=lambda: 1000.0)
    # When this task looks, Then it reports the host unreachable with the same words
    metrics = provider.fetch([HostRef("gone", url="http://x")], Window(900.0, 1000.0))["gone"]
    assert (metrics.reachable, metrics.no_data, metrics.detail) == (False, True, "scrape: cannot reach x")


def test_a_task_never_takes_its_own_previous_reading_as_a_new_look(tmp_path, fleet):
    # Given a task that marked a host, and a tolerance longer than the time to its next look
    provider = ScrapeProvider(settings(tmp_path / "readings.json", tolerance=30.0))
    host = HostRef("h0", url=f"{fleet.url}/h0")
    provider.mark([host])
    # When it looks at once (bake 0), and again
    provider.fetch([host], Window(0.0, 1e10))
    provider.fetch([host], Window(0.0, 1e10))
    # Then each look read the host anew
    assert len(fleet.requests) == 3 and provider.scrapes == 3
