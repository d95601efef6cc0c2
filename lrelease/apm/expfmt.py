"""A small parser for the Prometheus text exposition format (0.0.4; OpenMetrics' ``# EOF`` too).

    # HELP demoapp_http_requests_total HTTP requests served.
    # TYPE demoapp_http_requests_total counter
    demoapp_http_requests_total{path="/",code="200"} 1027
    demoapp_http_request_duration_seconds_bucket{path="/",le="0.005"} 1003 1712345678000

Each sample line is ``name[{labels}] value [timestamp]``. Label values are double-quoted with
``\\\\``, ``\\"`` and ``\\n`` escapes; values are floats or ``+Inf``/``-Inf``/``NaN``. Only what a
gate needs is kept: samples (name, labels, value) and declared types. A malformed line raises
:class:`ExpositionError` naming the line number.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


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
    types: dict[str, str]

    def named(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]

    def value(self, name: str) -> float | None:
        """The value of an unlabelled sample (e.g. ``process_start_time_seconds``)."""
        for sample in self.samples:
            if sample.name == name and not sample.labels:
                return sample.value
        return None


def parse(text: str) -> Exposition:
    samples: list[Sample] = []
    types: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            elif len(parts) == 3 and parts[1] == "TYPE":
                types[parts[2]] = "untyped"
            continue  # HELP, EOF and free comments
        samples.append(_sample(line, number))
    return Exposition(tuple(samples), types)


def _sample(line: str, number: int) -> Sample:
    match = _NAME_RE.match(line)
    if not match:
        raise ExpositionError(number, f"expected a metric name, got {line[:40]!r}")
    name, pos = match.group(0), match.end()
    labels: list[tuple[str, str]] = []
    if pos < len(line) and line[pos] == "{":
        pos = _labels(line, pos + 1, number, labels)
    rest = line[pos:].split()
    if not rest or len(rest) > 2:
        raise ExpositionError(number, f"expected a value (and an optional timestamp) after {name}")
    value = _float(rest[0], number)
    if len(rest) == 2:
        _float(rest[1], number)  # the timestamp must at least be a number; it is not used
    return Sample(name, tuple(sorted(labels)), value)


def _labels(line: str, pos: int, number: int, out: list[tuple[str, str]]) -> int:
    while True:
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        if pos < len(line) and line[pos] == "}":
            return pos + 1
        match = _LABEL_NAME_RE.match(line, pos)
        if not match:
            raise ExpositionError(number, f"expected a label name at column {pos + 1}")
        key, pos = match.group(0), match.end()
        pos = _skip_blanks(line, pos)
        if line[pos:pos + 1] != "=":
            raise ExpositionError(number, f'expected =" after label {key}')
        pos = _skip_blanks(line, pos + 1)
        if line[pos:pos + 1] != '"':
            raise ExpositionError(number, f'expected =" after label {key}')
        pos += 1
        chars: list[str] = []
        while True:
            if pos >= len(line):
                raise ExpositionError(number, f"label {key}: unterminated value")
            ch = line[pos]
            if ch == "\\":
                if pos + 1 >= len(line) or line[pos + 1] not in _ESCAPES:
                    raise ExpositionError(number, f"label {key}: bad escape")
                chars.append(_ESCAPES[line[pos + 1]])
                pos += 2
            elif ch == '"':
                pos += 1
                break
            else:
                chars.append(ch)
                pos += 1
        out.append((key, "".join(chars)))
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        if pos < len(line) and line[pos] == ",":
            pos += 1
        elif pos < len(line) and line[pos] == "}":
            return pos + 1
        else:
            raise ExpositionError(number, f"expected , or }} after label {key}")


def _skip_blanks(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    return pos


def _float(text: str, number: int) -> float:
    low = text.lower()
    if low in ("+inf", "inf"):
        return math.inf
    if low == "-inf":
        return -math.inf
    if low == "nan":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ExpositionError(number, f"not a number: {text[:40]!r}") from None
