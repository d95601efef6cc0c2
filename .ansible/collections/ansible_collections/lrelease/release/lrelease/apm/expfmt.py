"""Prometheus' exposition formats, read with prometheus_client's parsers.

    # HELP demoapp_http_requests_total HTTP requests served.
    # TYPE demoapp_http_requests_total counter
    demoapp_http_requests_total{path="/",code="200"} 1027
    {"http.server.request.duration_count", "http.response.status_code"="200"} 5

Two formats, told apart by the answer's ``Content-Type``:

- the text format (``text/plain; version=0.0.4``, or no type at all), Prometheus 3's quoted
  UTF-8 metric and label names included: read by ``prometheus_client.parser``, one line at a
  time, so that an error names its line and every sample keeps the name it was exposed under
  (grouped into families, the library renames a counter ``x`` declared without ``_total`` to
  ``x_total``);
- OpenMetrics (``application/openmetrics-text``), exemplars (``... # {trace_id="abc"} 0.5``)
  and the closing ``# EOF`` included: read whole by ``prometheus_client.openmetrics.parser``,
  which also checks what OpenMetrics requires across lines (``# EOF`` last, counters' ``_total``).

Only what a gate needs is kept: samples (name, labels, value) and declared types. A malformed
page raises :class:`ExpositionError`, one line naming the line number, what was found and what
was expected.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families

OPENMETRICS = "application/openmetrics-text"
TEXT = "text/plain"
# What a scrape asks for: the text format first (what most exporters serve, and what the default
# metric names assume), OpenMetrics when that is all the app speaks. Underscore-escaped names are
# the text format's default; an app that only serves UTF-8 names still parses.
ACCEPT = f"{TEXT};version=0.0.4;q=1.0,{OPENMETRICS};version=1.0.0;q=0.5,*/*;q=0.1"
_EXPECTED = 'expected name{label="value",...} value [timestamp], or a # comment'


class ExpositionError(ValueError):
    """The text is not valid exposition format."""

    def __init__(self, line_number: int, problem: str) -> None:
        self.line_number = line_number
        super().__init__(f"line {line_number}: {problem}")


Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs: hashable, order-free


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float

    def label(self, name: str, default: str = "") -> str:
        for key, value in self.labels:
            if key == name:
                return value
        return default


@dataclass(frozen=True)
class Exposition:
    samples: tuple[Sample, ...]
    types: dict[str, str]  # family name (a counter's without _total, as OpenMetrics names it) -> type

    def named(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]

    def value(self, name: str) -> float | None:
        """The value of an unlabelled sample (e.g. ``process_start_time_seconds``)."""
        for sample in self.samples:
            if sample.name == name and not sample.labels:
                return sample.value
        return None


def is_openmetrics(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == OPENMETRICS


def parse(text: str, content_type: str = "") -> Exposition:
    """A /metrics page in the format its ``Content-Type`` names (the text format by default)."""
    if is_openmetrics(content_type):
        return _parse_openmetrics(text)
    return _parse_text(text)


def _parse_text(text: str) -> Exposition:
    samples: list[Sample] = []
    types: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), start=1):  # not splitlines: \u2028 may be in a label
        line = raw.strip()
        if not line:
            continue
        try:
            families = list(text_string_to_metric_families(line))
        except ValueError as exc:
            raise _error(number, line, exc) from None
        for family in families:
            if not line.startswith("#"):
                samples.extend(_sample(s) for s in family.samples)
            elif line.split(None, 2)[1:2] == ["TYPE"]:
                types[family.name] = family.type
    return Exposition(tuple(samples), types)


def _parse_openmetrics(text: str) -> Exposition:
    lines = _Lines(text)
    samples: list[Sample] = []
    types: dict[str, str] = {}
    try:
        for family in openmetrics_parser.text_fd_to_metric_families(lines):
            types[family.name] = family.type
            samples.extend(_sample(s) for s in family.samples)
    except ValueError as exc:
        raise _error(lines.number, lines.current, exc, openmetrics=True, at_end=lines.done) from None
    return Exposition(tuple(samples), types)


class _Lines:
    """The page's lines for a parser that reads a file, remembering which one it is on."""

    def __init__(self, text: str) -> None:
        self._file = io.StringIO(text)
        self.number, self.current, self.done = 0, "", False

    def __iter__(self) -> Iterator[str]:
        for line in self._file:
            self.number, self.current = self.number + 1, line.strip()
            yield line
        self.done = True


def _sample(sample) -> Sample:  # a prometheus_client.samples.Sample; its exemplar is not needed
    return Sample(sample.name, tuple(sorted(sample.labels.items())), float(sample.value))


def _error(number: int, line: str, exc: ValueError, *, openmetrics: bool = False,
           at_end: bool = False) -> ExpositionError:
    shown = line if len(line) <= 60 else line[:57] + "..."
    problem = str(exc) or "not a sample or a comment"
    where = f"after the last line {shown!r}" if at_end else f"in {shown!r}"
    expected = _EXPECTED + ("; OpenMetrics ends with # EOF" if openmetrics else "")
    return ExpositionError(number, f"{problem} {where}; {expected}")
