"""The exported AWX objects run as AWX runs them: the deploy, rollback and "rolled back" job
templates of `lrelease awx export` — their playbooks, the exported inventory source (the
lrelease_fleet plugin) and their extra vars merged with the survey's answers and AWX's own
variables — through ansible-runner (what AWX itself runs) on the sandbox, from the project
checkout, with the state URL in the environment as the exported credential type injects it.
No wrapper: the playbooks' policy step takes the lock and records the runs.

A good build rolls out; a bad one is caught at the canary, the workflow's rollback step (with the
deploy's set_stats artifacts, as AWX hands them on) restores it and the last step fails, so the
workflow shows red. Three hosts of the session fleet (a launch-time limit), no bake."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import ansible_runner
import pytest
import yaml

from lrelease import awxexport
from lrelease.config import load_config
from lrelease.state import StateStore, new_rollout_id
from tests.rollout.conftest import Project

ROOT = Path(__file__).resolve().parents[2]
BASE = "1.0.0"
HOSTS = 3


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))  # AWX gets the text


class Awx:
    """The exported objects of production, run one template at a time as AWX would."""

    def __init__(self, project: Project, tmp: Path) -> None:
        self.project, self.tmp = project, tmp
        config = load_config(project.path)
        made = awxexport.build_export(config, ["production"])
        tasks = yaml.load(made.files[awxexport.PLAYBOOK], Loader=_Loader)[0]["tasks"]
        self.templates = {t["awx.awx.job_template"]["name"]: t["awx.awx.job_template"]
                          for t in tasks if "awx.awx.job_template" in t}
        (wf,) = [t["awx.awx.workflow_job_template"] for t in tasks if "awx.awx.workflow_job_template" in t]
        self.nodes = {n["identifier"]: n for n in wf["workflow_nodes"]}
        (source,) = [t["awx.awx.inventory_source"] for t in tasks if "awx.awx.inventory_source" in t]
        self.inventory = project.path.parent / source["source_path"]
        self.inventory.parent.mkdir(exist_ok=True)
        self.inventory.write_text(made.files[source["source_path"]])
        self.db = config.db_path
        self.db.parent.mkdir(parents=True, exist_ok=True)
        self.hosts = project.nodes[:HOSTS]
        self.job = 7000

    def run(self, template: str, answers: dict, artifacts: dict | None = None) -> tuple[str, dict, str]:
        """One job: the template's extra vars, then the survey answers and AWX's variables, then
        (in a workflow) the artifacts of the jobs before it. Returns (status, set_stats, stdout)."""
        jt = self.templates[template]
        self.job += 1
        extravars = {**jt["extra_vars"], **answers, **(artifacts or {}),
                     "awx_job_id": self.job, "awx_user_name": "alice"}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LRELEASE_", "ANSIBLE_"))}
        # the credential type's injector: LRELEASE_STATE_URL in the job's environment
        env.update({"LRELEASE_STATE_URL": f"sqlite:///{self.db}", "ANSIBLE_NOCOLOR": "1",
                    "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
        stats: dict = {}

        def on_event(event: dict) -> bool:
            if event.get("event") == "playbook_on_stats":
                stats.update(event.get("event_data", {}).get("artifact_data") or {})
            return True

        private = self.tmp / f"job-{self.job}"
        private.mkdir()
        result = ansible_runner.run(private_data_dir=str(private), project_dir=str(ROOT), playbook=jt["playbook"],
                                    inventory=str(self.inventory), extravars=extravars, envvars=env,
                                    limit=",".join(self.hosts), quiet=True, event_handler=on_event, timeout=300)
        return result.status, stats, result.stdout.read()

    def history(self) -> list[dict]:
        return self.project.json("history", "--env", "production")["rollouts"]


@pytest.fixture
def awx(fleet, tmp_path):
    return Awx(Project(fleet, tmp_path, waves=[1, "100%"], bake_seconds=0, gate_timeout_seconds=4), tmp_path)


def answers(awx: Awx, build: str, **behaviour) -> dict:
    art = awx.project.build(build, **behaviour)
    return {"lrelease_build": build, "lrelease_artifact_sha256": art.sha256, "lrelease_env": "production",
            "lrelease_reason": "nightly", "waves": ""}


def test_exported_templates_roll_out_a_good_build_and_roll_back_a_bad_one_red(awx):
    assert awx.nodes["deploy"]["related"]["failure_nodes"] == [{"identifier": "rollback"}]

    # Given another roll-out holding production's lock
    holder = new_rollout_id()
    with StateStore(awx.db) as st, st.acquire_lock("production", holder):
        # When the deploy template runs
        status, _, out = awx.run("lrelease deploy production", answers(awx, "1.1.0"))
        # Then it is refused before any host changed: the lock holds without the wrapper
        assert status == "failed" and f"locked by roll-out {holder}" in out
        assert {n: awx.project.current(n) for n in awx.hosts} == {n: BASE for n in awx.hosts}

    # Given production paused (a release policy) with the lock free
    with StateStore(awx.db) as st:
        st.pause_env("production", paused_by="bob", reason="INC-42")
    # When the deploy template runs
    status, _, out = awx.run("lrelease deploy production", answers(awx, "1.1.0"))
    # Then the policy refuses it, before any host changed
    assert status == "failed" and "environment production is paused by bob" in out
    assert {n: awx.project.current(n) for n in awx.hosts} == {n: BASE for n in awx.hosts}
    with StateStore(awx.db) as st:
        st.unpause_env("production", unpaused_by="bob")

    # When the deploy template runs a good build (the lock free, nothing paused)
    status, _, out = awx.run("lrelease deploy production", answers(awx, "1.1.0"))
    # Then every host is on it, and the run is recorded as AWX's job
    assert status == "successful", out[-3000:]
    assert {n: awx.project.current(n) for n in awx.hosts} == {n: "1.1.0" for n in awx.hosts}
    good = [r for r in awx.history() if r["plan"].get("via", {}).get("job_id") == str(awx.job)]
    assert [(r["action"], r["build"], r["status"]) for r in good] == [("deploy", "1.1.0", "succeeded")]

    # When a bad build is deployed (its health check fails)
    bad = answers(awx, "1.2.0", health_fail=True)
    status, stats, out = awx.run("lrelease deploy production", bad)
    # Then it is caught at the canary: only the canary switched, and the job fails
    assert status == "failed"
    canary = awx.hosts[0]
    assert stats["lrelease_rollback_build"] == "1.2.0" and stats["lrelease_failed_hosts"] == [canary]
    assert {n: awx.project.current(n) for n in awx.hosts[1:]} == {n: "1.1.0" for n in awx.hosts[1:]}

    # When the workflow's failure path runs: rollback with the deploy's artifacts, then the last step
    assert awx.nodes["rollback"]["related"]["success_nodes"] == [{"identifier": "rolled-back"}]
    status, _, out = awx.run(awx.nodes["rollback"]["unified_job_template"]["name"], bad, stats)
    # Then every host is back on the good build
    assert status == "successful", out[-3000:]
    assert {n: awx.project.current(n) for n in awx.hosts} == {n: "1.1.0" for n in awx.hosts}
    [rb] = [r for r in awx.history() if r["plan"].get("via", {}).get("job_id") == str(awx.job)]
    assert (rb["action"], rb["status"]) == ("rollback", "succeeded")
    # and the last step fails, so the workflow is red
    status, _, out = awx.run(awx.nodes["rolled-back"]["unified_job_template"]["name"], bad, stats)
    assert status == "failed" and "expected 1.2.0" in out
    with StateStore(awx.db) as st:
        assert st.lock_holder("production") is None
