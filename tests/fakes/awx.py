"""A local FAKE of AWX's REST API, for tests of ``lrelease awx launch``. Not the real thing.

Test-only: this module lives under tests/ and is not part of the installed lrelease package.
AWX (a Kubernetes operator, PostgreSQL, Redis, receptor) cannot run on this machine, so this
small server stands in for it. It follows AWX's *documented* API v2 — paths, the
``Authorization: Bearer <token>`` header, answer shapes and error shapes — for the subset
lrelease uses, and nothing more:

- ``GET /api/v2/job_templates/{id}/``, ``GET /api/v2/job_templates/?name=`` (and the same for
  ``workflow_job_templates``): the template, or a listing ``{count, next, previous, results}``.
- ``GET .../launch/``: what the template prompts for (``ask_variables_on_launch``,
  ``survey_enabled``, ``variables_needed_to_start``, ``can_start_without_user_input``).
- ``POST .../launch/`` with ``{"extra_vars": {...}}``: 201 ``{"job": N, "id": N,
  "ignored_fields": {...}, ...}`` (a workflow: ``"workflow_job"``). Like AWX, extra vars are
  dropped into ``ignored_fields.extra_vars`` when the template neither prompts for variables
  nor has them in its survey; a template can be told to answer an error instead (400 with
  field errors such as ``{"variables_needed_to_start": [...]}``, 403 ``{"detail": ...}``).
- ``GET /api/v2/jobs/{id}/``: ``status`` (new, pending, waiting, running, successful, failed,
  error, canceled), ``failed``, ``playbook``, ``artifacts`` (set_stats), ``job_explanation``,
  ``event_processing_finished``; ``POST /api/v2/jobs/{id}/cancel/``: 202.
- ``GET /api/v2/jobs/{id}/job_events/?order_by=counter&counter__gt=N&page_size=M&page=P``:
  paginated events ``{id, counter, event, event_data, host_name}``; ``next`` is a path with
  its query, ``null`` on the last page.
- ``GET /api/v2/jobs/{id}/job_host_summaries/``: paginated ``{host_name, ok, changed, dark,
  failures, skipped, rescued, ignored, failed}``.
- ``GET /api/v2/workflow_jobs/{id}/`` and ``.../workflow_nodes/``: nodes with ``job``,
  ``do_not_run``, ``success_nodes``/``failure_nodes``/``always_nodes``, ``summary_fields.job``
  ``{id, name, status, failed, type}`` and ``summary_fields.unified_job_template``.
- a missing or wrong token: 401 ``{"detail": "Authentication credentials were not provided."}``.

What it imitates of AWX's behaviour, scripted per template rather than computed: a job's status
moves one step along its script at each ``GET`` of the job; its events become visible a few at
a time as it runs (all of them by its end, or one poll later with ``late_events``, while
``event_processing_finished`` is false); a workflow's nodes each run a scripted job once the
jobs of the nodes before them ended (a node that will not run has no job and ``do_not_run``),
and the workflow ends after them. What it does not: scheduling, inventories, credentials, RBAC beyond "this template answers 403".
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from tests.unit.loopback import Request, serve

UNAUTHENTICATED = {"detail": "Authentication credentials were not provided."}
FORBIDDEN = {"detail": "You do not have permission to perform this action."}


@dataclass
class Script:
    """What a job launched from a template does, as AWX would show it."""

    statuses: list[str] = field(default_factory=lambda: ["pending", "running", "successful"])
    events: list[dict[str, Any]] = field(default_factory=list)  # {event, event_data}; counters 1..n
    summaries: list[dict[str, Any]] = field(default_factory=list)
    playbook: str = "playbooks/deploy.yml"
    artifacts: dict[str, Any] = field(default_factory=dict)
    explanation: str = ""
    late_events: bool = False  # the last event appears one poll after the final status


@dataclass
class Node:
    """A workflow node: the template it runs (None: an approval node), its job's script (None:
    it does not run, ``do_not_run``), its edges."""

    id: int
    name: str
    script: Script | None
    success: list[int] = field(default_factory=list)
    failure: list[int] = field(default_factory=list)
    approval: bool = False  # an approval node
    approval_status: str = "pending"  # waiting for a human; successful: approved; failed: denied or timed out


@dataclass
class Template:
    id: int
    name: str
    workflow: bool = False
    ask_variables: bool = True
    survey_vars: tuple[str, ...] = ()
    script: Script | None = None
    nodes: list[Node] = field(default_factory=list)
    workflow_statuses: list[str] = field(default_factory=lambda: ["pending", "running", "successful"])
    error: tuple[int, Any] | None = None  # answer to the launch POST instead of launching


@dataclass
class _Job:
    id: int
    script: Script
    name: str
    polls: int = 0
    extra_vars: dict[str, Any] = field(default_factory=dict)
    canceled: bool = False

    @property
    def status(self) -> str:
        if self.canceled:
            return "canceled"
        return self.script.statuses[min(self.polls, len(self.script.statuses)) - 1] if self.polls else "new"

    @property
    def final(self) -> bool:
        return self.status in ("successful", "failed", "error", "canceled")

    def visible_events(self) -> int:
        """Events saved so far: a share of them per poll while it runs, all at its end (but the
        last one at the first look at the end, with ``late_events``)."""
        n, steps = len(self.script.events), len(self.script.statuses)
        if not self.polls:
            return 0
        if self.final:
            behind = self.script.late_events and self.polls <= steps
            return n - 1 if behind and n else n
        return min(n, n * self.polls // steps)


class FakeAwx:
    """The fake server. ``with FakeAwx(token) as awx: awx.url ...``; ``awx.requests`` records
    every request (method, path, query, headers, body)."""

    def __init__(self, token: str, *, page_size: int = 2, honour_counter_gt: bool = True) -> None:
        self.token, self.page_size, self.honour_counter_gt = token, page_size, honour_counter_gt
        self.templates: dict[int, Template] = {}
        self.jobs: dict[int, _Job] = {}
        self.workflow_jobs: dict[int, dict[str, Any]] = {}
        self._next_id = 100
        self._lock = threading.Lock()
        self.url = ""
        self.requests: list[Request] = []

    def add(self, template: Template) -> Template:
        self.templates[template.id] = template
        return template

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeAwx]:
        with serve(self._answer) as stub:
            self.url, self.requests = stub.url, stub.requests
            yield self

    # -- routing -----------------------------------------------------------------------------
    def _answer(self, request: Request) -> tuple[int, Any]:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, UNAUTHENTICATED
        parts = [p for p in request.path.split("/") if p]
        if parts[:2] != ["api", "v2"]:
            return 404, {"detail": "Not found."}
        with self._lock:
            return self._route(request, parts[2:])

    def _route(self, request: Request, parts: list[str]) -> tuple[int, Any]:
        kind = parts[0] if parts else ""
        if kind in ("job_templates", "workflow_job_templates"):
            workflow = kind == "workflow_job_templates"
            if len(parts) == 1:
                found = [self._template_json(t) for t in self.templates.values()
                         if t.workflow == workflow and t.name == request.query.get("name", t.name)]
                return 200, {"count": len(found), "next": None, "previous": None, "results": found}
            template = self.templates.get(int(parts[1])) if parts[1].isdigit() else None
            if template is None or template.workflow != workflow:
                return 404, {"detail": "Not found."}
            if len(parts) == 2:
                return 200, self._template_json(template)
            if parts[2] == "launch" and request.method == "GET":
                return 200, {"ask_variables_on_launch": template.ask_variables,
                             "survey_enabled": bool(template.survey_vars), "variables_needed_to_start": [],
                             "can_start_without_user_input": True, "passwords_needed_to_start": []}
            if parts[2] == "launch" and request.method == "POST":
                return self._launch(template, json.loads(request.body or b"{}"))
        if kind == "jobs" and len(parts) >= 2 and int(parts[1]) in self.jobs:
            return self._job(request, self.jobs[int(parts[1])], parts[2:])
        if kind == "workflow_jobs" and len(parts) >= 2 and int(parts[1]) in self.workflow_jobs:
            return self._workflow_job(request, self.workflow_jobs[int(parts[1])], parts[2:])
        return 404, {"detail": "Not found."}

    def _template_json(self, t: Template) -> dict[str, Any]:
        return {"id": t.id, "type": "workflow_job_template" if t.workflow else "job_template", "name": t.name,
                "ask_variables_on_launch": t.ask_variables, "survey_enabled": bool(t.survey_vars),
                **({} if t.workflow else {"playbook": (t.script or Script()).playbook})}

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _launch(self, template: Template, body: dict[str, Any]) -> tuple[int, Any]:
        if template.error is not None:
            return template.error
        given = dict(body.get("extra_vars") or {})
        kept = given if template.ask_variables else {k: v for k, v in given.items() if k in template.survey_vars}
        ignored = {k: v for k, v in given.items() if k not in kept}
        answer: dict[str, Any] = {"ignored_fields": {"extra_vars": ignored} if ignored else {},
                                  "extra_vars": json.dumps(kept)}
        if template.workflow:
            wf_id = self._new_id()
            nodes = []
            for node in template.nodes:
                job = None
                if node.script is not None:
                    job = _Job(self._new_id(), node.script, node.name, extra_vars=kept)
                    self.jobs[job.id] = job
                nodes.append((node, job))
            self.workflow_jobs[wf_id] = {"id": wf_id, "template": template, "polls": 0, "nodes": nodes}
            return 201, {**answer, "id": wf_id, "workflow_job": wf_id, "type": "workflow_job", "status": "pending"}
        job = _Job(self._new_id(), template.script or Script(), template.name, extra_vars=kept)
        self.jobs[job.id] = job
        return 201, {**answer, "id": job.id, "job": job.id, "type": "job", "status": "pending"}

    def _job(self, request: Request, job: _Job, rest: list[str]) -> tuple[int, Any]:
        if not rest:
            job.polls += 1
            late = job.script.late_events and job.visible_events() < len(job.script.events)
            return 200, {"id": job.id, "type": "job", "name": job.name, "status": job.status,
                         "failed": job.status in ("failed", "error"), "playbook": job.script.playbook,
                         "artifacts": job.script.artifacts if job.final else {},
                         "job_explanation": job.script.explanation, "extra_vars": json.dumps(job.extra_vars),
                         "event_processing_finished": job.final and not late}
        if rest == ["cancel"] and request.method == "POST":
            job.canceled = True
            return 202, ""
        if rest == ["job_events"]:
            events = [{"id": 1000 + i, "counter": i, "event": e["event"], "event_data": e.get("event_data", {}),
                       "host_name": (e.get("event_data") or {}).get("host", ""), "job": job.id}
                      for i, e in enumerate(job.script.events[:job.visible_events()], start=1)]
            after = int(request.query.get("counter__gt", 0)) if self.honour_counter_gt else 0
            return 200, self._page(request, [e for e in events if e["counter"] > after])
        if rest == ["job_host_summaries"]:
            rows = [{"id": i, "job": job.id, "host_name": s["host_name"],
                     **{k: s.get(k, 0) for k in ("ok", "changed", "dark", "failures", "skipped", "rescued",
                                                 "ignored", "processed")},
                     "failed": bool(s.get("failures") or s.get("dark"))}
                    for i, s in enumerate(job.script.summaries, start=1)] if job.final else []
            return 200, self._page(request, rows)
        return 404, {"detail": "Not found."}

    def _workflow_job(self, request: Request, wf: dict[str, Any], rest: list[str]) -> tuple[int, Any]:
        template: Template = wf["template"]
        if not rest:
            wf["polls"] += 1
            jobs = {node.id: job for node, job in wf["nodes"]}
            for node, job in wf["nodes"]:  # a node's job runs once the jobs of the nodes before it ended
                parents = [jobs.get(p.id) for p in template.nodes if node.id in (*p.success, *p.failure)]
                if job is not None and not job.final and all(p is None or p.final for p in parents):
                    job.polls += 1
            statuses = template.workflow_statuses
            status = statuses[min(wf["polls"], len(statuses)) - 1]
            if any(job is not None and not job.final for _, job in wf["nodes"]):
                status = "running"  # its end comes after its jobs' ends
            return 200, {"id": wf["id"], "type": "workflow_job", "name": template.name, "status": status,
                         "failed": status == "failed"}
        if rest == ["workflow_nodes"]:
            rows = []
            for node, job in wf["nodes"]:
                ran = job is not None or node.approval
                if job is not None and not job.polls:  # not started yet: AWX shows no job on the node
                    rows.append({"id": node.id, "type": "workflow_job_node", "job": None, "do_not_run": False,
                                 "success_nodes": node.success, "failure_nodes": node.failure, "always_nodes": [],
                                 "workflow_job": wf["id"], "summary_fields": {}})
                    continue
                summary = ({"id": job.id, "name": job.name, "status": job.status, "failed": job.status == "failed",
                            "type": "job"} if job is not None else
                           {"id": 9000 + node.id, "name": node.name, "status": node.approval_status,
                            "failed": node.approval_status == "failed", "type": "workflow_approval"}
                           if node.approval else None)
                rows.append({"id": node.id, "type": "workflow_job_node", "job": summary["id"] if summary else None,
                             "do_not_run": not ran, "success_nodes": node.success, "failure_nodes": node.failure,
                             "always_nodes": [], "workflow_job": wf["id"],
                             "summary_fields": {**({"job": summary} if summary else {}),
                                                "unified_job_template": {"id": node.id, "name": node.name,
                                                                         "unified_job_type": "job"}}})
            return 200, self._page(request, rows)
        return 404, {"detail": "Not found."}

    def _page(self, request: Request, rows: list[dict[str, Any]]) -> dict[str, Any]:
        size = min(int(request.query.get("page_size", self.page_size)), self.page_size)
        page = int(request.query.get("page", 1))
        chunk = rows[(page - 1) * size: page * size]
        query = {k: v for k, v in request.query.items() if k != "page"}

        def link(n: int) -> str:
            return f"{request.path}?{urlencode({**query, 'page': n})}"

        return {"count": len(rows), "next": link(page + 1) if page * size < len(rows) else None,
                "previous": link(page - 1) if page > 1 else None, "results": chunk}
