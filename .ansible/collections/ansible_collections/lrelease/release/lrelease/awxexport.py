"""``lrelease awx export``: lrelease's AWX objects as one playbook of ``awx.awx`` modules
(docs/awx.md, "Running lrelease in AWX").

Why a playbook of ``awx.awx`` modules and not the ``awx`` CLI's import JSON: every module is
idempotent (apply it again after a change to lrelease.yml and only the difference changes), the
file reads like any Ansible playbook in a review, and it is applied with the tool AWX users already
have (``ansible-galaxy collection install awx.awx``, then ``ansible-playbook``).

What is written, under the output directory:

- ``awx-lrelease.yml``: the playbook (a credential type injecting the state URL and the APM keys
  as environment variables, its credential with values read from the applying shell's
  environment, the execution environment, the project, one inventory with the fleet inventory
  source, the job templates and the release workflow per environment);
- ``inventories/<env>.lrelease_fleet.yml``: the inventory source files the project must carry
  (the ``lrelease_fleet`` plugin's configuration), at the path the inventory sources name.

No secret values anywhere: APM keys and the state URL are environment variable *names* here
(the credential's values come from ``lookup('env', ...)`` when the playbook is applied). Every
extra var the templates pass is one of docs/design.md's "Playbook variables", plus the survey's
``waves`` (a text answer: AWX surveys have no list type), which the deploy template turns into
``lrelease_waves``. Pure: builds text; writing files is :func:`write_export`'s, printing the CLI's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from lrelease.config import EnvironmentConfig, ProjectConfig
from lrelease.errors import ConfigError
from lrelease.plan import plan_waves

PLAYBOOK = "awx-lrelease.yml"
CREDENTIAL_TYPE = "lrelease state and APM keys"
CREDENTIAL = "lrelease state and APM keys"
PROJECT = "lrelease"
EXECUTION_ENVIRONMENT = "lrelease"
STATE_URL_ENV = "LRELEASE_STATE_URL"
WAVES_ANSWER = "waves"  # the survey's text answer for the waves (AWX surveys have no list type)
APPROVAL_TIMEOUT = 3600  # seconds an approval node waits before it counts as denied

# Vendor defaults when a provider names no *_env key (lrelease/apm/datadog.py, newrelic.py).
_DEFAULT_KEY_ENVS = {"datadog": ("DD_API_KEY", "DD_APP_KEY"), "newrelic": ("NEW_RELIC_API_KEY",)}


class Jinja(str):
    """A Jinja template meant for AWX (or the job), not for the playbook that applies the export:
    written with Ansible's ``!unsafe`` tag so ``ansible-playbook`` passes it on untouched."""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # every value written out: no &anchors to follow in a review
        return True


_Dumper.add_representer(Jinja, lambda d, v: d.represent_scalar("!unsafe", str(v), style="'"))


@dataclass(frozen=True)
class Export:
    """The files of an export: relative path → text."""

    files: dict[str, str]


def key_envs(config: ProjectConfig, envs: Sequence[EnvironmentConfig]) -> list[str]:
    """The environment variable names the gates of ``envs`` read their secrets from (``*_env``
    keys of ``gate.provider``, or the vendor's default), sorted."""
    names: set[str] = set()
    for env in envs:
        if env.gate is None or env.gate.kind != "apm":
            continue
        settings = env.gate.provider_settings
        names |= {str(v) for k, v in settings.items() if k.endswith("_env") and isinstance(v, str)}
        for default in _DEFAULT_KEY_ENVS.get(env.gate.provider, ()):
            key = {"DD_API_KEY": "api_key_env", "DD_APP_KEY": "app_key_env", "NEW_RELIC_API_KEY": "api_key_env"}[default]
            if key not in settings:
                names.add(default)
    return sorted(names)


def _field_id(env_name: str) -> str:
    return env_name.lower()


