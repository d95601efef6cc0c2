"""Failed playbook runs kept for diagnosis: ansible-runner's job events and stdout, scrubbed of
secrets, under ``<state_dir>/runs/<rollout-id>/<playbook>/``; only the last ``KEEP`` are kept.

What is kept: ``job_events/*.json``, ``stdout``, ``rc`` and ``status`` of each artifact directory.
What is not: the ``env/`` input files (extra vars, environment), the ``command`` file and the
inventory: they hold inputs, not output, and may hold secrets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lrelease import secrets

KEEP = 20  # failed runs kept under the state dir; older ones are deleted
_FILES = ("stdout", "rc", "status")


def keep(data_dir: Path, dest: Path, limit: int = KEEP) -> Path:
    """Copy the scrubbed output of the run in ``data_dir`` to ``dest`` (``runs/<id>/<playbook>``)
    and drop the oldest kept runs beyond ``limit``; returns ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    for artifact in sorted((data_dir / "artifacts").glob("*")):
        files = [artifact / n for n in _FILES] + sorted((artifact / "job_events").glob("*.json"))
        for src in (f for f in files if f.is_file()):
            target = dest / src.relative_to(artifact)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            target.write_text(_scrubbed(src), encoding="utf-8")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    _prune(dest.parent.parent, limit)
    return dest


def _scrubbed(src: Path) -> str:
    text = src.read_text(encoding="utf-8", errors="replace")
    if src.suffix == ".json":  # JSON escapes (quotes, backslashes) would hide a secret from a text match
        try:
            return json.dumps(secrets.scrub_data(json.loads(text)))
        except ValueError:
            pass
    return secrets.scrub(text)


def _prune(root: Path, limit: int) -> None:
    runs = sorted((p for p in root.glob("*/*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[:max(0, len(runs) - limit)]:
        shutil.rmtree(old, ignore_errors=True)
        if not any(old.parent.iterdir()):
            old.parent.rmdir()
