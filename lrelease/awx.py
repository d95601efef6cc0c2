"""A client of AWX's REST API (``/api/v2``) for ``lrelease awx launch``: launch a job template or
a workflow job template with a build, follow it to its end, and say what it means in the CLI's
exit codes. Library code: it never prints or exits; the CLI shows what it returns or raises.

Settings come from the environment only (never lrelease.yml): :func:`settings_from_env`.
The token is a :class:`~lrelease.apm.transport.Secret`, registered with :mod:`lrelease.secrets`
(masked in every message and output) and sent as ``Authorization: Bearer <token>``. HTTP goes
through :class:`~lrelease.apm.transport.Http` (the environment's proxies and CA bundle, our own
CA bundle winning, never ``~/.netrc``): reads retry on 429/502/503/504 with backoff; the launch
POST is never retried (a lost answer could mean a second release).

What a launch does, with AWX's documented endpoints:

1. finds the template (``/api/v2/job_templates/{id}/`` or ``?name=``; ``workflow_job_templates``
   with ``workflow=True``);
2. asks ``GET .../launch/`` what it prompts for: a template that neither prompts for extra
   variables nor has a survey would drop every one of them, so it is refused before launching;
3. ``POST .../launch/`` with ``extra_vars``; AWX answers 201 with the new job's id and
   ``ignored_fields``: any field there was silently dropped, so the job is cancelled and the
   launch refused (:class:`AwxRefused`, exit 2);
4. polls the job (``/api/v2/jobs/{id}/``, a workflow: ``/api/v2/workflow_jobs/{id}/`` and its
   ``workflow_nodes/``) with backoff, reads each job's ``job_events/`` (paginated, by
   ``counter``, each once, in order) through the wrapper's own event translator
   (:mod:`lrelease.runner`: AWX job events are ansible-runner events), and at the end its
   ``job_host_summaries/``.

The exit code (:func:`job_exit`, :func:`workflow_exit`; docs/awx.md): a job ``successful`` → 0;
``canceled`` → 130; ``error`` (AWX could not run the playbook) → 70; ``failed``: a status job
(an inconsistent fleet) → 5, as ``lrelease status``; a deploy or rollback job whose policy step
failed, before any host changed → its code (4 refused: lock held, window closed, not the captain,
not proven on Next; 2 bad settings); a rollback job → 3; a deploy that halted on an Inconclusive gate, or left hosts on the new build (AWX does not
roll back by itself; the workflow's rollback job or ``lrelease rollback`` does) → 5; a deploy
that failed with no host left on the new build → 1. A workflow in which a rollback step ran is a
failed release, whatever AWX's own status says: 1 (3 when that step failed); a workflow waiting
at an approval node, or whose triage step (the exported workflow's: triage.yml) left the deploy
for a human or the next window → 5 (4 when it says a policy refused the deploy). The exported workflow's own steps (triage.yml, status.yml)
are never rollback steps, wherever they sit.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from lrelease import secrets
from lrelease.apm import ProviderError
from lrelease.apm.transport import Http, Secret, safe_url, snippet
from lrelease.errors import ConfigError, ExitCode, LreleaseError
from lrelease.runner import ProgressEvent, RunResult, _EventTranslator
from lrelease.schema import url_problem

ENV_URL = ("LRELEASE_AWX_URL", "CONTROLLER_HOST")  # the second: the awx CLI's name
ENV_TOKEN = ("LRELEASE_AWX_TOKEN", "CONTROLLER_OAUTH_TOKEN")
ENV_TOKEN_FILE = "LRELEASE_AWX_TOKEN_FILE"
ENV_CA_BUNDLE = "LRELEASE_AWX_CA_BUNDLE"
API = "/api/v2"
FINAL = frozenset({"successful", "failed", "error", "canceled"})
TIMEOUT = 30.0  # seconds per HTTP request
POLL_FIRST, POLL_MAX = 1.0, 15.0  # poll backoff: 1, 2, 4, 8, 15, 15... s; back to 1 s when events came
MAX_WAIT = 12 * 3600.0  # seconds a launch is followed at most (then: stopped watching, exit 70)
MISSES = 10  # polls in a row that AWX did not answer before giving up (exit 70)
PAGE_SIZE = 200
MAX_PAGES = 1000  # per listing: a loop bound, far above any real job's events per poll
GAP_POLLS = 3  # polls an event counter gap is waited for (AWX saves events asynchronously)
DRAIN_SECONDS = 30.0  # after the end, at most this long for AWX to finish saving the events
ROLLBACK_PLAYBOOK, STATUS_PLAYBOOK, TRIAGE_PLAYBOOK = "rollback.yml", "status.yml", "triage.yml"


class AwxRefused(LreleaseError):
    """AWX refused, or would have silently changed, the launch; nothing ran (exit 2)."""

    exit_code = ExitCode.USAGE


class AwxLostSight(LreleaseError):
    """The launch was followed, then AWX stopped answering (or the wait ran out): the job goes
    on in AWX but its outcome is unknown here (exit 70)."""

    exit_code = ExitCode.INTERNAL


class _Unavailable(Exception):
    """AWX did not answer usefully (unreachable, 5xx, not JSON): a poll may try again."""


@dataclass(frozen=True)
class AwxSettings:
    url: str  # base URL, no trailing slash
    token: Secret
    ca_bundle: str = ""


def settings_from_env(env: Mapping[str, str] | None = None) -> AwxSettings:
    """The AWX URL, token and CA bundle from the environment; a missing or bad one: ConfigError."""
    env = os.environ if env is None else env
    name, url = next(((n, env[n].strip()) for n in ENV_URL if env.get(n, "").strip()), (ENV_URL[0], ""))
    if not url:
        raise ConfigError("environment", ENV_URL[0], "the AWX base URL, e.g. https://awx.example.com "
                                                     f"(or {ENV_URL[1]}); it is not set")
    if name == "CONTROLLER_HOST" and "://" not in url:
        url = f"https://{url}"  # the awx CLI's default scheme
    problem = url_problem(url)
    parts = urlsplit(url)
    if problem or parts.username or parts.password or parts.query:
        raise ConfigError("environment", name, f"an http(s) URL of AWX without user:password or query "
                                               f"(e.g. https://awx.example.com): {problem or 'got ' + secrets.mask_url(url)}")
    token = _token(env)
    ca_bundle = os.path.expanduser(env.get(ENV_CA_BUNDLE, "").strip())
    if ca_bundle and not (os.path.isfile(ca_bundle) and os.access(ca_bundle, os.R_OK)):
        raise ConfigError("environment", ENV_CA_BUNDLE, f"the path of a readable PEM file of CA certificates; "
                                                        f"{ca_bundle!r} is not one")
    return AwxSettings(url.rstrip("/"), token, ca_bundle)


def _token(env: Mapping[str, str]) -> Secret:
    for name in ENV_TOKEN:
        if env.get(name, ""):
            return Secret.from_env(env, name, where="environment", key=name)
    path = env.get(ENV_TOKEN_FILE, "")
    if not path:
        raise ConfigError("environment", ENV_TOKEN[0], f"an AWX OAuth2 token (or {ENV_TOKEN_FILE}: a file holding "
                                                       f"one, or {ENV_TOKEN[1]}); none is set")
    try:
        value = open(os.path.expanduser(path), encoding="utf-8").read().strip()
    except OSError as exc:
        raise ConfigError("environment", ENV_TOKEN_FILE, f"a readable file holding the AWX token; {path!r}: "
                                                         f"{exc.strerror}") from None
    if not value or "\n" in value:
        raise ConfigError("environment", ENV_TOKEN_FILE, f"a file holding one AWX token on one line; {path!r} is "
                                                         "empty or has several lines")
    secrets.register(value)
    return Secret(value, ENV_TOKEN_FILE)


@dataclass(frozen=True)
class Template:
    id: int
    name: str
    workflow: bool

    @property
    def what(self) -> str:
        return f"{'workflow job template' if self.workflow else 'job template'} {self.name!r} ({self.id})"

    @property
    def path(self) -> str:
        return f"{API}/{'workflow_job_templates' if self.workflow else 'job_templates'}/{self.id}/"


@dataclass(frozen=True)
class Launched:
    template: Template
    id: int  # the job's (or workflow job's) id
    url: str  # its page in AWX's UI

    @property
    def path(self) -> str:
        return f"{API}/{'workflow_jobs' if self.template.workflow else 'jobs'}/{self.id}/"


@dataclass
class JobRun:
    """One AWX job followed to its end: its record, what its events said, its host summaries."""

    job: dict[str, Any]
    result: RunResult
    summaries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def playbook(self) -> str:
        return str(self.job.get("playbook") or "")

    @property
    def rollback(self) -> bool:
        return os.path.basename(self.playbook) == ROLLBACK_PLAYBOOK

    @property
    def triage(self) -> bool:
        return os.path.basename(self.playbook) == TRIAGE_PLAYBOOK

    @property
    def checks(self) -> bool:
        """The exported workflow's own steps (triage.yml, status.yml): they sit on failure paths
        but move no host."""
        return os.path.basename(self.playbook) in (TRIAGE_PLAYBOOK, STATUS_PLAYBOOK)


@dataclass
class Outcome:
    launched: Launched
    status: str  # AWX's final status (a workflow waiting for approval: "running")
    exit_code: ExitCode
    message: str
    runs: list[JobRun] = field(default_factory=list)  # the job; a workflow's jobs in node order
    nodes: list[dict[str, Any]] = field(default_factory=list)  # a workflow's: {node, name, job, status, role}

    def to_json(self) -> dict[str, Any]:
        hosts = [{"job": run.job.get("id"), **_summary(s)} for run in self.runs for s in run.summaries]
        return secrets.scrub_data({
            "kind": "workflow_job" if self.launched.template.workflow else "job",
            "template": {"id": self.launched.template.id, "name": self.launched.template.name},
            "id": self.launched.id, "url": self.launched.url, "status": self.status,
            "exit_code": int(self.exit_code), "message": self.message,
            "failed_hosts": sorted({h["host"] for h in hosts if h["failed"]}),
            "host_summaries": hosts, "nodes": self.nodes,
        })


def _summary(s: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")
    return {"host": s.get("host_name") or "", **{k: int(s.get(k) or 0) for k in keys},
            "failed": bool(s.get("failed")) or bool(s.get("failures")) or bool(s.get("dark"))}


Sink = Callable[[ProgressEvent], None]
StatusSink = Callable[[str, int, str], None]  # (what: "job"/a node's name, job id, status)


class Client:
    """One AWX, one token. ``clock``/``sleep`` are injectable for tests."""

    def __init__(self, settings: AwxSettings, *, timeout: float = TIMEOUT,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.base = settings.url
        self._headers = {"Authorization": f"Bearer {settings.token.reveal()}", "Accept": "application/json"}
        self._read = Http("awx", timeout, [settings.token], retry=True, ca_bundle=settings.ca_bundle)
        self._write = Http("awx", timeout, [settings.token], retry=False, ca_bundle=settings.ca_bundle)
        self.clock, self.sleep = clock, sleep

    # -- HTTP ------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Any = None) -> tuple[int, Any]:
        http = self._read if method == "GET" else self._write
        url = path if path.startswith(("http://", "https://")) else self.base + path
        try:
            reply = http.request(method, url, params=params, headers=self._headers, json_body=body)
        except ProviderError as exc:  # Unreachable: refused, timed out, TLS
            raise _Unavailable(exc.detail) from None
        try:
            data = json.loads(reply.body) if reply.body.strip() else {}
        except ValueError:
            if reply.status < 300:
                raise _Unavailable(http.scrub(f"{method} {safe_url(url)}: HTTP {reply.status}, not a JSON answer: "
                                              f"{snippet(reply.body)}")) from None
            data = {"detail": snippet(reply.body)}
        return reply.status, data

    def _get(self, path: str, params: Mapping[str, Any] | None = None, *, what: str = "") -> dict[str, Any]:
        status, data = self._call("GET", path, params=params)
        if status != 200 or not isinstance(data, dict):
            raise _refusal(status, data, what or f"read {path}") if status < 500 else _Unavailable(
                f"GET {path}: HTTP {status}: {_detail(data)}")
        return data

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every result of a paginated listing (``count``/``next``/``previous``/``results``)."""
        page = self._get(path, {"page_size": PAGE_SIZE, **(params or {})})
        for _ in range(MAX_PAGES):
            yield from (r for r in page.get("results") or [] if isinstance(r, dict))
            nxt = page.get("next")
            if not nxt:
                return
            page = self._get(str(nxt))  # AWX's next: the path with its query, page=N included

    # -- launching ---------------------------------------------------------------------------
    def find_template(self, ref: str, *, workflow: bool = False) -> Template:
        """A template by id (digits) or by name."""
        kind = "workflow job template" if workflow else "job template"
        listing = f"{API}/{'workflow_job_templates' if workflow else 'job_templates'}/"
        hint = "" if workflow else " (a workflow: --workflow)"
        try:
            if ref.isdigit():
                status, data = self._call("GET", f"{listing}{int(ref)}/")
                if status == 404:
                    raise AwxRefused(f"AWX has no {kind} {ref} that this token can see{hint}")
                if status != 200:
                    raise _refusal(status, data, f"read {kind} {ref}")
                return Template(int(data["id"]), str(data.get("name", ref)), workflow)
            found = self._get(listing, {"name": ref}, what=f"list the {kind}s")
        except _Unavailable as exc:
            raise AwxRefused(f"cannot reach AWX at {self.base}: {exc}; nothing launched") from None
        results = [r for r in found.get("results") or [] if r.get("name") == ref]
        if not results:
            raise AwxRefused(f"AWX has no {kind} named {ref!r} that this token can see{hint}")
        if len(results) > 1:
            ids = ", ".join(str(r.get("id")) for r in results)
            raise AwxRefused(f"several {kind}s are named {ref!r} (ids {ids}, in different organizations): give the id")
        return Template(int(results[0]["id"]), ref, workflow)

    def launch(self, template: Template, extra_vars: Mapping[str, Any]) -> Launched:
        """Launch ``template`` with ``extra_vars``; refused (nothing left running) when AWX would
        drop any of them."""
        try:
            prompts = self._get(f"{template.path}launch/", what=f"launch {template.what}")
            if not prompts.get("ask_variables_on_launch") and not prompts.get("survey_enabled"):
                raise AwxRefused(f"{template.what} prompts for no extra variables: AWX would silently drop "
                                 f"{', '.join(extra_vars)}; enable 'Prompt on launch' for extra variables "
                                 "(or a survey with them) on the template")
            status, data = self._call("POST", f"{template.path}launch/", body={"extra_vars": dict(extra_vars)})
        except _Unavailable as exc:
            raise AwxRefused(f"cannot reach AWX at {self.base}: {exc}; nothing launched") from None
        if status not in (200, 201) or not isinstance(data, dict):
            raise _refusal(status, data, f"launch {template.what}")
        job_id = int(data.get("workflow_job" if template.workflow else "job") or data["id"])
        launched = Launched(template, job_id,  # its page in AWX's UI
                            f"{self.base}/#/jobs/{'workflow' if template.workflow else 'playbook'}/{job_id}/output")
        ignored = data.get("ignored_fields") or {}
        if ignored:
            cancelled = self._cancel(launched)
            raise AwxRefused(f"AWX ignored {_fields(ignored)} when launching {template.what} "
                             f"({'job' if not template.workflow else 'workflow job'} {job_id} "
                             f"{'cancelled' if cancelled else 'could not be cancelled: cancel it in AWX'}): "
                             "enable 'Prompt on launch' for extra variables on the template")
        return launched

    def _cancel(self, launched: Launched) -> bool:
        try:
            status, _ = self._call("POST", f"{launched.path}cancel/")
        except _Unavailable:
            return False
        return status in (200, 202)

    # -- following ---------------------------------------------------------------------------
    def follow(self, launched: Launched, *, on_event: Sink | None = None, on_status: StatusSink | None = None,
               max_wait: float = MAX_WAIT) -> Outcome:
        """Poll the launched job (or workflow) to its end, streaming its events; the outcome."""
        watch = _Watch(self, launched, on_event, on_status, max_wait)
        return watch.workflow() if launched.template.workflow else watch.job()