def credential_type(names: Sequence[str]) -> dict[str, Any]:
    """The custom credential type: one secret string field per variable, injected as that
    environment variable (``LRELEASE_STATE_URL`` first; it is the only required one)."""
    every = [STATE_URL_ENV, *[n for n in names if n != STATE_URL_ENV]]
    fields = [{"id": _field_id(n), "type": "string", "label": n, "secret": True,
               "help_text": "the state database URL (postgresql+psycopg://user:password@host:5432/db)"
               if n == STATE_URL_ENV else f"the APM key lrelease.yml's gate reads from ${n}"} for n in every]
    return {
        "name": CREDENTIAL_TYPE,
        "description": "lrelease: the state database URL and the APM keys, as environment variables",
        "kind": "cloud",
        "inputs": {"fields": fields, "required": [_field_id(STATE_URL_ENV)]},
        "injectors": {"env": {n: Jinja("{{ %s }}" % _field_id(n)) for n in every}},
        "state": "present",
    }


def _artifact_vars(config: ProjectConfig) -> dict[str, Any]:
    """Where the job finds the build: the URL (each host downloads it), or a path in the
    execution environment (the artifact directory exposed to jobs); the sha256 is the survey's."""
    src = config.artifacts
    name = Jinja(src.file_name(config.app, "{{ lrelease_build }}"))
    out: dict[str, Any] = {"lrelease_artifact_format": src.format,
                           "lrelease_artifact_strip_components": src.strip_components}
    if src.source == "url":
        assert src.url is not None
        out["lrelease_artifact_url"] = Jinja(src.url.replace("{app}", config.app).replace("{build}", "{{ lrelease_build }}"))
    else:
        assert src.path is not None
        out["lrelease_artifact"] = Jinja(str(src.path / name))
    return out


def _waves_var(env: EnvironmentConfig) -> Jinja:
    default = json.dumps(list(env.waves))
    return Jinja("{{ (%s | trim | from_yaml) if (%s | default('') | trim | length > 0) else %s }}"
                 % (WAVES_ANSWER, WAVES_ANSWER, default))


def _question(variable: str, name: str, description: str, *, required: bool, kind: str = "text",
              default: str = "", choices: Sequence[str] = (), min_len: int = 0, max_len: int = 1024) -> dict[str, Any]:
    q: dict[str, Any] = {"question_name": name, "question_description": description, "variable": variable,
                         "type": kind, "required": required, "default": default}
    if kind == "multiplechoice":
        q["choices"] = list(choices)
    else:
        q["min"], q["max"] = min_len, max_len
    return q


def survey(env: EnvironmentConfig, kind: str) -> dict[str, Any]:
    """The survey of a template (``deploy``, ``rollback``, ``status``) or the workflow (``release``)."""
    env_q = _question("lrelease_env", "Environment", "the environment (this template's only)", required=True,
                      kind="multiplechoice", default=env.name, choices=[env.name])
    build_q = _question("lrelease_build", "Build", "the build id, e.g. 1.4.0", required=kind != "status",
                        min_len=1 if kind != "status" else 0, max_len=64)
    sha_q = _question("lrelease_artifact_sha256", "Artifact sha256", "the build artifact's sha256 (64 hex digits)",
                      required=True, min_len=64, max_len=64)
    reason_q = _question("lrelease_reason", "Reason", "why (recorded with the roll-out)", required=False, max_len=500)
    waves_q = _question(WAVES_ANSWER, "Waves", "hosts per wave, e.g. [1, \"50%\", \"100%\"] (empty: the "
                        "environment's waves of lrelease.yml)", required=False, default=json.dumps(list(env.waves)),
                        max_len=200)
    spec = {"deploy": [build_q, sha_q, env_q, reason_q, waves_q],
            "release": [build_q, sha_q, env_q, reason_q] + ([] if env.pauses else [waves_q]),
            "rollback": [build_q, env_q, reason_q],
            "status": [env_q]}[kind]
    return {"name": f"lrelease {kind} {env.name}", "description": "", "spec": spec}


def _names(env: EnvironmentConfig) -> dict[str, str]:
    return {k: f"lrelease {k} {env.name}" for k in ("deploy", "triage", "rollback", "status", "rolled back", "release")}


_NO_SURVEY = ("triage", "rolled back")  # workflow steps: they take the workflow's answers and artifacts


