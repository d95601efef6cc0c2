"""The APM providers' HTTP: bounded retries with backoff, Retry-After, proxies and CA bundles from
the environment, a provider's own ca_bundle; all against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time

import pytest

from lrelease.apm import ProviderError, make_provider
from lrelease.apm.transport import ATTEMPTS, RETRY_BUDGET, Unreachable
from lrelease.errors import ConfigError
from tests.unit.loopback import free_port_url, serve

VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "5"]}]}}
QUERY = "sum(up{instance=~\"{host_re}\"})"


def prometheus(url: str, **settings):
    return make_provider("prometheus", {"url": url, **settings}, where="test", env={"PROM_TOKEN": "tok-SECRET-42"})


def answers(*script):
    """Answer requests with ``script`` in turn (the last one repeats)."""
    seen: list = []

    def answer(request):
        seen.append(request)
        return script[min(len(seen), len(script)) - 1]

    return answer


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except ProviderError as exc:
        return exc, time.monotonic() - started


@pytest.fixture(autouse=True)
def no_proxy_from_the_caller(monkeypatch):
    """These tests talk to 127.0.0.1 directly unless a test sets a proxy itself."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                 "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


# -- retries -------------------------------------------------------------------------------
def test_a_429_with_retry_after_is_waited_for_then_succeeds():
    # Given a server that is rate limited once, asking for 1 s
    with serve(answers((429, {"errors": ["slow down"]}, {"Retry-After": "1"}), (200, VECTOR))) as stub:
        # When a query is made
        result, seconds = timed(lambda: prometheus(stub.url).query(QUERY, 0))
    # Then it succeeded on the second attempt, about 1 s later (the Retry-After, not the backoff)
    assert result == [({}, 5.0)] and len(stub.requests) == 2
    assert 1.0 <= seconds < 2.5


def test_503_three_times_then_200_succeeds():
    with serve(answers((503, "unavailable"), (503, "unavailable"), (503, "unavailable"), (200, VECTOR))) as stub:
        result, seconds = timed(lambda: prometheus(stub.url).query(QUERY, 0))
    assert result == [({}, 5.0)] and len(stub.requests) == 4
    assert seconds < RETRY_BUDGET


def test_503_forever_is_one_clear_error_within_the_bound():
    # Given a server that answers 503 forever, echoing the token it was sent
    with serve(lambda request: (503, f"down; you sent {request.headers.get('Authorization')}")) as stub:
        provider = prometheus(stub.url, bearer_token_env="PROM_TOKEN")
        # When a query is made
        error, seconds = timed(lambda: provider.query(QUERY, 0))
    # Then: one ProviderError, after ATTEMPTS attempts and well within the budget, on one line,
    # naming the status and the attempts, without the token
    assert isinstance(error, ProviderError) and len(stub.requests) == ATTEMPTS
    assert seconds < RETRY_BUDGET
    message = str(error)
    assert "HTTP 503" in message and f"after {ATTEMPTS} attempts in" in message
    assert "\n" not in message and "tok-SECRET-42" not in message


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500])
def test_an_answer_that_retrying_cannot_change_is_not_retried(status):
    # Given a server refusing the credentials (or the query)
    with serve(lambda request: (status, {"status": "error", "errorType": "auth", "error": "no"})) as stub:
        error, seconds = timed(lambda: prometheus(stub.url).query(QUERY, 0))
    # Then one request only, and the error at once
    assert isinstance(error, ProviderError) and f"HTTP {status}" in str(error)
    assert len(stub.requests) == 1 and "attempts" not in str(error)


def test_a_retry_after_beyond_the_budget_is_not_waited_for():
    # Given a rate limit that asks for ten minutes
    with serve(answers((429, {"errors": ["quota"]}, {"Retry-After": "600"}), (200, VECTOR))) as stub:
        error, seconds = timed(lambda: prometheus(stub.url).query(QUERY, 0))
    # Then the gate is not held: the 429 is the answer, at once
    assert isinstance(error, ProviderError) and "HTTP 429" in str(error)
    assert len(stub.requests) == 1 and seconds < 1.0


def test_a_provider_that_does_not_answer_is_unreachable_after_the_retries():
    error, seconds = timed(lambda: prometheus(free_port_url()).query(QUERY, 0))
    assert isinstance(error, Unreachable) and "cannot reach http://127.0.0.1" in str(error)
    assert f"after {ATTEMPTS} attempts" in str(error) and seconds < RETRY_BUDGET


def test_a_hosts_own_metrics_page_is_not_retried():
    # Given an app whose /metrics answers 503 (scrape reads the hosts themselves)
    from lrelease.apm import HostRef, Window

    with serve(lambda request: (503, "starting")) as stub:
        provider = make_provider("scrape", {}, where="test", env={})
        got = provider.fetch([HostRef("node1", url=stub.url)], Window(0, time.time()))["node1"]
    # Then that answer is the reading (no data, with the status), read once
    assert got.no_data and "HTTP 503" in got.detail and len(stub.requests) == 1


