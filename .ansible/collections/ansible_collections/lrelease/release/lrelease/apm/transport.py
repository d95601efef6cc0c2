"""What every provider shares: secrets from environment variables, one HTTP wrapper, settings checks.

Secrets: a :class:`Secret` is read from an environment variable whose *name* the settings give
(``api_key_env: DD_API_KEY``; an AWX custom credential injects the variable). Its repr and str
never show the value; only :meth:`Secret.reveal` does, and only the HTTP wrapper calls it, to
put it in a header. Any error text that passes through the wrapper is scrubbed of the secrets
it sent, so even a server that echoes a header back cannot leak one into a log.

HTTP: one ``requests.Session`` per provider. It reads the environment as every HTTP tool does
(``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, ``REQUESTS_CA_BUNDLE``) but not ``~/.netrc`` (no
credential that lrelease does not know of, and so could not scrub, is ever sent). A provider's
``ca_bundle`` setting names the CA file for its server and wins over ``REQUESTS_CA_BUNDLE``.
The SaaS and Prometheus providers retry with urllib3's ``Retry`` (:data:`VENDOR_RETRY`): on
429/502/503/504 and on connection errors, with exponential backoff and jitter, honouring
``Retry-After``, at most :data:`ATTEMPTS` attempts and never starting one whose wait would end
more than :data:`RETRY_BUDGET` seconds after the first (the gate looks again at its next look
anyway; a ``Retry-After`` beyond the budget is not waited for). A host's own endpoints
(``scrape``, ``http``) are not retried: their answer, or silence, is the reading.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from lrelease import secrets
from lrelease.apm import ProviderError
from lrelease.errors import ConfigError
from lrelease.schema import Checker, url_problem

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: no trailing newline
BODY_LIMIT = 300  # characters of an error body quoted in a ProviderError
T = TypeVar("T")
SECRET_HINT = "name the environment variable that holds it instead, e.g. {key}_env: MYAPP_{KEY}"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
ATTEMPTS = 4  # the first and three retries
RETRY_BUDGET = 10.0  # seconds from the first attempt; plus one timeout, below a look interval (180 s default)
BACKOFF = 0.5  # seconds: waits of 0, 1, 2 s between attempts (urllib3: 0.5 * 2**(n-1) from the second)
JITTER = 0.5  # plus up to this much, at random, so that gates started together do not retry together


class Secret:
    """A credential read from the environment. Never printed: ``repr`` names the variable only."""

    __slots__ = ("_value", "variable")

    def __init__(self, value: str, variable: str) -> None:
        self._value, self.variable = value, variable

    @classmethod
    def from_env(cls, env: Mapping[str, str], variable: str, *, where: str, key: str) -> Secret:
        if not ENV_NAME_RE.match(variable or ""):
            raise ConfigError(where, key, f"the name of an environment variable, got {variable!r}")
        value = env.get(variable, "")
        if not value:
            raise ConfigError(where, key, f"environment variable {variable} to be set (it holds the secret); it is not")
        # Scrubbed by value from every message, record and output from here on; also when only the
        # settings are checked (lrelease.yml loaded): the variable's value in this process.
        secrets.register_env(variable)
        return cls(value, variable)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(${self.variable})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickled with its value (ansible-runner artifacts, caches)
        raise TypeError("a Secret cannot be pickled")


class Unreachable(ProviderError):
    """The far end did not answer at all (refused, timed out, DNS). For ``scrape``/``http`` that
    is the *host* being unreachable; for the SaaS/Prometheus providers, the provider."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    content_type: str = ""
    attempts: int = 1
    seconds: float = 0.0  # from the first attempt's start to the answer

    def retried(self) -> str:
        """`` (after 4 attempts in 3.2 s)`` when it took more than one, else ``""``."""
        return f" (after {self.attempts} attempts in {self.seconds:.1f} s)" if self.attempts > 1 else ""