def _template(name: str, env: EnvironmentConfig, playbook: str, extra: dict[str, Any], kind: str,
              description: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "job_type": "run",
        "organization": Jinja("{{ awx_organization }}"),
        "inventory": f"lrelease {env.name}",
        "project": PROJECT,
        "playbook": playbook,
        "execution_environment": EXECUTION_ENVIRONMENT,
        "credentials": [Jinja("{{ awx_machine_credential }}"), CREDENTIAL],
        "extra_vars": extra,
        "ask_variables_on_launch": True,
        "ask_limit_on_launch": True,
        "survey_enabled": kind not in _NO_SURVEY,
        "survey_spec": survey(env, kind) if kind not in _NO_SURVEY else {},
        "state": "present",
    }


def templates(config: ProjectConfig, env: EnvironmentConfig) -> list[dict[str, Any]]:
    """deploy, rollback, status and the workflow's own steps: "triage" (triage.yml on the
    controller: succeeds when a failed deploy needs its rollback, fails when it stopped for a
    human or the next window) and the failing last step ("rolled back": status.yml expecting the
    build, which a rolled-back or paused fleet is not on)."""
    names = _names(env)
    base = {**env.playbook_vars(), "lrelease_env": env.name, "lrelease_hosts": env.name}
    deploy = {**base, **_artifact_vars(config), "lrelease_waves": _waves_var(env)}
    return [
        _template(names["deploy"], env, "playbooks/deploy.yml", deploy, "deploy",
                  "lrelease: deploy a build (in the workflow a failure is triaged: rolled back, or left for a "
                  "human when it paused or halted)"),
        _template(names["triage"], env, "playbooks/triage.yml", {"lrelease_env": env.name, "lrelease_hosts": env.name},
                  "triage",
                  "lrelease: after a failed deploy in the workflow, from its set_stats: succeeds when it needs its "
                  "rollback, fails when it stopped for a human or the next window (paused, halted, stopped) or a "
                  "policy refused it (refused)"),
        _template(names["rollback"], env, "playbooks/rollback.yml", dict(base), "rollback",
                  "lrelease: roll the hosts on a build back (in the workflow: the failed deploy's, from its set_stats)"),
        _template(names["status"], env, "playbooks/status.yml", dict(base), "status",
                  "lrelease: each host's build; fails when the fleet is not consistent"),
        _template(names["rolled back"], env, "playbooks/status.yml",
                  {**base, "lrelease_expected_build": Jinja("{{ lrelease_build }}")}, "rolled back",
                  "lrelease: the workflow's last step after a rollback, or after a deploy left for a human; fails "
                  "(the fleet is not on the build), so the release shows red and where each host is"),
    ]


def _node(identifier: str, template: str, *, success: Sequence[str] = (), failure: Sequence[str] = (),
          **more: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "identifier": identifier,
        "unified_job_template": {"name": template, "type": "job_template",
                                 "organization": {"name": Jinja("{{ awx_organization }}")}},
        "related": {"success_nodes": [{"identifier": i} for i in success],
                    "failure_nodes": [{"identifier": i} for i in failure]},
    }
    node.update(more)
    return node


def _approval(identifier: str, name: str, description: str, *, success: Sequence[str],
              failure: Sequence[str]) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "unified_job_template": {"name": name, "description": description, "type": "workflow_approval",
                                 "timeout": APPROVAL_TIMEOUT},
        "related": {"success_nodes": [{"identifier": i} for i in success],
                    "failure_nodes": [{"identifier": i} for i in failure]},
    }