class _Events:
    """One job's events, each handed on once and in ``counter`` order. Asks only for counters
    above the last one handed on; an event after a gap waits (AWX saves events asynchronously,
    a later one may be saved first) for GAP_POLLS polls, or until the job's end."""

    def __init__(self, client: Client, job_id: int, translator: _EventTranslator) -> None:
        self.client, self.path, self.translator = client, f"{API}/jobs/{job_id}/job_events/", translator
        self.done = 0  # every counter up to this one has been handed on
        self.waiting: dict[int, dict[str, Any]] = {}
        self.stalled = 0

    def pull(self, *, final: bool = False) -> int:
        """Read new events; returns how many were handed on."""
        for event in self.client.pages(self.path, {"order_by": "counter", "counter__gt": self.done}):
            counter = event.get("counter")
            if isinstance(counter, int) and counter > self.done:
                self.waiting.setdefault(counter, event)
        handed = self._hand_on()
        if self.waiting:
            self.stalled += 1
            if final or self.stalled > GAP_POLLS:  # the gap stays a gap
                self.done = min(self.waiting) - 1
                handed += self._hand_on()
        return handed

    def _hand_on(self) -> int:
        handed = 0
        while self.done + 1 in self.waiting:
            self.done += 1
            event = self.waiting.pop(self.done)
            self.translator({"event": event.get("event", ""), "event_data": event.get("event_data") or {}})
            handed += 1
        if handed:
            self.stalled = 0
        return handed