class Http:
    """A requests session per provider: the environment's proxies and CA bundle (not .netrc), an
    optional CA bundle of its own, bounded retries (``retry=True``), always a timeout, and its
    own secrets scrubbed from any error text."""

    def __init__(self, provider: str, timeout: float, secrets: Sequence[Secret] = (), *,
                 retry: bool = False, ca_bundle: str = "") -> None:
        import requests  # lazily: importing lrelease.apm does not need it
        from requests.adapters import HTTPAdapter

        self.provider, self.timeout = provider, timeout
        self._secrets = [s.reveal() for s in secrets if s.reveal()]
        self._session = requests.Session()
        self._session.trust_env = True  # HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...
        self._session.auth = _no_netrc  # ...but never credentials from ~/.netrc
        self._verify: bool | str = ca_bundle or True  # a path here wins over REQUESTS_CA_BUNDLE
        self._retry = retry
        self._adapter = HTTPAdapter()
        for scheme in ("http://", "https://"):
            self._session.mount(scheme, self._adapter)
        self._requests = requests

    def scrub(self, text: str) -> str:
        for value in self._secrets:
            text = text.replace(value, "***")
        return secrets.scrub(text)

    def request(self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, json_body: Any = None,
                auth: tuple[str, str] | None = None) -> Reply:
        started = time.monotonic()
        policy = retry_policy(started, self._retry)
        self._adapter.max_retries = policy  # per request: its deadline starts now (one thread per provider)
        try:
            response = self._session.request(method, url, params=params, headers=dict(headers or {}),
                                             json=json_body, auth=auth, timeout=self.timeout,
                                             allow_redirects=False, verify=self._verify)
        except self._requests.RequestException as exc:
            tried = Reply(0, "", attempts=len(policy.tries) + 1, seconds=time.monotonic() - started).retried()
            raise Unreachable(self.provider, self.scrub(f"cannot reach {safe_url(url)}: {_reason(exc)}{tried}")) from None
        return Reply(response.status_code, response.text, response.headers.get("Content-Type", ""),
                     attempts=len(policy.tries) + 1, seconds=time.monotonic() - started)

    def fail(self, message: str, *, status: int | None = None) -> ProviderError:
        return ProviderError(self.provider, self.scrub(message), status=status)

    def parse(self, reply: Reply, parser: Callable[[int, str], T]) -> T:
        """``parser(status, body)``; its ProviderError re-raised with this session's secrets
        scrubbed (a vendor may echo a key back in an error), saying how often it was tried."""
        try:
            return parser(reply.status, reply.body)
        except ProviderError as exc:
            raise self.fail(exc.detail + reply.retried(), status=exc.status) from None


def _no_netrc(request: Any) -> Any:
    """The session's default auth: none. Being set, it keeps requests from reading ~/.netrc
    (which it does when trust_env is on and no auth is given); a request's own auth wins."""
    return request


def retry_policy(started: float, retry: bool) -> BoundedRetry:
    """urllib3's Retry for one request started at ``started`` (time.monotonic)."""
    if not retry:  # one attempt; the answer, whatever its status, is returned
        return BoundedRetry(total=0, read=False, redirect=False, raise_on_status=False)
    return BoundedRetry(
        total=ATTEMPTS - 1, connect=ATTEMPTS - 1, read=ATTEMPTS - 1, status=ATTEMPTS - 1, other=0, redirect=False,
        status_forcelist=RETRY_STATUSES, allowed_methods=None,  # GET queries, and NerdGraph's POSTed NRQL reads
        backoff_factor=BACKOFF, backoff_jitter=JITTER, respect_retry_after_header=True,
        raise_on_status=False,  # out of attempts: the last answer is returned, and its error reported
        deadline=started + RETRY_BUDGET)


class BoundedRetry(Retry):
    """urllib3's ``Retry`` that also keeps to a deadline: a retry whose wait (``Retry-After``, or
    the backoff with its largest jitter) would end after ``deadline`` is not made, so the last
    answer (or error) stands. ``tries`` records each retry made, shared along the chain of copies
    urllib3 makes, so that the caller can say how many attempts it took."""

    def __init__(self, *args: Any, deadline: float = math.inf, tries: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.tries = [] if tries is None else tries

    def new(self, **kw: Any) -> BoundedRetry:
        retry = super().new(**kw)
        retry.deadline, retry.tries = self.deadline, self.tries
        return retry

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None) -> BoundedRetry:
        retry = super().increment(method=method, url=url, response=response, error=error, _pool=_pool,
                                  _stacktrace=_stacktrace)
        wait = None
        if response is not None and self.respect_retry_after_header:
            try:
                wait = retry.get_retry_after(response)
            except InvalidHeader:
                wait = None
        if wait is None:  # urllib3's backoff (none before the first retry), with the most jitter it may add
            errors = len(retry.history)
            wait = 0.0 if errors <= 1 else min(retry.backoff_max, retry.backoff_factor * 2 ** (errors - 1)
                                               + retry.backoff_jitter)
        if time.monotonic() + wait > self.deadline:
            raise MaxRetryError(_pool, url, error or ResponseError(f"no retry within {RETRY_BUDGET:.0f} s"))
        self.tries.append(f"HTTP {response.status}" if response is not None else type(error).__name__)
        return retry