def workflow_nodes(config: ProjectConfig, env: EnvironmentConfig) -> list[dict[str, Any]]:
    """deploy → failure: triage → success (the deploy failed: a host or a gate, or it ended
    without saying why): rollback → success: "rolled back" (fails, so the workflow is red).
    triage → failure (the deploy stopped for a human or the next window: a gate Inconclusive,
    its deploy window closed): with an APM gate the "roll back?" approval (approved: rollback;
    denied or timed out: the fleet is left as it is), without one (nothing there to decide) the
    red step at once; never the rollback without a human. With pauses in the waves: one deploy
    node per stretch of waves (its hosts as the node's limit), an approval node between them
    (denied or timed out: rollback, which is lrelease's ``abort``); each stretch hands its
    ancestors' roll-out ids on with its own (``lrelease_rollback_undo``), so a rollback moves
    back every stretch's hosts."""
    names = _names(env)
    apm = env.gate is not None and env.gate.kind == "apm"
    stretches: list[tuple[list[int], list[str]]] = []
    if env.pauses:
        hosts = [h for h, _ in config.load_fleet().layout(env.name).hostvars]
        plan = plan_waves(hosts, env.waves, env.pauses)
        start = 0
        for end in [*plan.pauses, len(plan.waves)]:
            waves = plan.waves[start:end]
            stretches.append(([w.size for w in waves], [h for w in waves for h in w.hosts]))
            start = end
    nodes: list[dict[str, Any]] = []
    if len(stretches) <= 1:
        nodes.append(_node("deploy", names["deploy"], failure=["triage"]))
    else:
        for i, (sizes, hosts) in enumerate(stretches, start=1):
            last = i == len(stretches)
            nodes.append(_node(f"deploy-{i}", names["deploy"], success=[] if last else [f"promote-{i}"],
                               failure=["triage"], extra_data={WAVES_ANSWER: json.dumps(sizes)},
                               limit=",".join(hosts)))
            if not last:
                nodes.append(_approval(f"promote-{i}", f"lrelease promote {env.name} (after wave {sum(len(s[0]) for s in stretches[:i])})",
                                       "approve: go on with the next waves (lrelease promote); deny or time out: "
                                       "roll back (lrelease abort)", success=[f"deploy-{i + 1}"], failure=["rollback"]))
    nodes.append(_node("triage", names["triage"], success=["rollback"],
                       failure=["ask-rollback" if apm else "rolled-back"]))
    if apm:
        nodes.append(_approval("ask-rollback", f"lrelease roll back {env.name}?",
                               "the deploy stopped for a human (a gate Inconclusive, its lock taken over), for the "
                               "next deploy window (paused), or a policy refused it: approve to roll back now; deny "
                               "or time out to leave the fleet as it is "
                               "(lrelease resume, the next nightly run, or lrelease rollback)",
                               success=["rollback"], failure=["rolled-back"]))
    nodes.append(_node("rollback", names["rollback"], success=["rolled-back"]))
    nodes.append(_node("rolled-back", names["rolled back"]))
    return nodes


def workflow(config: ProjectConfig, env: EnvironmentConfig) -> dict[str, Any]:
    return {
        "name": _names(env)["release"],
        "description": f"lrelease: release a build to {env.name}; red when it was rolled back",
        "organization": Jinja("{{ awx_organization }}"),
        "inventory": f"lrelease {env.name}",
        "ask_variables_on_launch": True,
        "survey_enabled": True,
        "survey_spec": survey(env, "release"),
        "destroy_current_nodes": True,
        "workflow_nodes": workflow_nodes(config, env),
        "state": "present",
    }


def inventory_source_file(config: ProjectConfig, env: EnvironmentConfig) -> str:
    root = config.path.parent
    fleet = os.path.relpath(config.fleet, root / "inventories")
    return yaml.safe_dump({"plugin": "lrelease_fleet", "fleet": fleet, "environment": env.name}, sort_keys=False)


def _task(name: str, module: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, module: args}


