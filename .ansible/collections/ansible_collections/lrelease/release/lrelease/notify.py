"""Notifications: what a roll-out did, told to chat (Slack-compatible) and to signed JSON webhooks.

One event model (:class:`Event`) for every channel. The wrapper (``lrelease.rollout.Releaser``)
hands a :class:`Notifier` the roll-out's events; each channel has its own worker thread and a
bounded queue, so a slow receiver delays nobody else and events reach each channel in order.
Nothing here ever raises into the roll-out or blocks it: :meth:`Notifier.send` only appends to
queues; :meth:`Notifier.close` waits for delivery at most ``DRAIN_SECONDS`` in total, then gives
up and logs one line with how many events were not delivered. A channel that is *down* (its last
event could not be delivered) is not waited for at all, so a dead receiver does not even cost
the roll-out those seconds; after ``DOWN_AFTER`` undelivered events in a row it gets one try per
event (no retries) until one gets through, so its queue does not grow behind retries.

Delivery per event: one POST with a ``REQUEST_TIMEOUT`` (connect and each read), retried on a
connection error, a timeout, 429 or 5xx up to ``ATTEMPTS`` times in all, after ``BACKOFF`` (0.5 s, then 1 s) or
the receiver's ``Retry-After`` (capped at ``RETRY_AFTER_CAP``). Other answers (4xx) are final.

A full queue (``QUEUE_SIZE`` events waiting for a receiver that does not keep up) drops its
*oldest* event and counts it: the newest events (the verdicts, the rollback, the end) carry the
roll-out's state now, which is what a human reading the channel needs.

Plain ``requests`` rather than apprise: apprise cannot sign a webhook with an HMAC over the raw
body and a timestamp, and its retries are not bounded the way a roll-out needs.

URLs and HMAC keys come from environment variables only (``url_env``, ``secret_env``), read when
a roll-out starts and registered with :mod:`lrelease.secrets`; every payload is scrubbed.
"""

from __future__ import annotations

import collections
import email.utils
import hashlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from lrelease import secrets
from lrelease.apm.transport import Secret
from lrelease.errors import ConfigError

log = logging.getLogger(__name__)

# The vocabulary: lrelease.yml's ``events:`` filter names these. New kinds (``awaiting_promotion``,
# a window closing) are added here and in the schema's enum; receivers must ignore unknown kinds.
START, WAVE, GATE, HALT, PAUSE, ROLLBACK, END = "start", "wave", "gate", "halt", "pause", "rollback", "end"
KINDS = (START, WAVE, GATE, HALT, PAUSE, ROLLBACK, END)
CHANNEL_KINDS = ("slack", "webhook")
# Roll-out statuses that end in a pause (stopped at a safe point, to be continued): a PAUSE event.
PAUSED_STATUSES = ("interrupted", "paused", "awaiting_promotion")

QUEUE_SIZE = 100  # events waiting per channel; when full, the oldest is dropped (and counted)
REQUEST_TIMEOUT = 2.0  # seconds: connect, and each read of the answer
ATTEMPTS = 3  # tries per event in all (retried on connection errors, timeouts, 429, 5xx)
BACKOFF = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd... try (unless Retry-After says otherwise)
RETRY_AFTER_CAP = 10.0  # seconds: a longer Retry-After is waited this long at most
DOWN_AFTER = 3  # undelivered events in a row after which a channel gets one try per event
DRAIN_SECONDS = 5.0  # at the end of a roll-out, the wrapper waits at most this long for delivery
SIGNATURE_HEADER = "X-Lrelease-Signature"
TIMESTAMP_HEADER = "X-Lrelease-Timestamp"


@dataclass(frozen=True)
class ChannelConfig:
    """One entry of lrelease.yml's ``notifications:`` (names of variables, never their values)."""

    kind: str  # slack | webhook
    url_env: str
    secret_env: str | None = None  # webhook: the HMAC key's variable (required there)
    environments: tuple[str, ...] | None = None  # None: every environment
    events: tuple[str, ...] | None = None  # None: every kind of KINDS

    def wants(self, event: Event) -> bool:
        return ((self.environments is None or event.env in self.environments)
                and (self.events is None or event.kind in self.events))

    @property
    def label(self) -> str:
        return f"{self.kind} (${self.url_env})"