class _Watch:
    def __init__(self, client: Client, launched: Launched, on_event: Sink | None, on_status: StatusSink | None,
                 max_wait: float) -> None:
        self.client, self.launched, self.on_event = client, launched, on_event
        self.on_status = on_status or (lambda what, job, status: None)
        self.deadline = client.clock() + max_wait
        self.max_wait = max_wait
        self.streams: dict[int, tuple[_Events, RunResult]] = {}
        self.last_status: dict[int, str] = {}

    def _stream(self, job_id: int) -> tuple[_Events, RunResult]:
        if job_id not in self.streams:
            result = RunResult()
            self.streams[job_id] = (_Events(self.client, job_id, _EventTranslator(result, self.on_event)), result)
        return self.streams[job_id]

    def _status(self, what: str, job_id: int, status: str) -> None:
        if self.last_status.get(job_id) != status:
            self.last_status[job_id] = status
            self.on_status(what, job_id, status)

    def _poll(self, step: Callable[[], tuple[bool, int]]) -> None:
        """Call ``step`` (-> (ended, events handed on)) with backoff until it says ended."""
        interval, misses = POLL_FIRST, 0
        while True:
            try:
                ended, handed = step()
                misses = 0
            except _Unavailable as exc:
                misses += 1
                if misses >= MISSES:
                    raise AwxLostSight(f"AWX stopped answering while following {self._what()} ({exc}); it goes on "
                                       f"in AWX: {self.launched.url}") from None
                ended, handed = False, 0
            if ended:
                return
            if self.client.clock() >= self.deadline:
                raise AwxLostSight(f"{self._what()} had not ended after {self.max_wait:.0f} s: stopped following it; "
                                   f"it goes on in AWX: {self.launched.url}")
            self.client.sleep(interval)
            interval = POLL_FIRST if handed else min(interval * 2, POLL_MAX)

    def _what(self) -> str:
        return f"{'workflow job' if self.launched.template.workflow else 'job'} {self.launched.id}"

    def _finish(self, job_id: int) -> JobRun:
        """After a job's end: its events to the last (once AWX has saved them all), its summaries."""
        events, result = self._stream(job_id)
        drain_end = self.client.clock() + DRAIN_SECONDS
        job = self.client._get(f"{API}/jobs/{job_id}/")
        while not job.get("event_processing_finished", True) and self.client.clock() < drain_end:
            events.pull()
            self.client.sleep(POLL_FIRST)
            job = self.client._get(f"{API}/jobs/{job_id}/")
        events.pull(final=True)
        result.status = str(job.get("status") or "")
        summaries = list(self.client.pages(f"{API}/jobs/{job_id}/job_host_summaries/"))
        return JobRun(job, result, summaries)

    def job(self) -> Outcome:
        job_id = self.launched.id
        events, _ = self._stream(job_id)

        def step() -> tuple[bool, int]:
            job = self.client._get(f"{API}/jobs/{job_id}/")
            status = str(job.get("status") or "")
            handed = events.pull()
            self._status("job", job_id, status)  # after its events so far
            return status in FINAL, handed

        try:
            self._poll(step)
            run = self._finish(job_id)
        except (_Unavailable, AwxRefused) as exc:  # launched: whatever goes wrong now, nothing is "unchanged"
            raise AwxLostSight(f"lost sight of {self._what()} ({exc}); it goes on in AWX: {self.launched.url}") from None
        code, message = job_exit(run)
        return Outcome(self.launched, str(run.job.get("status")), code, message, [run])

    def workflow(self) -> Outcome:
        wf_id = self.launched.id
        state: dict[str, Any] = {"nodes": [], "status": ""}

        def step() -> tuple[bool, int]:
            wf = self.client._get(f"{API}/workflow_jobs/{wf_id}/")
            state["status"] = str(wf.get("status") or "")
            nodes = list(self.client.pages(f"{API}/workflow_jobs/{wf_id}/workflow_nodes/"))
            state["nodes"] = nodes
            handed = 0
            for node in nodes:
                job = _node_job(node)
                if job is None:
                    continue
                if job["type"] == "job":
                    handed += self._stream(job["id"])[0].pull()
                self._status(job["name"], job["id"], job["status"])  # after its events so far
            self._status("workflow", wf_id, state["status"])  # after its steps: the order they ended in
            return state["status"] in FINAL or _approval_pending(nodes) is not None, handed

        try:
            self._poll(step)
            runs = {job["id"]: self._finish(job["id"]) for node in state["nodes"]
                    if (job := _node_job(node)) is not None and job["type"] == "job"}
        except (_Unavailable, AwxRefused) as exc:  # launched: whatever goes wrong now, nothing is "unchanged"
            raise AwxLostSight(f"lost sight of {self._what()} ({exc}); it goes on in AWX: {self.launched.url}") from None
        code, message, nodes = workflow_exit(state["status"], state["nodes"], runs)
        return Outcome(self.launched, state["status"], code, message, list(runs.values()), nodes)


