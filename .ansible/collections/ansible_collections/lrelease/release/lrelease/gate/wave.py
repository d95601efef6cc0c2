"""One judgement per wave: the gate task of the wave's first host judges every host of the wave
and leaves each other host's result on a board, where that host's own gate task picks it up.

Under Ansible each host of a wave runs its own ``lrelease_gate`` task, each its own process.
Judged one by one, every task would fetch and summarise every reference host and redo the
judge's reference side at every look: work growing with canaries x references. Instead the
task of the wave's first host (in play order; the same for every task) runs
``bake.run_wave_bake`` for all of them — one sampler, one fetch and one reference summary per
look — and publishes each host's verdict and evidence as soon as that host is decided; the
other tasks wait for theirs and return it as their own result, so every host still gets its own
gate result, event and record, with the evidence its own judgement would have had.

The board is a directory per wave (its name a digest of the run, the wave's hosts and its
reference hosts: a resumed or later run never reads an earlier one's results), one JSON file
per host, written to a temporary name and renamed into place (a reader never sees half a
file). A task removes its file once read, and the directory when it is empty (the writer makes it
again if it still has results to leave). A task that finds no
result by its deadline (the judging task died, or never ran) judges its host itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

POLL_SECONDS = 0.1  # how often a waiting task looks at the board
GRACE_SECONDS = 120.0
PUBLISH_TRIES = 10  # a board directory removed under a write is made again, this many times at most  # beyond the longest bake, before a waiting task judges its host itself


class WaveBoard:
    def __init__(self, root: str | os.PathLike[str], run: str, wave: Sequence[str], reference: Sequence[str]):
        digest = hashlib.sha256(json.dumps([run, sorted(wave), sorted(reference)]).encode()).hexdigest()[:24]
        self.path = Path(root) / digest

    def _file(self, host: str) -> Path:
        return self.path / (quote(host, safe="") + ".json")

    def publish(self, host: str, result: Mapping[str, Any]) -> None:
        """Leave ``result`` (JSON-friendly) for ``host``'s task. A task that has just taken its own
        result may remove the (then empty) directory between its creation here and the write:
        it is made again (once the file is in it, it is not empty and stays)."""
        target = self._file(host)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        data = json.dumps(result, allow_nan=True)
        for attempt in range(PUBLISH_TRIES):
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                tmp.write_text(data, encoding="utf-8")
                break
            except FileNotFoundError:
                if attempt == PUBLISH_TRIES - 1:
                    raise
        os.replace(tmp, target)

    def take(self, host: str, deadline: float, *, clock: Callable[[], float] = time.time,
             sleep: Callable[[float], None] = time.sleep) -> dict[str, Any] | None:
        """``host``'s result once published (then removed from the board), or None at ``deadline``."""
        target = self._file(host)
        while True:
            try:
                data = json.loads(target.read_text(encoding="utf-8"))
            except FileNotFoundError:
                left = deadline - clock()
                if left <= 0:
                    return None
                sleep(min(POLL_SECONDS, left))
                continue
            target.unlink(missing_ok=True)
            try:
                self.path.rmdir()  # the last task of the wave leaves nothing behind
            except OSError:
                pass
            return data

    @staticmethod
    def discard(root: str | os.PathLike[str]) -> None:
        """Remove a roll-out's boards (results nobody took: their tasks are gone)."""
        base = Path(root)
        if not base.is_dir():
            return
        for board in base.iterdir():
            if board.is_dir():
                for item in board.iterdir():
                    item.unlink(missing_ok=True)
                board.rmdir()
        base.rmdir()