@dataclass(frozen=True)
class Event:
    """What happened, the same for every channel. Unset fields are None."""

    kind: str
    env: str
    rollout_id: str
    build: str
    actor: str
    action: str = "deploy"  # deploy | resume | rollback
    wave: int | None = None
    hosts: tuple[str, ...] | None = None  # wave: the hosts of the wave
    host: str | None = None  # gate: the host judged
    verdict: str | None = None  # gate: pass | fail | inconclusive
    reason: str | None = None  # gate: why; rollback: why (automatic) or the --reason (asked); start: --reason
    automatic: bool | None = None  # rollback: started by the wrapper after a failure (else asked)
    status: str | None = None  # halt, pause, end: the roll-out's status
    exit_code: int | None = None  # end (and halt, pause): the exit code of the command
    duration_seconds: float | None = None  # end: since the start
    message: str | None = None  # end: the outcome's one-line message
    time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds"))

    def to_dict(self) -> dict[str, Any]:
        """The webhook body's data: every field, secrets scrubbed, lists for tuples."""
        data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        return secrets.scrub_data({"schema": "lrelease.event/v1", **data})


# -- payloads -------------------------------------------------------------------------------
def slack_text(event: Event) -> str:
    """One line for chat, e.g. ``lrelease production: deploy of 1.4.0 by alice started``."""
    e = event
    head = f"lrelease {e.env}: {e.action} of {e.build}"
    if e.kind == START:
        body = f"started by {e.actor}" + (f" ({e.reason})" if e.reason else "")
    elif e.kind == WAVE:
        body = f"wave {e.wave} started" + (f": {', '.join(e.hosts)}" if e.hosts else "")
    elif e.kind == GATE:
        body = f"gate {str(e.verdict).upper()} on {e.host} (wave {e.wave})" + (f": {e.reason}" if e.reason else "")
    elif e.kind == HALT:
        body = "halted for a human" + (f": {e.reason}" if e.reason else "")
    elif e.kind == PAUSE:
        body = f"paused ({e.status})" + (f": {e.reason}" if e.reason else "")
    elif e.kind == ROLLBACK:
        body = ("rolling back automatically" if e.automatic else f"rollback asked by {e.actor}") + (
            f": {e.reason}" if e.reason else "")
    elif e.kind == END:
        body = f"ended {e.status} (exit {e.exit_code}) after {_seconds(e.duration_seconds)}" + (
            f": {e.message}" if e.message else "")
    else:
        body = e.kind
    return secrets.scrub(f"{head} {body} [{e.rollout_id}]")


