"""A tiny HTTP server on 127.0.0.1 for provider tests: answers come from a function of the request."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Stub:
    url: str
    requests: list[Request] = field(default_factory=list)


Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]]  # (status, body: str or JSON-able[, headers])


@contextlib.contextmanager
def serve(answer: Callable[[Request], Answer], *, tls: ssl.SSLContext | None = None) -> Iterator[Stub]:
    """Serve ``answer(request) -> (status, body[, headers])`` on 127.0.0.1 (an OS-picked port) in a
    thread; over TLS with the server context ``tls``."""
    stub = Stub(url="")

    class Handler(BaseHTTPRequestHandler):
        def _any(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(method, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                              {k: v for k, v in self.headers.items()}, self.rfile.read(length) if length else b"")
            stub.requests.append(request)
            status, body, *extra = answer(request)
            headers = {"Content-Type": "application/json" if not isinstance(body, str) else "text/plain",
                       **(extra[0] if extra else {})}
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._any("GET")

        def do_POST(self) -> None:
            self._any("POST")

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stub.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def hanging() -> Iterator[str]:
    """A loopback URL whose server accepts connections (the kernel's backlog) and never answers."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def free_port_url() -> str:
    """A loopback URL where nothing listens (bound then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