# -- the environment: proxies, no .netrc ----------------------------------------------------
def test_http_proxy_from_the_environment_is_used(monkeypatch):
    # Given a proxy on loopback (it answers itself, as a caching proxy may) named in HTTP_PROXY
    with serve(lambda request: (200, VECTOR)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        # When a provider queries a server that only the proxy can reach (a name that never resolves)
        result = prometheus("http://prometheus.invalid:9090").query(QUERY, 0)
    # Then the request went through the proxy, for that server
    assert result == [({}, 5.0)]
    assert [(r.path, r.headers.get("Host")) for r in proxy.requests] == [("/api/v1/query", "prometheus.invalid:9090")]


def test_no_proxy_from_the_environment_is_honoured(monkeypatch):
    with serve(lambda request: (200, VECTOR)) as server:
        monkeypatch.setenv("HTTP_PROXY", free_port_url())  # a proxy that is not there
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert prometheus(server.url).query(QUERY, 0) == [({}, 5.0)]
    assert len(server.requests) == 1


def test_credentials_in_netrc_are_never_sent(monkeypatch, tmp_path):
    # Given a ~/.netrc with a login for the server
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    with serve(lambda request: (200, VECTOR)) as server:
        prometheus(server.url).query(QUERY, 0)
    # Then no Authorization header was sent (lrelease sends only credentials it can scrub)
    assert "Authorization" not in server.requests[0].headers


# -- TLS: the system's CAs, or the provider's ca_bundle -------------------------------------
@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (cert.pem, which is its own CA) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lrelease test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return folder / "cert.pem", context


def test_a_server_whose_ca_is_not_trusted_fails_in_one_line_naming_ca_bundle(self_signed):
    _, context = self_signed
    with serve(lambda request: (200, VECTOR), tls=context) as server:
        error, seconds = timed(lambda: prometheus(server.url).query(QUERY, 0))
    assert isinstance(error, Unreachable) and server.url.startswith("https://127.0.0.1:")
    assert "TLS certificate not trusted" in str(error) and "ca_bundle" in str(error)
    assert "\n" not in str(error) and seconds < 2.0  # a certificate is not retried


def test_the_providers_ca_bundle_is_trusted(self_signed):
    cert, context = self_signed
    with serve(lambda request: (200, VECTOR), tls=context) as server:
        assert prometheus(server.url, ca_bundle=str(cert)).query(QUERY, 0) == [({}, 5.0)]
    assert len(server.requests) == 1


def test_requests_ca_bundle_from_the_environment_is_trusted(self_signed, monkeypatch):
    cert, context = self_signed
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    with serve(lambda request: (200, VECTOR), tls=context) as server:
        assert prometheus(server.url).query(QUERY, 0) == [({}, 5.0)]


@pytest.mark.parametrize("kind", ["scrape", "prometheus", "datadog", "newrelic"])
def test_a_ca_bundle_that_is_not_a_file_is_a_config_error_naming_the_key(kind, tmp_path):
    base = {"scrape": {}, "prometheus": {"url": "https://p:9090"},
            "datadog": {"requests_query": "a{host:{host}}", "errors_query": "b{host:{host}}", "latency_queries": None},
            "newrelic": {"account_id": 1}}[kind]
    env = {"DD_API_KEY": "k", "DD_APP_KEY": "a", "NEW_RELIC_API_KEY": "n"}
    with pytest.raises(ConfigError) as err:
        make_provider(kind, {**base, "ca_bundle": str(tmp_path / "missing.pem")}, where="lrelease.yml: gate", env=env)
    assert err.value.key == "ca_bundle" and "PEM file" in str(err.value) and "\n" not in str(err.value)


def test_a_query_with_its_retries_ends_before_the_gate_looks_again():
    # Given the slowest vendor query (its timeout, once the retry budget is spent) and the looks
    # of the default gate and of the sandbox's (every 20 s)
    from lrelease.apm.datadog import DatadogSettings
    from lrelease.apm.newrelic import NewRelicSettings
    from lrelease.apm.prometheus import PrometheusSettings
    from lrelease.gate.judge_config import JudgeConfig

    worst = {name: RETRY_BUDGET + timeout for name, timeout in (
        ("prometheus", PrometheusSettings(url="x").timeout), ("datadog", DatadogSettings(base_url="x").timeout),
        ("newrelic", NewRelicSettings(account_id=1).timeout))}
    # Then each ends before the next look
    assert all(seconds < JudgeConfig().interval_seconds for seconds in worst.values())
    assert worst["prometheus"] < 20  # the sandbox's gate reads Prometheus, looking every 20 s
