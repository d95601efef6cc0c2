"""What every provider shares: secrets from environment variables, one HTTP wrapper, settings checks.

Secrets: a :class:`Secret` is read from an environment variable whose *name* the settings give
(``api_key_env: DD_API_KEY``; an AWX custom credential injects the variable). Its repr and str
never show the value; only :meth:`Secret.reveal` does, and only the HTTP wrapper calls it, to
put it in a header. Any error text that passes through the wrapper is scrubbed of the secrets
it sent, so even a server that echoes a header back cannot leak one into a log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from lrelease import secrets
from lrelease.apm import ProviderError
from lrelease.errors import ConfigError
from lrelease.schema import Checker, url_problem

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: no trailing newline
BODY_LIMIT = 300  # characters of an error body quoted in a ProviderError
T = TypeVar("T")
SECRET_HINT = "name the environment variable that holds it instead, e.g. {key}_env: MYAPP_{KEY}"


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


class Http:
    """A requests session that never reads proxies or .netrc from the environment, always has a
    timeout, and scrubs its own secrets from any error text."""

    def __init__(self, provider: str, timeout: float, secrets: Sequence[Secret] = ()) -> None:
        import requests  # lazily: importing lrelease.apm does not need it

        self.provider, self.timeout = provider, timeout
        self._secrets = [s.reveal() for s in secrets if s.reveal()]
        self._session = requests.Session()
        self._session.trust_env = False
        self._requests = requests

    def scrub(self, text: str) -> str:
        for value in self._secrets:
            text = text.replace(value, "***")
        return secrets.scrub(text)

    def request(self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, json_body: Any = None,
                auth: tuple[str, str] | None = None) -> Reply:
        try:
            response = self._session.request(method, url, params=params, headers=dict(headers or {}),
                                             json=json_body, auth=auth, timeout=self.timeout,
                                             allow_redirects=False)
        except self._requests.RequestException as exc:
            raise Unreachable(self.provider, self.scrub(f"cannot reach {safe_url(url)}: {_reason(exc)}")) from None
        return Reply(response.status_code, response.text, response.headers.get("Content-Type", ""))

    def fail(self, message: str, *, status: int | None = None) -> ProviderError:
        return ProviderError(self.provider, self.scrub(message), status=status)

    def parse(self, reply: Reply, parser: Callable[[int, str], T]) -> T:
        """``parser(status, body)``; its ProviderError re-raised with this session's secrets
        scrubbed (a vendor may echo a key back in an error)."""
        try:
            return parser(reply.status, reply.body)
        except ProviderError as exc:
            raise self.fail(exc.detail, status=exc.status) from None


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
    text = f"{type(exc).__name__}"
    inner = getattr(exc, "args", ())
    if inner and isinstance(inner[0], Exception):
        text += f" ({type(inner[0]).__name__})"
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

    def env_name(self, key: str, default: str | None = None) -> str:
        return self.string(key, default, pattern=ENV_NAME_RE, describe="the name of an environment variable")

    def secret(self, key: str, env: Mapping[str, str], default: str | None = None) -> Secret:
        return Secret.from_env(env, self.env_name(key, default), where=self.where, key=key)
