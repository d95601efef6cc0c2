"""PLACEHOLDER (branch `policy`): the release policies are being written by another engineer
(H4, lrelease/policies.py on its branch); the lead takes that file at merge. This stand-in has
exactly the agreed signature and refuses nothing, so the playbooks' policy step
(lrelease/policystep.py) can call it today."""

from __future__ import annotations

from typing import Any


def check_start(store: Any, env: str, *, actor: str, action: str, force_reason: str = "") -> None:
    """PLACEHOLDER: refuses nothing. The real one raises an error carrying ``exit_code`` 4 and
    one line when a policy (window, captain, Next before production, pause) refuses the start."""
    return None