def _node_job(node: Mapping[str, Any]) -> dict[str, Any] | None:
    """A workflow node's job as ``{id, name, status, type}``; None when it has not run."""
    if node.get("do_not_run") or not node.get("job"):
        return None
    summary = (node.get("summary_fields") or {}).get("job") or {}
    template = (node.get("summary_fields") or {}).get("unified_job_template") or {}
    return {"id": int(node["job"]), "name": str(summary.get("name") or template.get("name") or f"node {node.get('id')}"),
            "status": str(summary.get("status") or ""), "type": str(summary.get("type") or "job"),
            "failed": bool(summary.get("failed"))}


def _approval_pending(nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
    for node in nodes:
        job = _node_job(node)
        if job is not None and job["type"] == "workflow_approval" and job["status"] in ("pending", "waiting"):
            return job
    return None


# A failed policy step (deploy.yml's and rollback.yml's first task that can refuse) changed no
# host: the job means what it says (4 refused, 2 bad settings, 70 lrelease itself failed),
# never 1 ("rolled back") nor 3 ("a rollback failed").
_POLICY_EXITS = (ExitCode.USAGE, ExitCode.REFUSED, ExitCode.INTERNAL)


def job_exit(run: JobRun) -> tuple[ExitCode, str]:
    """A finished job's exit code and one line saying why (module docstring)."""
    job, result = run.job, run.result
    status, jid = str(job.get("status") or ""), job.get("id")
    failed = sorted({s.get("host_name") or "" for s in run.summaries if s.get("failed") or s.get("failures")
                     or s.get("dark")} | result.failed | result.unreachable)
    hosts = f" (failed: {', '.join(failed)})" if failed else ""
    if status == "successful":
        if result.stopped:
            return ExitCode.INTERRUPTED, f"job {jid} stopped at a safe point before a wave (`lrelease resume` goes on)"
        return ExitCode.OK, f"job {jid} successful"
    if status == "canceled":
        return ExitCode.INTERRUPTED, f"job {jid} was canceled in AWX{hosts}; see `lrelease status`"
    if status == "error":
        why = snippet(str(job.get("job_explanation") or "")) or "see its output in AWX"
        return ExitCode.INTERNAL, f"AWX could not run job {jid} (status error: {why}); see `lrelease status`"
    if os.path.basename(run.playbook) == STATUS_PLAYBOOK:  # as `lrelease status`
        return ExitCode.HALTED, f"job {jid}: the fleet is not consistent{hosts}; see its output in AWX"
    if result.policy_exit in _POLICY_EXITS:  # its policy step failed, before any host changed
        said = " ".join(result.policy_msg.split()) or "its policy step failed"
        return ExitCode(result.policy_exit), f"job {jid} changed no host: {said}"
    if run.rollback:
        return ExitCode.ROLLBACK_FAILED, f"rollback job {jid} failed{hosts}: a human is needed"
    inconclusive = [g for g in result.gates if g.get("verdict") == "inconclusive"]
    if inconclusive:
        g = inconclusive[0]
        return ExitCode.HALTED, f"job {jid} halted: gate INCONCLUSIVE on {g['host']}: {g['reason']}"
    left = sorted(result.live_on_new_build)
    if left:
        build = (job.get("artifacts") or {}).get("lrelease_rollback_build") or "the new build"
        return ExitCode.HALTED, (f"job {jid} failed{hosts}; {', '.join(left)} stay on {build} for a human: launch the "
                                 "rollback template or run `lrelease rollback`")
    return ExitCode.ROLLED_BACK, f"job {jid} failed{hosts}; no host was left on the new build"


def workflow_exit(status: str, nodes: list[dict[str, Any]], runs: Mapping[int, JobRun],
                  ) -> tuple[ExitCode, str, list[dict[str, Any]]]:
    """A finished workflow's exit code, one line, and its nodes as ``{node, name, job, status,
    role}`` (role: ``rollback`` for a rollback step that ran, else ``step``; ``not run``)."""
    on_failure_path = {int(t) for node in nodes for t in node.get("failure_nodes") or []}
    shown, rollbacks = [], []
    for node in nodes:
        job = _node_job(node)
        role = "not run"
        if job is not None:
            run = runs.get(job["id"])
            is_rollback = job["type"] == "job" and ((run is not None and run.rollback) or (
                node.get("id") in on_failure_path and not (run is not None and run.checks)))
            role = "rollback" if is_rollback else "step"
            if is_rollback:
                rollbacks.append((job, run))
        shown.append({"node": node.get("id"), "name": job["name"] if job else "", "job": job["id"] if job else None,
                      "status": (runs[job["id"]].job.get("status") if job and job["id"] in runs else
                                 job["status"] if job else ""), "role": role})
    failed_rollbacks = [job for job, run in rollbacks if (run.job.get("status") if run else job["status"]) != "successful"]
    if failed_rollbacks:
        job = failed_rollbacks[0]
        return ExitCode.ROLLBACK_FAILED, f"the rollback step {job['name']!r} (job {job['id']}) failed: a human is needed", shown
    if rollbacks:
        job = rollbacks[0][0]
        return (ExitCode.ROLLED_BACK, f"rolled back: the workflow ran its rollback step {job['name']!r} (job {job['id']}); "
                                      f"AWX says {status or 'running'}, the release failed", shown)
    approval = _approval_pending(nodes)
    if approval is not None:
        return ExitCode.HALTED, f"halted for a human: approval {approval['name']!r} waits in AWX", shown
    stopped = [run for run in runs.values() if run.triage and run.job.get("status") == "failed"]
    if stopped:  # the deploy stopped for a human or the next window, or was refused: nothing rolled back
        run = stopped[0]
        said = next(iter(run.result.failures.values()), "") or "see its output in AWX"
        # "refused: ..." : a policy refused the deploy before any host changed
        code, what = (ExitCode.REFUSED, "refused") if said.startswith("refused: ") else (ExitCode.HALTED, "left for a human")
        return code, f"{what}: the triage step {run.job.get('name')!r} (job {run.job.get('id')}) said {said}", shown
    if status == "successful":
        return ExitCode.OK, "workflow successful", shown
    if status == "canceled":
        return ExitCode.INTERRUPTED, "the workflow was canceled in AWX; see `lrelease status`", shown
    failed_jobs = [run for run in runs.values() if run.job.get("status") != "successful"]
    if failed_jobs:
        code, message = job_exit(failed_jobs[0])
        return code, f"workflow {status}: {message}", shown
    return ExitCode.INTERNAL, f"workflow {status or 'ended'} without a failed job: see it in AWX", shown


def _detail(data: Any) -> str:
    """AWX's error body in one line: ``{"detail": ...}`` or field errors ``{field: [msg, ...]}``."""
    if isinstance(data, dict):
        if set(data) == {"detail"}:
            return " ".join(str(data["detail"]).split())
        parts = []
        for key, value in data.items():
            text = "; ".join(str(v) for v in value) if isinstance(value, list) else (
                json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value))
            parts.append(f"{key}: {' '.join(text.split())}")
        return snippet("; ".join(parts))
    return snippet(str(data))