def slack_payload(event: Event) -> dict[str, Any]:
    """An incoming-webhook body (Slack; Mattermost and Rocket.Chat read ``text`` the same way):
    ``text`` for notifications and clients without blocks, one section block with it escaped."""
    text = slack_text(event)
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {"text": escaped, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": escaped}}]}


def webhook_body(event: Event) -> bytes:
    """The exact bytes POSTed (and signed): the event as compact JSON, keys sorted."""
    return json.dumps(event.to_dict(), sort_keys=True, separators=(",", ":"), default=str).encode()


def signature(key: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(key, ``<timestamp>.`` + body): the timestamp is covered, so
    a captured request cannot be replayed later with a fresh timestamp (docs/design.md shows the
    receiver's side)."""
    mac = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}s"


# -- delivery -------------------------------------------------------------------------------
@dataclass
class _Target:
    config: ChannelConfig
    url: Secret
    key: Secret | None  # webhook: the HMAC key

    def request(self, event: Event) -> tuple[bytes, dict[str, str]]:
        if self.config.kind == "slack":
            return json.dumps(slack_payload(event)).encode(), {"Content-Type": "application/json"}
        body = webhook_body(event)
        stamp = str(int(time.time()))
        return body, {"Content-Type": "application/json", "User-Agent": "lrelease",
                      "X-Lrelease-Event": event.kind, "X-Lrelease-Delivery": str(uuid.uuid4()),
                      TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(self.key.reveal() if self.key else "",
                                                                           stamp, body)}


def targets(channels: Sequence[ChannelConfig], env: Mapping[str, str] | None = None,
            where: str = "lrelease.yml") -> list[_Target]:
    """Each channel with its URL and key read from the environment, the way the APM providers read
    theirs (``Secret``: registered with lrelease.secrets, never shown). Raises ConfigError (exit 2)
    for a variable that is unset or not an http(s) URL."""
    env = os.environ if env is None else env
    out = []
    for i, ch in enumerate(channels):
        key = f"notifications[{i}]"
        url = Secret.from_env(env, ch.url_env, where=where, key=f"{key}.url_env")
        secrets.register(url.reveal())  # from_env registers os.environ's value; this one may come from `env`
        secrets.register_url(url.reveal())  # its token= or user:password@ too, in any spelling
        if not url.reveal().startswith(("http://", "https://")):
            raise ConfigError(where, f"{key}.url_env", f"environment variable {ch.url_env} to hold an http(s) URL")
        secret = Secret.from_env(env, ch.secret_env, where=where, key=f"{key}.secret_env") if ch.secret_env else None
        secrets.register(secret.reveal() if secret else None)
        out.append(_Target(ch, url, secret))
    return out


class _Worker(threading.Thread):
    """One channel: a bounded queue (drop the oldest when full) and ordered delivery."""

    def __init__(self, target: _Target, session: Any) -> None:
        super().__init__(name=f"lrelease-notify-{target.config.kind}", daemon=True)
        self.target, self.session = target, session
        self.queue: collections.deque[Event] = collections.deque()
        self.cond = threading.Condition()
        self.busy = False  # an event is being delivered (taken off the queue, not done)
        self.closing = False  # no more events; exit once the queue is empty
        self.abandon = threading.Event()  # give up now: stop retrying, drop what is left
        self.delivered = self.dropped = self.failed = 0
        self.streak = 0  # undelivered events in a row (0: the last one finished was delivered)

    @property
    def down(self) -> bool:
        """The last event that finished was not delivered: the receiver is failing or hanging."""
        return self.streak > 0

    def put(self, event: Event) -> None:
        with self.cond:
            if len(self.queue) >= QUEUE_SIZE:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(event)
            self.cond.notify()

    def pending(self) -> int:
        with self.cond:
            return len(self.queue) + (1 if self.busy else 0)

    def run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closing and not self.abandon.is_set():
                    self.cond.wait()
                if self.abandon.is_set() or not self.queue:
                    return
                event = self.queue.popleft()
                self.busy = True
            try:
                ok = self._deliver(event)
            except Exception as exc:  # noqa: BLE001 - a notification never breaks anything
                log.debug("notification to %s: %s", self.target.config.label, secrets.scrub(str(exc)))
                ok = False
            with self.cond:
                self.busy = False
                if ok:
                    self.delivered += 1
                    self.streak = 0
                elif not self.abandon.is_set():
                    self.failed += 1
                    self.streak += 1
                self.cond.notify_all()

    def _deliver(self, event: Event) -> bool:
        import requests

        body, headers = self.target.request(event)
        attempts = 1 if self.streak >= DOWN_AFTER else ATTEMPTS
        for attempt in range(attempts):
            if self.abandon.is_set():
                return False
            wait = BACKOFF[min(attempt, len(BACKOFF) - 1)]
            try:
                reply = self.session.post(self.target.url.reveal(), data=body, headers=headers, timeout=REQUEST_TIMEOUT,
                                          allow_redirects=False)
            except requests.RequestException as exc:
                log.debug("notification to %s: %s", self.target.config.label, secrets.scrub(type(exc).__name__))
            else:
                if reply.status_code < 300:
                    return True
                if reply.status_code != 429 and reply.status_code < 500:
                    log.debug("notification to %s refused: HTTP %s", self.target.config.label, reply.status_code)
                    return False  # a 4xx other than 429 will not get better
                wait = retry_after(reply.headers.get("Retry-After"), wait)
            if attempt + 1 < attempts and self.abandon.wait(wait):
                return False
        return False


def retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), at most
    ``RETRY_AFTER_CAP``; ``default`` when absent or unreadable."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


@dataclass(frozen=True)
class Delivery:
    """What :meth:`Notifier.close` saw: per process, summed over channels."""

    delivered: int = 0
    undelivered: int = 0  # failed after its retries, dropped from a full queue, or left at the deadline
    dropped: int = 0  # of those: dropped from a full queue
    waited_seconds: float = 0.0


class Notifier:
    """Fans a roll-out's events out to its channels; never raises, never blocks the caller.

    ``begin()`` sets the roll-out the events belong to (and sends START); the other methods send
    one event each. ``close()`` drains with a deadline and returns a :class:`Delivery`."""

    def __init__(self, channels: Sequence[ChannelConfig], *, env: Mapping[str, str] | None = None,
                 where: str = "lrelease.yml", drain_seconds: float = DRAIN_SECONDS) -> None:
        self.drain_seconds = drain_seconds
        self._targets = targets(channels, env, where)  # a missing variable: ConfigError, before anything ran
        self._workers: list[_Worker] = []
        self._context: dict[str, Any] = {}
        self._started = 0.0
        self._closed = False
        self._lock = threading.Lock()  # send() may be called from the runner's event thread
        if self._targets:
            import requests

            session = requests.Session()
            session.trust_env = False  # no proxies or .netrc from the environment
            self._workers = [_Worker(t, session) for t in self._targets]

    @property
    def active(self) -> bool:
        return bool(self._workers)

    # -- the events ----------------------------------------------------------------------
    def begin(self, *, rollout_id: str, env: str, build: str, actor: str, action: str, reason: str = "") -> None:
        self._context = {"rollout_id": rollout_id, "env": env, "build": build, "actor": actor, "action": action}
        self._started = time.monotonic()
        self.send(START, reason=reason or None)

    def send(self, kind: str, **fields: Any) -> None:
        """Queue one event of ``kind`` for every channel that wants it. Never raises."""
        if not self._workers or not self._context or self._closed:
            return
        try:
            event = Event(kind=kind, **self._context, **fields)
            with self._lock:
                for worker in self._workers:
                    if worker.target.config.wants(event):
                        if worker.ident is None:
                            worker.start()
                        worker.put(event)
        except Exception as exc:  # noqa: BLE001 - a notification never breaks a roll-out
            log.debug("notification %s not queued: %s", kind, secrets.scrub(str(exc)))

    def end(self, status: str, exit_code: int, message: str = "") -> None:
        duration = round(time.monotonic() - self._started, 3) if self._started else None
        self.send(END, status=status, exit_code=int(exit_code), duration_seconds=duration, message=message or None)

    # -- the end -------------------------------------------------------------------------
    def close(self) -> Delivery:
        """Wait for the queued events of every channel that is not down to be delivered, at most
        ``drain_seconds`` in all; then abandon what is left (the worker threads are daemons: a
        receiver that hangs keeps one until its request times out, never the process). Logs one
        warning line when events were not delivered. Never raises."""
        if self._closed or not self._workers:
            self._closed = True
            return Delivery()
        self._closed = True
        t0 = time.monotonic()
        deadline = t0 + self.drain_seconds
        try:
            for w in self._workers:
                with w.cond:
                    w.closing = True
                    w.cond.notify_all()
            while time.monotonic() < deadline:
                waiting = [w for w in self._workers if w.is_alive() and not w.down]
                if not waiting:
                    break
                waiting[0].join(min(0.02, max(0.0, deadline - time.monotonic())))
            left = 0
            for w in self._workers:
                w.abandon.set()
                with w.cond:
                    left += len(w.queue) + (1 if w.busy else 0)
                    w.cond.notify_all()
            result = Delivery(delivered=sum(w.delivered for w in self._workers),
                              undelivered=left + sum(w.failed + w.dropped for w in self._workers),
                              dropped=sum(w.dropped for w in self._workers),
                              waited_seconds=round(time.monotonic() - t0, 3))
            if result.undelivered:
                failing = sorted({w.target.config.label for w in self._workers
                                  if w.failed or w.dropped or w.queue or w.busy})
                log.warning("notifications: %d event(s) not delivered (%d dropped from a full queue) to %s; "
                            "waited %.1fs of at most %.1fs", result.undelivered, result.dropped, ", ".join(failing),
                            result.waited_seconds, self.drain_seconds)
            return result
        except Exception as exc:  # noqa: BLE001
            log.debug("notifications: close failed: %s", secrets.scrub(str(exc)))
            return Delivery()
