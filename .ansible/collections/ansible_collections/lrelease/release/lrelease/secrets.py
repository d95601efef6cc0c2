"""Secrets by value: one registry per process, and the scrubbing of text and data with it.

Redaction by key name (``state.redact``) misses a secret that travels inside a value: the
password of ``https://ci:s3cret@ci.example.com/...``, the ``token=`` of a health path, an API
key that a vendor echoes in an error. So every secret lrelease reads is registered here *when it
is read* (an API key from the environment, the credentials of a configured URL), and every
message, database write, runner artifact and line of output passes through :func:`scrub`,
which replaces each registered value by ``***`` wherever it appears.

- :func:`register` a value (ignored when shorter than ``MIN_LENGTH``: scrubbing every "ab" would
  garble every message; such a value is still masked inside URLs by :func:`mask_url`). Its
  percent-encoded, percent-decoded and JSON-escaped spellings are registered with it.
- :func:`register_url` registers a URL's password (``user:pass@``) and the values of its query
  parameters whose names look secret (``token=``, ``key=``, ``password=``, ``sig=``...), and
  returns the URL as users see it: ``https://user:***@host/path?token=***``.
- :func:`register_env` reads an environment variable that holds a secret and registers it.
- :func:`scrub` (text) and :func:`scrub_data` (JSON-like data, at any depth) mask every
  registered value, and any ``user:password@`` in a URL even if it was never registered.
- :func:`vars_via_env` moves the Ansible extra vars that hold a secret to the environment, so
  that they are neither on ansible-playbook's command line nor in ansible-runner's artifacts.

The registry only grows (a process reads a handful of secrets); :func:`clear` is for tests.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from lrelease.schema import looks_secret

MASK = "***"
MIN_LENGTH = 4

_lock = threading.Lock()
_values: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first, so a secret containing another is masked whole

# Query parameter names that carry a credential, beyond the key names of schema.looks_secret
# (``key=``, ``sig=``, ``X-Amz-Signature=``, ``access_token=``, ``auth=``...).
_SECRET_PARAM_RE = re.compile(r"(^|[_.-])(key|sig|signature|auth|authorization|session|credentials?)$")
# scheme://user:password@ in any text, registered or not.
_USERINFO_RE = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@?#]*:)(?P<pw>[^\s/@?#]+)(?=@)")


def secret_param(name: str) -> bool:
    """True for query parameter names that carry a credential (``token``, ``api_key``, ``key``...)."""
    low = name.lower()
    return looks_secret(low) or bool(_SECRET_PARAM_RE.search(low))


def register(value: Any) -> None:
    """Remember ``value`` (and its encoded spellings) as a secret of this process."""
    global _ordered
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        return
    spellings = {value, quote(value, safe=""), quote(value, safe="/:"), unquote(value),
                 json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    with _lock:
        new = {s for s in spellings if len(s) >= MIN_LENGTH} - _values
        if new:
            _values.update(new)
            _ordered = tuple(sorted(_values, key=len, reverse=True))


def register_env(name: str, env: Mapping[str, str] | None = None) -> str:
    """The value of environment variable ``name`` (``""`` if unset), registered as a secret."""
    value = (os.environ if env is None else env).get(name, "") if name else ""
    register(value)
    return value


def register_url(url: Any) -> str:
    """Register the credentials inside ``url`` and return it masked for display."""
    if not isinstance(url, str):
        return url
    parts = _split(url)
    if parts is None:
        return scrub(url)
    if parts.password:
        register(parts.password)
    for name, value in _query(parts.query):
        if secret_param(name):
            register(value)
    return mask_url(url)


def mask_url(url: str) -> str:
    """``url`` as users see it: the password and secret-looking query values as ``***``."""
    parts = _split(url)
    if parts is None:
        return scrub(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
    query = parts.query
    if query:
        query = "&".join(_mask_pair(pair) for pair in query.split("&"))
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def scrub(text: str) -> str:
    """``text`` with every registered secret, and any URL's ``user:password@``, masked."""
    if not isinstance(text, str) or not text:
        return text
    for value in _ordered:
        if value in text:
            text = text.replace(value, MASK)
    if "://" in text and "@" in text:
        text = _USERINFO_RE.sub(lambda m: m.group("head") + MASK, text)
    return text


def scrub_data(value: Any) -> Any:
    """A copy of JSON-like ``value`` with :func:`scrub` applied to every string (keys too)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {scrub(k) if isinstance(k, str) else k: scrub_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub_data(v) for v in value]
    return value


def contains_secret(text: str) -> bool:
    """True when ``text`` holds a registered secret (what :func:`scrub` would change)."""
    return isinstance(text, str) and any(value in text for value in _ordered)


def vars_via_env(variables: Mapping[str, Any], prefix: str = "LRELEASE_SECRET_VAR_") -> tuple[dict, dict]:
    """Ansible extra vars with every variable that holds a registered secret moved to the
    environment: it becomes ``{{ lookup('ansible.builtin.env', '<prefix><NAME>') }}`` (through
    ``from_json`` when not a string), so the value is on neither the command line (``ps``,
    ansible-runner's ``command`` artifact) nor in a file. Returns (extra vars, environment)."""
    out: dict[str, Any] = {}
    env: dict[str, str] = {}
    for name, value in variables.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if not contains_secret(text) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            out[name] = value
            continue
        var = f"{prefix}{str(name).upper()}"
        env[var] = text
        parse = "" if isinstance(value, str) else " | from_json"
        out[name] = "{{ lookup('ansible.builtin.env', '%s')%s }}" % (var, parse)
    return out, env


def registered() -> frozenset[str]:
    """Every registered spelling (for tests and diagnostics; never print it)."""
    return frozenset(_values)


def clear() -> None:
    """Forget every secret (tests only)."""
    global _ordered
    with _lock:
        _values.clear()
        _ordered = ()


def _split(url: str):
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None
    return parts


def _query(query: str) -> Iterable[tuple[str, str]]:
    pairs = parse_qsl(query, keep_blank_values=True)
    raw = [tuple(p.split("=", 1)) for p in query.split("&") if "=" in p]
    return [*pairs, *raw]  # decoded and as written: either may be what shows up in a message


def _mask_pair(pair: str) -> str:
    name, eq, value = pair.partition("=")
    return f"{name}={MASK}" if eq and value and secret_param(unquote(name)) else pair
