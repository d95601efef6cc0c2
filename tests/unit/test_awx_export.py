"""``lrelease awx export``: the playbook of awx.awx modules and the inventory source files it
writes (docs/awx.md, "Running lrelease in AWX"), checked as files: they parse, every module and
argument exists in awx.awx, the workflow turns red after a rollback, the surveys ask what they
must, and no secret value is anywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.config import load_config
from lrelease.errors import ConfigError
from lrelease import awxexport
from tests.unit.test_schema_playbook_vars import documented

# The awx.awx modules the export uses and their arguments, from the collection's own modules
# (ansible/awx, awx_collection/plugins/modules/<module>.py: argument_spec; the documented options).
AWX_ARGS = {
    "awx.awx.credential_type": {"name", "description", "kind", "inputs", "injectors", "state", "new_name"},
    "awx.awx.credential": {"name", "description", "organization", "credential_type", "inputs", "update_secrets",
                           "user", "team", "state", "copy_from", "new_name"},
    "awx.awx.execution_environment": {"name", "description", "image", "organization", "credential", "pull", "state",
                                      "new_name"},
    "awx.awx.project": {"name", "description", "organization", "scm_type", "scm_url", "scm_branch", "scm_refspec",
                        "credential", "scm_clean", "scm_delete_on_update", "scm_track_submodules",
                        "scm_update_on_launch", "scm_update_cache_timeout", "allow_override", "timeout",
                        "default_environment", "local_path", "update_project", "wait", "interval", "state",
                        "copy_from", "new_name", "custom_virtualenv", "signature_validation_credential"},
    "awx.awx.inventory": {"name", "description", "organization", "variables", "kind", "host_filter",
                          "instance_groups", "prevent_instance_group_fallback", "input_inventories", "state",
                          "copy_from", "new_name"},
    "awx.awx.inventory_source": {"name", "description", "inventory", "organization", "source", "source_path",
                                 "source_vars", "source_project", "scm_branch", "credential", "execution_environment",
                                 "enabled_var", "enabled_value", "host_filter", "limit", "overwrite", "overwrite_vars",
                                 "custom_virtualenv", "timeout", "verbosity", "update_on_launch",
                                 "update_cache_timeout", "state", "new_name", "notification_templates_started",
                                 "notification_templates_success", "notification_templates_error"},
    "awx.awx.job_template": {"name", "description", "job_type", "inventory", "organization", "project", "playbook",
                             "credential", "credentials", "execution_environment", "forks", "limit", "verbosity",
                             "extra_vars", "job_tags", "force_handlers", "skip_tags", "start_at_task", "timeout",
                             "use_fact_cache", "host_config_key", "ask_scm_branch_on_launch", "ask_diff_mode_on_launch",
                             "ask_variables_on_launch", "ask_limit_on_launch", "ask_tags_on_launch",
                             "ask_skip_tags_on_launch", "ask_job_type_on_launch", "ask_verbosity_on_launch",
                             "ask_inventory_on_launch", "ask_credential_on_launch", "survey_enabled", "survey_spec",
                             "become_enabled", "diff_mode", "allow_simultaneous", "job_slice_count", "labels",
                             "state", "new_name", "copy_from", "instance_groups", "scm_branch"},
    "awx.awx.workflow_job_template": {"name", "description", "extra_vars", "organization", "survey_spec",
                                      "survey_enabled", "allow_simultaneous", "ask_variables_on_launch", "inventory",
                                      "limit", "scm_branch", "ask_inventory_on_launch", "ask_scm_branch_on_launch",
                                      "ask_limit_on_launch", "webhook_service", "webhook_credential",
                                      "workflow_nodes", "destroy_current_nodes", "state", "new_name", "copy_from",
                                      "labels", "job_tags", "skip_tags"},
}
NODE_ARGS = {"extra_data", "inventory", "scm_branch", "job_type", "job_tags", "skip_tags", "limit", "forks",
             "job_slice_count", "timeout", "execution_environment", "diff_mode", "verbosity",
             "all_parents_must_converge", "identifier", "state", "unified_job_template", "related"}
UJT_ARGS = {"organization", "inventory", "name", "description", "type", "timeout"}
RELATED_ARGS = {"always_nodes", "success_nodes", "failure_nodes", "credentials", "labels", "instance_groups"}
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


class _Loader(yaml.SafeLoader):
    """YAML as Ansible reads it: ``!unsafe`` strings kept as they are (marked, to be checked)."""


class Unsafe(str):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: Unsafe(loader.construct_scalar(node)))

SECRET = "s3cr3t-value-never-written"


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """production (4 hosts, canary first, a pause after the canary, a Datadog gate whose keys are
    in SHOP_DD_API_KEY / SHOP_DD_APP_KEY) and next (one host, the health check); artifacts by URL."""
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "fleet.yml").write_text(yaml.safe_dump({"nodes": {
        "web1": {"environment": "production", "address": "192.0.2.1"},
        "web2": {"environment": "production", "address": "192.0.2.2"},
        "web0": {"environment": "production", "address": "192.0.2.3", "tags": ["canary"]},
        "web3": {"environment": "production", "address": "192.0.2.4"},
        "next1": {"environment": "next", "address": "192.0.2.9"}}}))
    def base():
        return {"deploy_root": "/srv/shop", "service": {"command": "/srv/shop/bin/shop-service"},
                "health": {"path": "/health", "port": 8080}}
    gate = {"provider": {"kind": "datadog", "api_key_env": "SHOP_DD_API_KEY", "app_key_env": "SHOP_DD_APP_KEY",
                         "requests_query": "sum:trace.flask.request.hits{host:{host}}.as_count()",
                         "errors_query": "sum:trace.flask.request.errors{host:{host}}.as_count()",
                         "latency_queries": None},
            "bake_seconds": 30}
    config = {"version": 1, "app": "shop", "fleet": "inventories/fleet.yml", "state_dir": "state",
              "artifacts": {"source": "url", "url": "https://artifacts.example.com/{app}/{app}-{build}.tar.gz"},
              "environments": {"production": {**base(), "waves": [1, "pause", "50%", "100%"], "gate": gate},
                               "next": {**base(), "waves": [1, "100%"]}}}
    path = tmp_path / "lrelease.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    for name in ("SHOP_DD_API_KEY", "SHOP_DD_APP_KEY", "LRELEASE_STATE_URL"):
        monkeypatch.setenv(name, SECRET)
    return path


def exported(project: Path, *envs: str) -> tuple[list[dict], dict[str, str]]:
    made = awxexport.build_export(load_config(project), envs)
    play = yaml.load(made.files[awxexport.PLAYBOOK], Loader=_Loader)
    return play[0]["tasks"], made.files


def by_module(tasks: list[dict], module: str) -> list[dict]:
    return [task[module] for task in tasks if module in task]


def named(tasks: list[dict], module: str, name: str) -> dict:
    (found,) = [t for t in by_module(tasks, module) if t["name"] == name]
    return found


def test_every_module_and_argument_exists_in_awx_awx(project):
    # Given a project with two environments
    # When it is exported
    tasks, files = exported(project)
    # Then the playbook reads without anchors or aliases (every value written out, for a review)
    assert not re.search(r"[&*]id\d+", files[awxexport.PLAYBOOK])
    # and it is one play on localhost whose every task is an awx.awx module with known arguments
    for task in tasks:
        (module,) = [k for k in task if k != "name"]
        assert module in AWX_ARGS, module
        assert set(task[module]) <= AWX_ARGS[module], (module, set(task[module]) - AWX_ARGS[module])
    for wf in by_module(tasks, "awx.awx.workflow_job_template"):
        for node in wf["workflow_nodes"]:
            assert set(node) <= NODE_ARGS and set(node["unified_job_template"]) <= UJT_ARGS
            assert set(node["related"]) <= RELATED_ARGS
    # and the job templates and workflow exist per environment
    names = {t["name"] for t in by_module(tasks, "awx.awx.job_template")}
    assert names == {f"lrelease {k} {e}" for k in ("deploy", "triage", "rollback", "status", "rolled back")
                     for e in ("production", "next")}
    assert {w["name"] for w in by_module(tasks, "awx.awx.workflow_job_template")} == {
        "lrelease release production", "lrelease release next"}


def test_templates_run_the_project_playbooks_and_prompt_for_variables(project):
    tasks, _ = exported(project)
    playbooks = {t["name"]: t["playbook"] for t in by_module(tasks, "awx.awx.job_template")}
    # Then the playbooks are the project's paths (AWX runs them from the project checkout)
    assert playbooks["lrelease deploy next"] == "playbooks/deploy.yml"
    assert playbooks["lrelease rollback next"] == "playbooks/rollback.yml"
    assert playbooks["lrelease status next"] == playbooks["lrelease rolled back next"] == "playbooks/status.yml"
    assert playbooks["lrelease triage next"] == "playbooks/triage.yml"
    for t in by_module(tasks, "awx.awx.job_template"):
        # and every template takes the launch's extra vars (lrelease awx launch refuses one that would drop them)
        assert t["ask_variables_on_launch"] is True and t["job_type"] == "run"
        assert t["credentials"][1] == awxexport.CREDENTIAL and t["execution_environment"] == "lrelease"


def test_the_deploy_template_always_passes_the_gate_like_the_wrapper(project):
    tasks, _ = exported(project)
    config = load_config(project)
    nxt = named(tasks, "awx.awx.job_template", "lrelease deploy next")["extra_vars"]
    prod = named(tasks, "awx.awx.job_template", "lrelease deploy production")["extra_vars"]
    # Then the health-check environment says so explicitly, and the APM one passes its gate
    assert nxt["lrelease_gate_kind"] == "health" and "lrelease_gate_apm" not in nxt
    assert prod["lrelease_gate_kind"] == "apm"
    assert prod["lrelease_gate_apm"] == config.environment("production").gate.to_vars()
    # and the environment's other settings are the wrapper's (env.playbook_vars())
    for key, value in config.environment("next").playbook_vars().items():
        if key != "lrelease_waves":
            assert nxt[key] == value, key
    assert nxt["lrelease_env"] == nxt["lrelease_hosts"] == "next"
    # and the artifact is a URL each host downloads, with the survey's build in it
    assert nxt["lrelease_artifact_url"] == "https://artifacts.example.com/shop/shop-{{ lrelease_build }}.tar.gz"
    assert isinstance(nxt["lrelease_artifact_url"], Unsafe) and "lrelease_artifact" not in nxt


def test_every_extra_var_the_export_names_is_a_documented_playbook_variable(project):
    tasks, _ = exported(project)
    names, patterns = documented()
    passed: set[str] = set()
    for t in by_module(tasks, "awx.awx.job_template"):
        passed |= set(t["extra_vars"]) | {q["variable"] for q in t["survey_spec"].get("spec", [])}
    for wf in by_module(tasks, "awx.awx.workflow_job_template"):
        passed |= {q["variable"] for q in wf["survey_spec"]["spec"]}
        for node in wf["workflow_nodes"]:
            passed |= set(node.get("extra_data", {}))
    # Then each is a row of docs/design.md's "Playbook variables", except the survey's waves answer
    assert passed - {awxexport.WAVES_ANSWER} <= names, sorted(passed - names)
    assert awxexport.WAVES_ANSWER in passed and not any(p.match(awxexport.WAVES_ANSWER) for p in patterns)


def test_the_waves_answer_becomes_a_list_for_deploy_yml(project):
    # Given the deploy template's lrelease_waves (AWX surveys answer text, deploy.yml wants a list)
    tasks, _ = exported(project)
    expr = named(tasks, "awx.awx.job_template", "lrelease deploy next")["extra_vars"]["lrelease_waves"]
    from ansible.template import Templar
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import trust_as_template

    def render(answer):
        variables = {} if answer is None else {"waves": answer}
        return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(str(expr)))
    # Then an answer is parsed, and no answer (or an empty one) is the environment's waves
    assert render('[1, "50%", "100%"]') == [1, "50%", "100%"]
    assert render("") == [1, "100%"] and render(None) == [1, "100%"]


def test_surveys_ask_build_environment_reason_and_waves(project):
    tasks, _ = exported(project)
    deploy = named(tasks, "awx.awx.job_template", "lrelease deploy next")["survey_spec"]["spec"]
    by_var = {q["variable"]: q for q in deploy}
    assert set(by_var) == {"lrelease_build", "lrelease_artifact_sha256", "lrelease_env", "lrelease_reason", "waves"}
    assert by_var["lrelease_build"]["required"] and by_var["lrelease_artifact_sha256"]["min"] == 64
    # the environment is this template's only: AWX refuses another (a production template never deploys next)
    assert by_var["lrelease_env"]["type"] == "multiplechoice" and by_var["lrelease_env"]["choices"] == ["next"]
    assert json.loads(by_var["waves"]["default"]) == [1, "100%"] and not by_var["waves"]["required"]
    for t in [*by_module(tasks, "awx.awx.job_template"), *by_module(tasks, "awx.awx.workflow_job_template")]:
        for q in t["survey_spec"].get("spec", []):
            assert q["type"] in SURVEY_TYPES and q["question_name"] and re.fullmatch(r"[a-z0-9_]+", q["variable"])
    status = named(tasks, "awx.awx.job_template", "lrelease status next")["survey_spec"]["spec"]
    assert [q["variable"] for q in status] == ["lrelease_env"]


def _graph(wf: dict) -> dict[str, dict]:
    return {n["identifier"]: n for n in wf["workflow_nodes"]}


def _next(node: dict, kind: str) -> list[str]:
    return [r["identifier"] for r in node["related"].get(kind, [])]


def _reachable(nodes: dict[str, dict], start: list[str], *, through_approvals: bool) -> set[str]:
    """Every node a path from ``start`` reaches (any edge), entering approval nodes only when told."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        ident = todo.pop()
        if ident in seen:
            continue
        seen.add(ident)
        node = nodes[ident]
        if node["unified_job_template"]["type"] == "workflow_approval" and not through_approvals:
            continue
        todo += [i for kind in ("success_nodes", "failure_nodes", "always_nodes") for i in _next(node, kind)]
    return seen


