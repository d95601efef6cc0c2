# Copyright lrelease contributors
# Apache-2.0
"""bench_timing: where a playbook's time goes, per task and per host (``rollout_bench.py --profile``).

ansible.posix's profile_tasks is not installed here (no collections); this is the part of it
the benchmark needs, written to a file so that it also works under ansible-runner, whose
stdout lrelease does not show."""

from __future__ import annotations

import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: bench_timing
type: aggregate
short_description: Per-task wall time and per-host finish times, appended to $LRELEASE_BENCH_TIMING
description:
  - Enable with C(ANSIBLE_CALLBACKS_ENABLED=bench_timing) and C(ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins).
  - "Each line: seconds since the playbook started, the task's wall time, its name, and when each
    host finished it (seconds after the task started). Tasks under 0.05 s are left out."
options: {}
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._t0 = time.monotonic()
        self._rows: list[tuple[float, float, str, dict[str, float]]] = []
        self._task: tuple[str, float] | None = None
        self._hosts: dict[str, float] = {}

    def _close(self) -> None:
        if self._task is not None:
            name, start = self._task
            self._rows.append((start - self._t0, time.monotonic() - start, name, self._hosts))
        self._task, self._hosts = None, {}

    def v2_playbook_on_play_start(self, play):
        self._close()
        self._rows.append((time.monotonic() - self._t0, 0.0, f"PLAY {play.get_name()}", {}))

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        self._task = (task.get_name(), time.monotonic())

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _host_done(self, result, *args, **kwargs):
        if self._task is not None:
            self._hosts[result._host.get_name()] = time.monotonic() - self._task[1]

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_skipped = v2_runner_on_unreachable = _host_done

    def v2_playbook_on_stats(self, stats):
        self._close()
        lines = []
        for at, took, name, hosts in self._rows:
            if took < 0.05 and not name.startswith("PLAY "):
                continue
            done = " ".join(f"{h}={s:.2f}" for h, s in sorted(hosts.items()))
            lines.append(f"{at:7.2f} {took:6.2f}  {name[:64]:<64} {done}")
        lines.append(f"{time.monotonic() - self._t0:7.2f}  total")
        path = os.environ.get("LRELEASE_BENCH_TIMING")
        if path:
            with open(path, "a") as fh:
                fh.write("\n".join(lines) + "\n\n")
        else:
            self._display.display("\n".join(lines))
