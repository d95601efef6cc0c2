"""The scrape gate's readings files in the state dir: kept while their roll-out can be resumed,
removed once it cannot (it ended, or a later roll-out or rollback of its environment came)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lrelease.config import load_config
from lrelease.rollout import Releaser
from tests.unit.test_report import CONFIG


@pytest.fixture
def releaser(tmp_path):
    (tmp_path / "lrelease.yml").write_text(yaml.safe_dump(CONFIG))
    r = Releaser(load_config(tmp_path / "lrelease.yml"), actor="pytest")
    yield r
    r.store.close()


def finished(releaser: Releaser, rid: str, env: str, status: str, action: str = "deploy") -> Path:
    releaser.store.start_rollout(env, "1.4.0", action, "pytest", rollout_id=rid)
    releaser.store.finish_rollout(rid, status, 5 if status == "halted" else 0)
    path = releaser.readings_path(rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return path


def test_readings_stay_only_while_their_roll_out_can_be_resumed(releaser):
    # Given a succeeded roll-out, a halted one after it in production, a halted one in next,
    # and a readings file no roll-out of this database knows
    done = finished(releaser, "aaaa00000001", "production", "succeeded")
    halted = finished(releaser, "aaaa00000002", "production", "halted")
    other = finished(releaser, "bbbb00000001", "next", "halted")
    stray = releaser.readings_path("cccc00000001")
    stray.write_text("{}")
    # When the readings are pruned
    gone = releaser.prune_readings()
    # Then only the two resumable roll-outs keep theirs
    assert sorted(gone) == ["aaaa00000001", "cccc00000001"]
    assert halted.exists() and other.exists() and not done.exists() and not stray.exists()

    # When production's halted roll-out is undone by a rollback
    releaser.store.start_rollout("production", "1.3.0", "rollback", "pytest", rollout_id="aaaa00000003")
    releaser.store.finish_rollout("aaaa00000003", "succeeded", 0)
    # Then its readings go too; next's stay
    assert releaser.prune_readings() == ["aaaa00000002"]
    assert not halted.exists() and other.exists()