def test_workflow_deploy_failure_is_triaged_then_rolled_back_or_left_red(project):
    # Given the health-check environment's workflow
    tasks, _ = exported(project)
    nodes = _graph(named(tasks, "awx.awx.workflow_job_template", "lrelease release next"))
    # Then a failed deploy goes to the triage step, never straight to the rollback
    assert _next(nodes["deploy"], "failure_nodes") == ["triage"] and _next(nodes["deploy"], "success_nodes") == []
    triage = nodes["triage"]
    assert triage["unified_job_template"]["name"] == "lrelease triage next"
    # and a triage that says "roll back" (it succeeds) runs the rollback, then a step that fails
    assert _next(triage, "success_nodes") == ["rollback"]
    assert _next(nodes["rollback"], "success_nodes") == ["rolled-back"]
    assert nodes["rollback"]["unified_job_template"]["name"] == "lrelease rollback next"
    # and one that says "stopped for a human or the next window" (it fails) goes straight to that red step
    assert _next(triage, "failure_nodes") == ["rolled-back"]
    last = nodes["rolled-back"]
    assert _next(last, "success_nodes") == _next(last, "failure_nodes") == []
    # and that step runs status.yml expecting the build, which a rolled-back or paused fleet is not on
    step = named(tasks, "awx.awx.job_template", last["unified_job_template"]["name"])
    assert step["playbook"] == "playbooks/status.yml"
    assert step["extra_vars"]["lrelease_expected_build"] == "{{ lrelease_build }}"
    # and the triage template runs triage.yml (on the controller) knowing its environment, no survey
    jt = named(tasks, "awx.awx.job_template", "lrelease triage next")
    assert jt["playbook"] == "playbooks/triage.yml"
    assert jt["extra_vars"] == {"lrelease_env": "next", "lrelease_hosts": "next"}
    assert jt["survey_enabled"] is False


