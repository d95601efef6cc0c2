"""Test-only fault injection for steps the controller takes outside Ansible.

With ``LRELEASE_TEST_KILL_AT=<point>`` in its environment, the process SIGKILLs itself when it
reaches that point, so a test can check what a process dying exactly there leaves behind and that
the next run recovers (tests/unit/test_git_release.py). Points: ``build-stored`` (`lrelease build`:
the artifact is in the store, not yet recorded), ``hotfix-reverted`` (`lrelease hotfix revert`:
reverted on the integration branch, not yet picked into the release branch). Never set it in use.
"""

from __future__ import annotations

import os
import signal

TEST_KILL_AT = "LRELEASE_TEST_KILL_AT"


def kill_point(point: str) -> None:
    """SIGKILL this process if the test asked for ``point``; nothing otherwise."""
    if os.environ.get(TEST_KILL_AT) == point:
        os.kill(os.getpid(), signal.SIGKILL)