def tasks(config: ProjectConfig, envs: Sequence[EnvironmentConfig]) -> list[dict[str, Any]]:
    org = Jinja("{{ awx_organization }}")
    keys = key_envs(config, envs)
    ctype = credential_type(keys)
    out = [
        _task("Credential type: the state URL and the APM keys as environment variables",
              "awx.awx.credential_type", ctype),
        _task("Credential of that type (values from the applying shell's environment; kept when already set)",
              "awx.awx.credential", {
                  "name": CREDENTIAL, "organization": org, "credential_type": CREDENTIAL_TYPE,
                  "inputs": {_field_id(n): Jinja("{{ lookup('ansible.builtin.env', '%s') }}" % n)
                             for n in [STATE_URL_ENV, *keys]},
                  "update_secrets": False, "state": "present"}),
        _task("Execution environment (execution-environment.yml, built with ansible-builder)",
              "awx.awx.execution_environment", {
                  "name": EXECUTION_ENVIRONMENT, "image": Jinja("{{ awx_ee_image }}"), "pull": "missing",
                  "organization": org, "state": "present"}),
        _task("Project: the repository (its playbooks/, inventories/, lrelease.yml)", "awx.awx.project", {
            "name": PROJECT, "organization": org, "scm_type": "git", "scm_url": Jinja("{{ awx_project_scm_url }}"),
            "scm_branch": Jinja("{{ awx_project_scm_branch }}"), "scm_update_on_launch": True,
            "default_environment": EXECUTION_ENVIRONMENT, "state": "present"}),
    ]
    for env in envs:
        out += [
            _task(f"Inventory {env.name}", "awx.awx.inventory", {
                "name": f"lrelease {env.name}", "organization": org, "state": "present"}),
            _task(f"Inventory source {env.name}: the fleet file through the lrelease_fleet plugin",
                  "awx.awx.inventory_source", {
                      "name": f"lrelease fleet {env.name}", "inventory": f"lrelease {env.name}",
                      "organization": org, "source": "scm", "source_project": PROJECT,
                      "source_path": f"inventories/{env.name}.lrelease_fleet.yml",
                      "execution_environment": EXECUTION_ENVIRONMENT,
                      "overwrite": True, "update_on_launch": True, "state": "present"}),
        ]
        out += [_task(f"Job template {t['name']}", "awx.awx.job_template", t) for t in templates(config, env)]
        out.append(_task(f"Workflow {_names(env)['release']}", "awx.awx.workflow_job_template", workflow(config, env)))
    return out


HEADER = """\
# lrelease's AWX objects, written by `lrelease awx export` from {config} (docs/awx.md).
# A playbook of awx.awx modules: idempotent, apply it again after changing lrelease.yml.
#
#   ansible-galaxy collection install awx.awx
#   export CONTROLLER_HOST=https://awx.example.com CONTROLLER_OAUTH_TOKEN=...   # who applies it
#   export {envs}   # the credential's values (kept once set)
#   ansible-playbook {playbook} -e awx_project_scm_url=https://git.example.com/shop/deploy.git \\
#       -e awx_ee_image=registry.example.com/lrelease-ee:1 -e awx_machine_credential="shop ssh"
#
# Commit inventories/*.lrelease_fleet.yml (written beside this file) into the project first:
# the inventory sources read them from the project's checkout.
"""


def build_export(config: ProjectConfig, env_names: Sequence[str] = ()) -> Export:
    """The export for ``env_names`` (default: every environment of lrelease.yml). An unknown
    name is a ConfigError (``--env``)."""
    known = config.environment_names
    for name in env_names:
        if name not in known:
            raise ConfigError("--env", name, f"an environment of {config.path.name}: {', '.join(known)}")
    envs = [config.environment(n) for n in (dict.fromkeys(env_names) or known)]
    play = [{
        "name": "lrelease in AWX",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"awx_organization": "Default", "awx_project_scm_branch": "main",
                 "awx_ee_image": "quay.io/example/lrelease-ee:latest", "awx_machine_credential": "lrelease ssh",
                 "awx_project_scm_url": "https://git.example.com/example/deploy.git"},
        "tasks": tasks(config, envs),
    }]
    keys = [STATE_URL_ENV, *key_envs(config, envs)]
    head = HEADER.format(config=config.path.name, playbook=PLAYBOOK, envs=" ".join(f"{k}=..." for k in keys))
    files = {PLAYBOOK: head + "---\n" + yaml.dump(play, Dumper=_Dumper, sort_keys=False, width=110)}
    for env in envs:
        files[f"inventories/{env.name}.lrelease_fleet.yml"] = inventory_source_file(config, env)
    return Export(files)


def write_export(export: Export, out: Path) -> list[Path]:
    """Write the files under ``out`` (created); returns the paths written."""
    written = []
    for rel, text in export.files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