def test_workflow_pauses_and_halts_go_to_approval_nodes(project):
    # Given production: a pause after the canary, and an APM gate (Inconclusive halts)
    tasks, _ = exported(project)
    nodes = _graph(named(tasks, "awx.awx.workflow_job_template", "lrelease release production"))
    # Then the canary's deploy (limit: the canary) waits for an approval before the rest
    first, second = nodes["deploy-1"], nodes["deploy-2"]
    assert first["limit"] == "web0" and json.loads(first["extra_data"]["waves"]) == [1]
    assert second["limit"] == "web1,web2,web3" and json.loads(second["extra_data"]["waves"]) == [2, 1]
    assert _next(first, "success_nodes") == ["promote-1"]
    promote = nodes["promote-1"]
    assert promote["unified_job_template"]["type"] == "workflow_approval"
    # (denied or timed out: lrelease abort, the rollback)
    assert _next(promote, "success_nodes") == ["deploy-2"] and _next(promote, "failure_nodes") == ["rollback"]
    # and every stretch's failure is triaged: a failure (a gate FAIL too) rolls back at once
    for deploy in (first, second):
        assert _next(deploy, "failure_nodes") == ["triage"]
    assert _next(nodes["triage"], "success_nodes") == ["rollback"]
    # while a halt or a pause asks a human first; a refusal (or the timeout) leaves the fleet and ends red
    assert _next(nodes["triage"], "failure_nodes") == ["ask-rollback"]
    ask = nodes["ask-rollback"]
    assert ask["unified_job_template"]["type"] == "workflow_approval"
    assert ask["unified_job_template"]["name"] == "lrelease roll back production?"
    assert _next(ask, "success_nodes") == ["rollback"] and _next(ask, "failure_nodes") == ["rolled-back"]
    assert _next(nodes["rollback"], "success_nodes") == ["rolled-back"]
    # and the workflow's survey has no waves answer (each stretch's waves are fixed by the pauses)
    survey = named(tasks, "awx.awx.workflow_job_template", "lrelease release production")["survey_spec"]
    assert "waves" not in {q["variable"] for q in survey["spec"]}