def json_object(provider: str, status: int, body: str) -> dict[str, Any]:
    """A JSON object answer, or a ProviderError saying what came instead."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise ProviderError(provider, f"HTTP {status}, not a JSON answer: {snippet(body)}", status=status) from None
    if not isinstance(doc, dict):
        raise ProviderError(provider, f"HTTP {status}, unexpected answer: {snippet(body)}", status=status)
    return doc


def _reason(exc: Exception) -> str:
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return ("TLS certificate not trusted or TLS failed (set the provider's ca_bundle: to the CA file "
                "that signed the server's certificate)")
    if isinstance(exc, requests.exceptions.ProxyError):
        return "the proxy (HTTPS_PROXY/HTTP_PROXY) refused or failed the connection"
    text = f"{type(exc).__name__}"
    inner = getattr(exc, "args", ())
    if inner and isinstance(inner[0], Exception):
        text += f" ({type(inner[0]).__name__})"
        reason = getattr(inner[0], "reason", None)  # urllib3's MaxRetryError: what the last attempt met
        if isinstance(reason, Exception):
            text += f": {type(reason).__name__}"
    return text


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment (for messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def snippet(body: str) -> str:
    text = " ".join(body.split())
    return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + "..."


class Settings:
    """Checks one provider's settings mapping; every error names ``where``, the key, the expectation."""

    def __init__(self, data: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
        self.check = Checker(where)
        self.where = where
        self.check.no_secrets(dict(data), "", SECRET_HINT)
        self.data = self.check.mapping(dict(data), "", optional=tuple(allowed))

    def has(self, key: str) -> bool:
        return key in self.data

    def string(self, key: str, default: str | None = None, *, pattern: re.Pattern | None = None,
               describe: str = "a string") -> str:
        if key not in self.data:
            if default is None:
                self.check.fail(key, f"{describe} (required)")
            return default
        return self.check.string(self.data[key], key, pattern=pattern, describe=describe)

    def number(self, key: str, default: float, *, minimum: float = 0.0, exclusive: bool = True) -> float:
        if key not in self.data:
            return default
        return float(self.check.number(self.data[key], key, minimum=minimum, exclusive=exclusive))

    def integer(self, key: str, default: int | None = None, *, minimum: int | None = None) -> int:
        if key not in self.data:
            if default is None:
                self.check.fail(key, "an integer (required)")
            return default
        return self.check.integer(self.data[key], key, minimum=minimum)

    def boolean(self, key: str, default: bool) -> bool:
        return default if key not in self.data else self.check.boolean(self.data[key], key)

    def url(self, key: str, default: str | None = None) -> str:
        value = self.string(key, default, describe="an http(s) URL")
        secrets.register_url(value)  # a token= in its query
        problem = url_problem(value)  # "http://[::1", "http://h:99999": one line, not a traceback
        if problem:
            self.check.fail(key, f"an http:// or https:// URL: {problem}")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.check.fail(key, f"an http:// or https:// URL, got {value!r}")
        if parts.username or parts.password:
            self.check.fail(key, "a URL without user:password (name environment variables for credentials)")
        return value.rstrip("/")

    def ca_bundle(self, key: str = "ca_bundle") -> str:
        """A PEM file of CA certificates to trust for this provider's server ("" when not set)."""
        if key not in self.data:
            return ""
        path = os.path.expanduser(self.string(key, describe="the path of a PEM file of CA certificates"))
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            self.check.fail(key, f"the path of a readable PEM file of CA certificates; {path!r} is not one")
        return path

    def env_name(self, key: str, default: str | None = None) -> str:
        return self.string(key, default, pattern=ENV_NAME_RE, describe="the name of an environment variable")

    def secret(self, key: str, env: Mapping[str, str], default: str | None = None) -> Secret:
        return Secret.from_env(env, self.env_name(key, default), where=self.where, key=key)