def _fields(ignored: Mapping[str, Any]) -> str:
    """``ignored_fields`` named: ``extra_vars (lrelease_build, lrelease_env), limit``."""
    parts = []
    for key, value in ignored.items():
        parts.append(f"{key} ({', '.join(map(str, value))})" if isinstance(value, dict) and value else str(key))
    return ", ".join(parts)


def _refusal(status: int, data: Any, what: str) -> AwxRefused:
    detail = secrets.scrub(_detail(data))  # a server may echo the token back
    if status == 400:
        return AwxRefused(f"AWX refused to {what} (HTTP 400): {detail}")
    if status == 401:
        return AwxRefused(f"AWX did not accept the token (HTTP 401: {detail}): check {ENV_TOKEN[0]} "
                          f"(or {ENV_TOKEN_FILE})")
    if status == 403:
        return AwxRefused(f"the token's AWX user may not {what} (HTTP 403: {detail}): ask for the Execute role on it")
    if status == 404:
        return AwxRefused(f"AWX has nothing to {what} here (HTTP 404): check the id and {ENV_URL[0]}")
    return AwxRefused(f"AWX answered HTTP {status} to {what}: {detail}")


BUILD_VAR, ENV_VAR, REASON_VAR = "lrelease_build", "lrelease_env", "lrelease_reason"
EXTRA_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def extra_vars(build: str, env: str | None, reason: str, more: Mapping[str, str]) -> dict[str, Any]:
    """The launch's extra vars (docs/design.md, "Playbook variables"): the build, the environment
    and the reason, plus ``more`` (``--extra-var``), which may not repeat them."""
    values: dict[str, Any] = {BUILD_VAR: build}
    if env:
        values[ENV_VAR] = env
    if reason:
        values[REASON_VAR] = reason
    for key, value in more.items():
        if not EXTRA_VAR_RE.match(key):
            raise ConfigError("--extra-var", key, "a variable name (letters, digits, _), as KEY=VALUE")
        if key in values:
            raise ConfigError("--extra-var", key, "not one of lrelease_build, lrelease_env, lrelease_reason "
                                                  "(give --build, --env, --reason)")
        values[key] = extra_value(key, value)
    return values


def extra_value(key: str, text: str) -> Any:
    """An ``--extra-var`` value, typed as the playbooks expect it: a flow list or mapping
    (``[1, "50%"]``, ``{a: 1}``) is read as YAML; a JSON scalar that reads back as written (``60``,
    ``0.5``, ``true``, ``null``, ``"1.10"`` quoted) is that scalar; anything else is the string as
    given (``1.10`` stays a string: as a number it would read back as ``1.1``). AWX gets them in
    its ``extra_vars`` JSON object, so the template's playbook sees them typed."""
    if text.lstrip()[:1] in ("[", "{"):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError("--extra-var", key, f"a YAML/JSON list or mapping, got {text!r}") from None
        if not isinstance(value, (list, dict)):
            raise ConfigError("--extra-var", key, f"a YAML/JSON list or mapping, got {text!r}")
        return value
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, (bool, int, float, str)) or value is None:
        if json.dumps(value) == text.strip():
            return value
    return text