@pytest.mark.parametrize("env", ["next", "production"])
def test_no_path_from_a_stopped_deploy_reaches_the_rollback_without_a_human(project, env):
    # Given each environment's workflow (health only; APM gate with a pause)
    tasks, _ = exported(project)
    nodes = _graph(named(tasks, "awx.awx.workflow_job_template", f"lrelease release {env}"))
    deploys = [i for i, n in nodes.items() if n["unified_job_template"]["name"] == f"lrelease deploy {env}"]
    assert deploys
    for ident in deploys:
        # Then a deploy's failure path is the triage step only
        assert _next(nodes[ident], "failure_nodes") == ["triage"]
    # and from a triage that failed (paused, halted) no path reaches the rollback but through an approval
    stopped = _next(nodes["triage"], "failure_nodes")
    assert "rollback" not in _reachable(nodes, stopped, through_approvals=False)
    assert "rollback" in _reachable(nodes, stopped, through_approvals=True) or env == "next"
    assert "rolled-back" in _reachable(nodes, stopped, through_approvals=True)


def test_the_credential_type_injects_environment_variables_only_and_no_secret_is_written(project, tmp_path):
    tasks, files = exported(project)
    (ctype,) = by_module(tasks, "awx.awx.credential_type")
    # Then the state URL and the gate's key variables are injected as environment variables, nothing else
    assert set(ctype["injectors"]) == {"env"}
    assert set(ctype["injectors"]["env"]) == {"LRELEASE_STATE_URL", "SHOP_DD_API_KEY", "SHOP_DD_APP_KEY"}
    assert all(f["secret"] and f["type"] == "string" for f in ctype["inputs"]["fields"])
    assert {f["id"] for f in ctype["inputs"]["fields"]} == {"lrelease_state_url", "shop_dd_api_key", "shop_dd_app_key"}
    for env_name, template in ctype["injectors"]["env"].items():
        assert isinstance(template, Unsafe) and template == "{{ %s }}" % env_name.lower()
    (cred,) = by_module(tasks, "awx.awx.credential")
    assert cred["update_secrets"] is False
    assert cred["inputs"]["lrelease_state_url"] == "{{ lookup('ansible.builtin.env', 'LRELEASE_STATE_URL') }}"
    # and the secret values in this environment are in no file written
    out = tmp_path / "out"
    for path in awxexport.write_export(awxexport.build_export(load_config(project)), out):
        assert SECRET not in path.read_text()


