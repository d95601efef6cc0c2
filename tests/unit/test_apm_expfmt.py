"""The Prometheus text-format parser, on recorded demo-app pages and hand-written edge cases."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lrelease.apm.expfmt import ExpositionError, parse

FIXTURES = Path(__file__).parent / "fixtures" / "apm" / "scrape"


def test_a_recorded_demoapp_page_parses_into_samples_and_types():
    # Given the demo app's /metrics page as recorded
    text = (FIXTURES / "demoapp_t1.txt").read_text()
    # When it is parsed
    page = parse(text)
    # Then counters, histogram buckets and the start time are all there, with their types
    requests = {s.labels: s.value for s in page.named("demoapp_http_requests_total")}
    assert requests[(("code", "200"), ("path", "/"))] == 1000
    assert requests[(("code", "500"), ("path", "/"))] == 12
    assert page.types["demoapp_http_request_duration_seconds"] == "histogram"
    inf = [s for s in page.named("demoapp_http_request_duration_seconds_bucket")
           if s.label("le") == "+Inf" and s.label("path") == "/"]
    assert inf[0].value == 1012
    assert page.value("process_start_time_seconds") == 1712340000.25


@pytest.mark.parametrize(("line", "name", "labels", "value"), [
    ("up 1", "up", (), 1.0),
    ("x_total{a=\"1\"} 2.5e3", "x_total", (("a", "1"),), 2500.0),
    ("x{ b = \"2\" , a=\"1\" ,} 3", "x", (("a", "1"), ("b", "2")), 3.0),  # spaces, trailing comma
    ("x{path=\"/a\\\"b\\\\c\\nd\"} 4", "x", (("path", "/a\"b\\c\nd"),), 4.0),  # escapes
    ("x{le=\"+Inf\"} +Inf", "x", (("le", "+Inf"),), math.inf),
    ("x -Inf", "x", (), -math.inf),
    ("x 7 1712345678000", "x", (), 7.0),  # with a timestamp
    ("ns:rule:rate5m{job=\"a\"} 0.5", "ns:rule:rate5m", (("job", "a"),), 0.5),
    ("x{}  8", "x", (), 8.0),
])
def test_sample_lines(line, name, labels, value):
    sample = parse(line).samples[0]
    assert (sample.name, sample.labels, sample.value) == (name, labels, value)


def test_nan_values_parse_as_nan():
    assert math.isnan(parse("x NaN").samples[0].value)


def test_comments_help_and_eof_are_skipped():
    page = parse("# HELP x a thing\n# TYPE x gauge\n# free comment\n\nx 1\n# EOF\n")
    assert [s.name for s in page.samples] == ["x"] and page.types == {"x": "gauge"}


# prometheus_client's text parser is laxer than Prometheus' own in two places the old
# hand-written parser refused: an unknown escape (``\\q``) is kept as written, and extra numbers
# after the value are read as a timestamp. Neither changes a value a gate reads.
@pytest.mark.parametrize(("text", "number", "shown"), [
    ('{a="1"} 1', 1, "{a="),  # no metric name
    ("x{a=1} 1", 1, "Invalid labels"),  # unquoted label value
    ('x{a="1} 1', 1, "x{a="),  # unterminated label value
    ('x{a="1" b="2"} 1', 1, "Invalid labels"),  # no comma between labels
    ("x", 1, "'x'"),  # no value
    ("x one", 1, "'one'"),  # not a number
    ('ok 1\n\n# a comment\nx{9="1"} 1', 4, "9="),  # a label name cannot start with a digit
    ("# TYPE x", 1, "# TYPE x"),  # a TYPE without a type
])
def test_malformed_text_is_one_line_naming_the_line_and_what_was_expected(text, number, shown):
    # Given a page with one malformed line
    # When it is parsed
    with pytest.raises(ExpositionError) as err:
        parse(text)
    # Then the error is one line: the line number, what was found there, what was expected
    message = str(err.value)
    assert err.value.line_number == number and message.startswith(f"line {number}: ")
    assert shown in message and "expected name{" in message and "\n" not in message


# -- Prometheus 3: quoted UTF-8 names (OpenTelemetry's dotted names, unescaped) --------------------
UTF8_PAGE = """\
# HELP "http.server.request.duration" Duration of HTTP server requests.
# TYPE "http.server.request.duration" histogram
{"http.server.request.duration_bucket", "http.response.status_code"="200", le="0.1"} 4
{"http.server.request.duration_bucket", "http.response.status_code"="200", le="+Inf"} 5
{"http.server.request.duration_count", "http.response.status_code"="200"} 5
{"http.server.request.duration_count", "http.response.status_code"="500"} 2
{"http.server.request.duration_sum", "http.response.status_code"="200"} 0.61
process_start_time_seconds 1712340000
"""


def test_quoted_utf8_metric_and_label_names_parse():
    # Given a Prometheus 3 page with dotted names in quotes
    # When it is parsed
    page = parse(UTF8_PAGE)
    # Then names and labels come out unquoted, dots and all
    counts = {s.label("http.response.status_code"): s.value for s in page.named("http.server.request.duration_count")}
    assert counts == {"200": 5.0, "500": 2.0}
    assert page.types["http.server.request.duration"] == "histogram"
    assert page.value("process_start_time_seconds") == 1712340000


def test_a_scrape_with_utf8_names_counts_requests_errors_and_latency():
    # Given a scrape configured with the OpenTelemetry names as Prometheus 3 exposes them unescaped
    from lrelease.apm.scrape import ScrapeSettings, increase, reading_from, summarize

    settings = ScrapeSettings(requests_metric="http.server.request.duration_count",
                              latency_metric="http.server.request.duration",
                              code_label="http.response.status_code")
    empty = reading_from(parse("process_start_time_seconds 1712340000\n"), settings, 0.0)
    # When a window is summarized from zero to this page
    metrics = summarize("node1", increase(empty, reading_from(parse(UTF8_PAGE), settings, 60.0)), settings, 60.0)
    # Then requests, errors and the latency histogram are all read
    assert (metrics.no_data, metrics.requests, metrics.errors, metrics.latency.count) == (False, 7.0, 2.0, 5.0)


def test_a_counter_keeps_the_name_it_is_exposed_under():
    # Given counters declared with and without the _total suffix (both valid text format)
    page = parse("# TYPE requests counter\nrequests 3\n# TYPE hits_total counter\nhits_total 4\n")
    # Then each sample keeps its own name (no _total added, none removed)
    assert [(s.name, s.value) for s in page.samples] == [("requests", 3.0), ("hits_total", 4.0)]
    assert page.types == {"requests": "counter", "hits": "counter"}


# -- OpenMetrics -----------------------------------------------------------------------------
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OM_PAGE = """\
# TYPE demoapp_http_requests counter
# HELP demoapp_http_requests HTTP requests served.
demoapp_http_requests_total{path="/",code="200"} 1027 # {trace_id="4bf92f3577b34da6"} 1 1712345678.5
demoapp_http_requests_total{path="/",code="500"} 12
# TYPE demoapp_http_request_duration_seconds histogram
demoapp_http_request_duration_seconds_bucket{path="/",le="0.1"} 1000 # {trace_id="abc"} 0.05 1.7e9
demoapp_http_request_duration_seconds_bucket{path="/",le="+Inf"} 1039
demoapp_http_request_duration_seconds_count{path="/"} 1039
demoapp_http_request_duration_seconds_sum{path="/"} 41.5
# EOF
"""


def test_openmetrics_with_exemplars_and_eof_parses_by_its_content_type():
    # Given an OpenMetrics page with exemplars on a counter and a bucket, ending in # EOF
    # When it is parsed as the Content-Type says
    page = parse(OM_PAGE, OPENMETRICS)
    # Then the samples carry their values (the exemplars are read past, not taken for values)
    requests = {s.label("code"): s.value for s in page.named("demoapp_http_requests_total")}
    assert requests == {"200": 1027.0, "500": 12.0}
    buckets = {s.label("le"): s.value for s in page.named("demoapp_http_request_duration_seconds_bucket")}
    assert buckets == {"0.1": 1000.0, "+Inf": 1039.0}
    assert page.types == {"demoapp_http_requests": "counter", "demoapp_http_request_duration_seconds": "histogram"}


@pytest.mark.parametrize(("text", "number", "problem"), [
    (OM_PAGE.replace("# EOF\n", ""), 9, "EOF"),  # OpenMetrics must end with # EOF
    (OM_PAGE + "late 1\n", 11, "after # EOF"),  # nothing after it
    (OM_PAGE.replace('code="500"} 12', 'code="500"} twelve'), 4, "twelve"),
])
def test_malformed_openmetrics_is_one_line_naming_the_line(text, number, problem):
    with pytest.raises(ExpositionError) as err:
        parse(text, OPENMETRICS)
    assert err.value.line_number == number and problem in str(err.value)
    assert "OpenMetrics ends with # EOF" in str(err.value) and "\n" not in str(err.value)


def test_the_text_format_is_the_default_content_type():
    # Given a text-format page without # EOF, served as text/plain or with no type at all
    for content_type in ("text/plain; version=0.0.4; charset=utf-8", ""):
        # Then it is read as the text format (OpenMetrics would refuse it for the missing # EOF)
        assert parse("x 1\n", content_type).value("x") == 1.0


def test_only_newline_ends_a_line_of_the_text_format():
    # Given a label value holding a Unicode line separator (valid UTF-8 in a label value)
    page = parse('x{path="/a\u2028b"} 1\ny 2\r\n')
    # Then it stays inside its sample; \r\n line ends are read too
    assert [(s.name, s.labels, s.value) for s in page.samples] == [("x", (("path", "/a\u2028b"),), 1.0), ("y", (), 2.0)]
