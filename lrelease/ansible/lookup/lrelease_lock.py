# Copyright lrelease contributors
# Apache-2.0
"""lrelease_lock: does this run still hold its environment's lock? (the fencing check of a wave)"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

try:
    from lrelease.policystep import window_check
    from lrelease.secrets import scrub
    from lrelease.state import lock_check
except ImportError:  # run from a checkout whose package is not installed (AWX project sync)
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from lrelease.policystep import window_check
    from lrelease.secrets import scrub
    from lrelease.state import lock_check

DOCUMENTATION = r"""
name: lrelease_lock
short_description: Whether a roll-out still holds its environment's lock (fencing token)
description:
  - "Reads the lrelease state database (read-only) and answers C(held) when the lock of O(env)
    still carries O(token), else one line naming the holder that took it over (or C(released)).
    deploy.yml asks before each wave when the wrapper passes C(lrelease_lock): a roll-out whose lock
    was taken over while it was paused starts no further wave."
  - "With O(closes_at) (the wrapper passes it for a deploy inside the environment's deploy window;
    a plain or AWX run's policy step sets it from that window), a held lock whose window has closed
    answers one line starting C(window closed): the run stops at this wave boundary and is recorded
    C(paused)."
options:
  db:
    description: "Path of the state database (SQLite) on the controller; empty: the PostgreSQL URL in
      the controller's environment, E(LRELEASE_STATE_URL) or the file E(LRELEASE_STATE_URL_FILE) names
      (a URL may hold a password, so it never travels as an extra var)."
    type: str
    default: ""
  env: {description: Environment name., type: str, required: true}
  token: {description: The fencing token the lock was granted with., type: int, required: true}
  closes_at:
    description: "When the deploy window the run started in closes (ISO 8601, UTC); empty: no window."
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Stop unless the lock is still ours
  ansible.builtin.meta: end_play
  when: lookup('lrelease_lock', db=lrelease_lock.db, env=lrelease_lock.env, token=lrelease_lock.token) != 'held'
"""

RETURN = r"""
_raw:
  description: C(held), or a line naming who holds the lock now.
  type: list
  elements: str
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        try:
            env = self.get_option("env")
            state = lock_check(self.get_option("db"), env, int(self.get_option("token")))
            if state == "held":
                state = window_check(env, self.get_option("closes_at")) or state
            return [state]
        except Exception as exc:  # the database cannot be read: the run cannot prove it holds the lock
            raise AnsibleError(f"lrelease_lock: {scrub(str(exc))}") from None