def test_inventory_sources_read_the_fleet_through_the_plugin(project):
    tasks, files = exported(project, "next")
    (source,) = by_module(tasks, "awx.awx.inventory_source")
    assert source["source"] == "scm" and source["source_project"] == "lrelease"
    assert source["source_path"] == "inventories/next.lrelease_fleet.yml"
    config = yaml.safe_load(files[source["source_path"]])
    assert config == {"plugin": "lrelease_fleet", "fleet": "fleet.yml", "environment": "next"}
    # and only the environment asked for is exported
    assert {t["name"] for t in by_module(tasks, "awx.awx.workflow_job_template")} == {"lrelease release next"}


def test_the_inventory_source_file_gives_the_fleet_to_ansible_inventory(project, tmp_path):
    # Given the exported inventory source file placed in the project, as AWX's checkout has it
    import subprocess
    import sys
    _, files = exported(project, "production")
    path = project.parent / "inventories" / "production.lrelease_fleet.yml"
    path.write_text(files["inventories/production.lrelease_fleet.yml"])
    root = Path(__file__).resolve().parents[2]
    # When ansible-inventory reads it with the repository's configuration
    env = {"ANSIBLE_CONFIG": str(root / "ansible.cfg"), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
           "HOME": str(tmp_path)}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list"],
                          capture_output=True, text=True, env=env, cwd=root, timeout=120)
    # Then the environment's hosts come out, the canary first
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["production"]["hosts"] == ["web0", "web1", "web2", "web3"]


def test_an_unknown_environment_is_one_line_exit_2_and_writes_nothing(project, tmp_path):
    with pytest.raises(ConfigError):
        awxexport.build_export(load_config(project), ["staging"])
    out = tmp_path / "awx-out"
    result = CliRunner().invoke(cli, ["awx", "export", "--config", str(project), "--out", str(out), "--env", "staging"])
    assert result.exit_code == 2, result.output
    assert "staging" in result.output and not out.exists()


def test_the_cli_writes_the_files(project, tmp_path):
    out = tmp_path / "awx-out"
    result = CliRunner().invoke(cli, ["awx", "export", "--config", str(project), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "awx-lrelease.yml").is_file() and (out / "inventories" / "next.lrelease_fleet.yml").is_file()
    assert yaml.load((out / "awx-lrelease.yml").read_text(), Loader=_Loader)[0]["hosts"] == "localhost"
