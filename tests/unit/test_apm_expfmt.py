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


@pytest.mark.parametrize(("text", "problem"), [
    ("{a=\"1\"} 1", "expected a metric name"),
    ("x{a=1} 1", "expected =\""),
    ("x{a=\"1} 1", "unterminated"),
    ("x{a=\"\\q\"} 1", "bad escape"),
    ("x{a=\"1\" b=\"2\"} 1", "expected , or }"),
    ("x", "expected a value"),
    ("x one", "not a number"),
    ("x 1 2 3", "expected a value"),
    ("ok 1\nx{9=\"1\"} 1", "line 2"),
])
def test_malformed_lines_are_refused_with_the_line_number(text, problem):
    with pytest.raises(ExpositionError) as err:
        parse(text)
    assert problem in str(err.value)
