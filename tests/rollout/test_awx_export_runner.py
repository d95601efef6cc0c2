"""The exported AWX objects run as AWX runs them: the deploy, rollback and "rolled back" job
templates of `lrelease awx export` — their playbooks, the exported inventory source (the
lrelease_fleet plugin) and their extra vars merged with the survey's answers and AWX's own
variables — through ansible-runner (what AWX itself runs) on the sandbox, from the project
checkout, with the state URL in the environment as the exported credential type injects it.
No wrapper: the playbooks' policy step takes the lock and records the runs.

A good build rolls out; a bad one is caught at the canary, the workflow's triage step says "roll
back", the rollback step (with the deploy's set_stats artifacts, as AWX hands them on) restores it
and the last step fails, so the workflow shows red. A deploy stopped by its deploy window is not
rolled back: the triage step fails naming the pause. With a pause in the waves, a rollback after
a later stretch failed moves back every stretch's hosts, and one after the approval was denied
moves back the first stretch's. Three hosts of the session fleet, no bake."""

from __future__ import annotations

import copy
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import ansible_runner
import pytest
import yaml

from lrelease import awxexport, policystep
from lrelease.awx import JobRun, job_exit
from lrelease.config import load_config
from lrelease.runner import RunResult, _EventTranslator
from lrelease.sandbox.fleet import project_config
from lrelease.state import StateStore, new_rollout_id
from tests.rollout.conftest import Project, fleet_file

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

    def run(self, template: str, answers: dict, artifacts: dict | None = None, *, node: dict | None = None,
            environ: dict | None = None) -> tuple[str, dict, str]:
        """One job: the template's extra vars, the workflow node's (its ``extra_data``, and its
        ``limit`` instead of the three hosts), then the survey answers and AWX's variables, then
        (in a workflow) the artifacts of the jobs before it. Returns (status, set_stats, stdout)."""
        jt = self.templates[template]
        self.job += 1
        node = node or {}
        extravars = {**jt["extra_vars"], **node.get("extra_data", {}), **answers, **(artifacts or {}),
                     "awx_job_id": self.job, "awx_user_name": "alice"}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LRELEASE_", "ANSIBLE_"))}
        # the credential type's injector: LRELEASE_STATE_URL in the job's environment
        env.update({"LRELEASE_STATE_URL": f"sqlite:///{self.db}", "ANSIBLE_NOCOLOR": "1",
                    "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                    **(environ or {})})
        stats: dict = {}
        self.events: list[dict] = []  # the job's events, as AWX would store them

        def on_event(event: dict) -> bool:
            self.events.append(event)
            if event.get("event") == "playbook_on_stats":
                stats.update(event.get("event_data", {}).get("artifact_data") or {})
            return True

        private = self.tmp / f"job-{self.job}"
        private.mkdir()
        result = ansible_runner.run(private_data_dir=str(private), project_dir=str(ROOT), playbook=jt["playbook"],
                                    inventory=str(self.inventory), extravars=extravars, envvars=env,
                                    limit=node.get("limit") or ",".join(self.hosts), quiet=True, event_handler=on_event,
                                    timeout=300)
        return result.status, stats, result.stdout.read()

    def step(self, identifier: str, answers: dict, artifacts: dict | None = None, **more) -> tuple[str, dict, str]:
        """The job of the workflow node ``identifier``."""
        node = self.nodes[identifier]
        return self.run(node["unified_job_template"]["name"], answers, artifacts, node=node, **more)

    def launch_exit(self, status: str, playbook: str = "playbooks/deploy.yml") -> tuple[int, str]:
        """What `lrelease awx launch` would exit with (and say) for the last job, from its events."""
        result = RunResult()
        translate = _EventTranslator(result, None)
        for event in self.events:
            translate(event)
        code, said = job_exit(JobRun({"id": self.job, "status": status, "playbook": playbook}, result))
        return int(code), said

    def builds(self) -> dict[str, str]:
        """Each host's build: what it serves, which is what its `current` link names."""
        out = {n: self.project.current(n) for n in self.hosts}
        assert {n: self.project.serving(n) for n in self.hosts} == out
        return out

    def history(self) -> list[dict]:
        return self.project.json("history", "--env", "production")["rollouts"]


@pytest.fixture
def awx(fleet, tmp_path):
    return Awx(Project(fleet, tmp_path, waves=[1, "100%"], bake_seconds=0, gate_timeout_seconds=4), tmp_path)


def answers(awx: Awx, build: str, *, waves: bool = True, **behaviour) -> dict:
    """The survey's answers (a workflow with pauses asks no waves: each stretch's are the node's)."""
    art = awx.project.build(build, **behaviour)
    return {"lrelease_build": build, "lrelease_artifact_sha256": art.sha256, "lrelease_env": "production",
            "lrelease_reason": "nightly", **({"waves": ""} if waves else {})}


def three_hosts(fleet, tmp_path: Path, **production) -> Project:
    """A project whose production is the session fleet's first three nodes (so the workflow's
    stretch limits name only them), the other nodes in spare."""
    project = Project(fleet, tmp_path)
    fleet_file(fleet, tmp_path / "fleet.yml", {"production": tuple(project.nodes[:HOSTS])})
    config = project_config(fleet.config, **{"bake_seconds": 0, "gate_timeout_seconds": 4, **production})
    config["environments"]["spare"] = copy.deepcopy(config["environments"]["production"])
    config.update(fleet=str(tmp_path / "fleet.yml"), state_dir=str(tmp_path / "state"))
    project.path.write_text(yaml.safe_dump(config, sort_keys=False))
    return project


def test_exported_templates_roll_out_a_good_build_and_roll_back_a_bad_one_red(awx):
    # Given another roll-out holding production's lock
    holder = new_rollout_id()
    with StateStore(awx.db) as st, st.acquire_lock("production", holder):
        # When the deploy template runs
        status, _, out = awx.run("lrelease deploy production", answers(awx, "1.1.0"))
        # Then it is refused before any host changed: the lock holds without the wrapper
        assert status == "failed" and f"locked by roll-out {holder}" in out
        assert {n: awx.project.current(n) for n in awx.hosts} == {n: BASE for n in awx.hosts}
        # and `lrelease awx launch` would exit 4 (refused), not 1 ("rolled back cleanly")
        code, said = awx.launch_exit(status)
        assert code == 4 and "changed no host: " in said and f"locked by roll-out {holder}" in said, (code, said)

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

    # and its set_stats say it failed, and name its roll-out for the rollback
    [failed] = [r for r in awx.history() if r["plan"].get("via", {}).get("job_id") == str(awx.job)]
    assert stats["lrelease_outcome"] == "failed" and stats["lrelease_rollback_undo"] == [failed["id"]]

    # When the workflow's failure path runs: the triage step with the deploy's artifacts
    assert awx.nodes["deploy"]["related"]["failure_nodes"] == [{"identifier": "triage"}]
    status, _, out = awx.step("triage", bad, stats)
    # Then it says "roll back" (it succeeds, so the rollback runs next)
    assert status == "successful" and "failed: " + canary in out and "rolling production back" in out, out[-3000:]
    # When the rollback runs with the deploy's artifacts, then the last step
    assert awx.nodes["rollback"]["related"]["success_nodes"] == [{"identifier": "rolled-back"}]
    status, _, out = awx.step("rollback", bad, stats)
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


def test_a_deploy_stopped_by_its_window_is_triaged_as_paused_and_not_rolled_back(fleet, tmp_path):
    # Given production's deploy window open now (UTC, from an hour ago to two hours on), and a
    # controller hook after the canary's gate that moves the wave-boundary check's clock past its
    # close (the test-only clock file: the job is another process)
    now = datetime.now(timezone.utc)
    rule = f"daily {(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=2)):%H:%M}"
    clock_file = tmp_path / "boundary-now"
    hook = {"shell": f"echo 2099-01-01T00:00:00+00:00 > {clock_file}", "run_on": "controller"}
    project = Project(fleet, tmp_path, waves=[1, "100%"], bake_seconds=0, gate_timeout_seconds=4,
                      window={"timezone": "UTC", "weekly": [rule]}, hooks={"after_gate": [hook]})
    awx = Awx(project, tmp_path)
    canary, rest = awx.hosts[0], awx.hosts[1:]
    # (AWX's project has lrelease.yml beside playbooks/; here it is named)
    ask = {**answers(awx, "1.4.0"), "lrelease_config": str(project.path)}

    # When the workflow's deploy job runs and the window closes after the canary
    status, stats, out = awx.step("deploy", ask, environ={policystep.TEST_NOW_FILE: str(clock_file)})
    # Then it fails, paused at the wave boundary: the canary on the new build, the others on theirs
    assert status == "failed" and clock_file.exists(), out[-3000:]
    assert stats["lrelease_outcome"] == "paused"
    assert awx.builds() == {canary: "1.4.0"} | {h: BASE for h in rest}

    # When the workflow's failure path runs the triage step with the deploy's artifacts
    status, _, out = awx.step("triage", ask, stats)
    # Then it fails naming the pause (so the workflow ends red without rolling back: health only, no approval)
    assert status == "failed"
    assert "paused: the deploy window of production closed at " in out
    assert "`lrelease resume` or the next nightly run continues it" in out
    assert awx.nodes["triage"]["related"]["failure_nodes"] == [{"identifier": "rolled-back"}]
    # and the hosts stay as they are, recorded paused
    assert awx.builds() == {canary: "1.4.0"} | {h: BASE for h in rest}
    [row] = [r for r in awx.history() if r["action"] == "deploy"]
    assert row["status"] == "paused"


def test_a_workflow_with_a_pause_rolls_back_every_stretch(fleet, tmp_path):
    # Given production of three hosts with a pause after the canary (stretch 1: the canary, stretch
    # 2: the other two, one at a time), and a smoke test after each gate that build 1.2.0 fails on
    # the last host
    node3 = fleet.config.all_nodes()[HOSTS - 1].name
    smoke = {"shell": f'test "$LRELEASE_BUILD/$LRELEASE_HOST" != "1.2.0/{node3}"'}
    awx = Awx(three_hosts(fleet, tmp_path, waves=[1, "pause", 1, "100%"], hooks={"after_gate": [smoke]}), tmp_path)
    canary, second, third = awx.hosts
    assert awx.nodes["deploy-1"]["limit"] == canary and awx.nodes["deploy-2"]["limit"] == f"{second},{third}"

    # When stretch 1 of 1.1.0 succeeds and the approval "promote?" is denied (its failure path: the rollback)
    good = answers(awx, "1.1.0", waves=False)
    status, first, out = awx.step("deploy-1", good)
    assert status == "successful", out[-3000:]
    assert awx.builds() == {canary: "1.1.0", second: BASE, third: BASE}
    assert awx.nodes["promote-1"]["related"]["failure_nodes"] == [{"identifier": "rollback"}]
    status, _, out = awx.step("rollback", good, first)
    # Then the rollback (with stretch 1's artifacts, published on success too) moves the canary back
    assert status == "successful", out[-3000:]
    assert awx.builds() == {n: BASE for n in awx.hosts}

    # When the next release, 1.2.0: stretch 1 succeeds, is promoted, and stretch 2 (with stretch 1's
    # artifacts) fails on its last host
    bad = answers(awx, "1.2.0", waves=False)
    status, first, out = awx.step("deploy-1", bad)
    assert status == "successful", out[-3000:]
    status, second_stats, out = awx.step("deploy-2", bad, first)
    assert status == "failed", out[-3000:]
    assert awx.builds() == {n: "1.2.0" for n in awx.hosts}  # the failed host stays switched for the rollback
    # Then stretch 2 hands on both stretches' roll-outs
    ids = {r["plan"]["via"]["job_id"]: r["id"] for r in awx.history() if r["action"] == "deploy"}
    assert second_stats["lrelease_rollback_undo"] == [ids[str(awx.job - 1)], ids[str(awx.job)]]
    assert second_stats["lrelease_outcome"] == "failed" and second_stats["lrelease_failed_hosts"] == [third]

    # When the failure path runs with the artifacts merged as AWX merges them (the nearer job's win)
    merged = {**first, **second_stats}
    status, _, out = awx.step("triage", bad, merged)
    assert status == "successful", out[-3000:]
    status, _, out = awx.step("rollback", bad, merged)
    # Then every host is back on the old build, stretch 1's canary too
    assert status == "successful", out[-3000:]
    assert awx.builds() == {n: BASE for n in awx.hosts}
    with StateStore(awx.db) as st:
        assert st.lock_holder("production") is None
