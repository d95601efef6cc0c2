"""Deploy windows (lrelease/window.py): rules and freeze dates parsed, and whether a window is open
at a given moment, when it closes and when it next opens: across midnight, across the week's end,
on freeze dates, and on the nights daylight saving time starts and ends (Europe/Amsterdam)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from lrelease.window import Window, parse_freeze, parse_rule, parse_window, parse_zone

NIGHTS = parse_window("Europe/Amsterdam", ["Sun-Thu 22:00-06:00"], ["2026-12-24..2026-12-26"])


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


# -- parsing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, days, start, minutes", [
    ("Sun-Thu 22:00-06:00", {6, 0, 1, 2, 3}, 22 * 60, 8 * 60),  # crosses midnight
    ("Mon-Fri 09:00-17:30", {0, 1, 2, 3, 4}, 9 * 60, 8 * 60 + 30),
    ("Fri-Mon 20:00-24:00", {4, 5, 6, 0}, 20 * 60, 4 * 60),  # a range over the week's end; 24:00
    ("Mon,Wed 1:00-2:00", {0, 2}, 60, 60),
    ("daily 00:00-24:00", set(range(7)), 0, 1440),
    ("sat 23:00-23:00", {5}, 23 * 60, 1440),  # the same time: a whole day from then
])
def test_a_rule_reads_its_days_its_start_and_how_long_it_stays_open(text, days, start, minutes):
    rule = parse_rule(text)
    assert (set(rule.days), rule.start, rule.minutes) == (days, start, minutes)


@pytest.mark.parametrize("bad", ["Sun-Thu", "Someday 22:00-06:00", "Mon 25:00-06:00", "Mon 22:60-06:00",
                                 "Mon 24:00-06:00", "Mon-Tue-Wed 22:00-06:00", "22:00-06:00", 7, None])
def test_a_bad_rule_says_what_is_expected(bad):
    with pytest.raises(ValueError, match=r'a rule such as "Sun-Thu 22:00-06:00"'):
        parse_rule(bad)


def test_freeze_dates_and_zones_are_checked():
    assert parse_freeze("2026-12-24..2026-12-26") == (date(2026, 12, 24), date(2026, 12, 26))
    assert parse_freeze("2026-12-31") == (date(2026, 12, 31), date(2026, 12, 31))
    for bad in ("2026-12-26..2026-12-24", "2026-13-01", "24/12/2026", "2026-12-24..", 20261224):
        with pytest.raises(ValueError, match="a date or an inclusive range"):
            parse_freeze(bad)
    assert parse_zone("Europe/Amsterdam") == "Europe/Amsterdam"
    for bad in ("Mars/Olympus_Mons", "", "../etc/passwd", 1):
        with pytest.raises(ValueError, match="an IANA time zone name"):
            parse_zone(bad)


# -- open or closed -----------------------------------------------------------------------------
@pytest.mark.parametrize("now, is_open, closes, opens", [
    # Monday 30 November 2026, 14:00 in Amsterdam (CET, UTC+1): closed until 22:00 local
    ("2026-11-30T13:00", False, None, "2026-11-30T21:00"),
    # Monday 22:00 local exactly: open, until Tuesday 06:00 local (across midnight)
    ("2026-11-30T21:00", True, "2026-12-01T05:00", "2026-11-30T21:00"),
    # Tuesday 05:59 local: still Monday night's window
    ("2026-12-01T04:59", True, "2026-12-01T05:00", "2026-12-01T04:59"),
    # Tuesday 06:00 local: closed; next Tuesday 22:00
    ("2026-12-01T05:00", False, None, "2026-12-01T21:00"),
    # Thursday night runs into Friday 06:00; Friday and Saturday nights are closed: next is Sunday 22:00
    ("2026-12-04T04:00", True, "2026-12-04T05:00", "2026-12-04T04:00"),
    ("2026-12-04T21:30", False, None, "2026-12-06T21:00"),
    # Wednesday 23 December 22:00 local: the night runs into the freeze (24th..26th): it closes at midnight
    ("2026-12-23T21:30", True, "2026-12-23T23:00", "2026-12-23T21:30"),
    # In the freeze: next open is Sunday 27th 22:00 local (the 26th is frozen all day, a Saturday anyway)
    ("2026-12-24T12:00", False, None, "2026-12-27T21:00"),
])
def test_a_night_window_across_midnight_the_weekend_and_a_freeze(now, is_open, closes, opens):
    moment = utc(now)
    assert NIGHTS.is_open(moment) is is_open
    assert NIGHTS.closes_at(moment) == (utc(closes) if closes else None)
    assert NIGHTS.next_open(moment) == utc(opens)


def test_local_times_follow_daylight_saving_time():
    # Given Sun-Thu 22:00-06:00 in Amsterdam: in summer (CEST, UTC+2) 22:00 local is 20:00 UTC
    summer = utc("2026-07-06T12:00")  # a Monday
    assert NIGHTS.next_open(summer) == utc("2026-07-06T20:00")
    assert NIGHTS.closes_at(utc("2026-07-06T20:00")) == utc("2026-07-07T04:00")
    # When DST ends (Sunday 25 October 2026, 03:00 CEST -> 02:00 CET): that Sunday night opens at
    # 22:00 CET, 21:00 UTC (seen from Saturday, whose night is closed)
    assert NIGHTS.next_open(utc("2026-10-24T12:00")) == utc("2026-10-25T21:00")
    # When DST starts (Sunday 29 March 2026, 02:00 CET -> 03:00 CEST): Sunday night is 22:00 CEST
    # (20:00 UTC) and closes Monday 06:00 CEST (04:00 UTC): an hour earlier in UTC than in winter
    assert NIGHTS.next_open(utc("2026-03-29T12:00")) == utc("2026-03-29T20:00")
    assert NIGHTS.closes_at(utc("2026-03-29T20:00")) == utc("2026-03-30T04:00")


def test_a_night_that_spans_the_clock_change_lasts_its_wall_clock_hours():
    # Given a window Sat 22:00-06:00 in Amsterdam: the night DST ends is 9 hours long, the night it starts 7
    window = parse_window("Europe/Amsterdam", ["Sat 22:00-06:00"])
    autumn = utc("2026-10-24T20:00")  # Saturday 22:00 CEST
    assert window.is_open(autumn) and window.closes_at(autumn) == utc("2026-10-25T05:00")  # 06:00 CET
    assert (window.closes_at(autumn) - autumn).total_seconds() == 9 * 3600
    spring = utc("2026-03-28T21:00")  # Saturday 22:00 CET
    assert window.is_open(spring) and (window.closes_at(spring) - spring).total_seconds() == 7 * 3600
    # A boundary inside the skipped hour (02:30 on 29 March) moves on by that hour: 03:30 CEST
    gap = parse_window("Europe/Amsterdam", ["Sun 02:30-04:00"])
    assert gap.next_open(utc("2026-03-28T12:00")) == utc("2026-03-29T01:30")


def test_adjacent_rules_make_one_window_and_no_rules_is_always_open_but_freezes():
    # Given two rules that meet at midnight: one window from Monday 20:00 to Tuesday 04:00
    window = parse_window("UTC", ["Mon 20:00-24:00", "Tue 00:00-04:00"])
    assert window.closes_at(utc("2026-11-30T21:00")) == utc("2026-12-01T04:00")
    # Given no weekly rules: open every hour, except on a freeze date (whole local days)
    always = parse_window("Europe/Amsterdam", [], ["2026-12-31"])
    assert always.is_open(utc("2026-12-30T22:59"))
    assert not always.is_open(utc("2026-12-30T23:00"))  # 00:00 local on the 31st
    assert always.next_open(utc("2026-12-31T12:00")) == utc("2026-12-31T23:00")  # 00:00 local on 1 January


def test_a_window_that_never_opens_within_the_horizon_has_no_next_opening():
    frozen = Window("UTC", (parse_rule("daily 00:00-24:00"),), ((date(2026, 1, 1), date(2028, 1, 1)),))
    assert frozen.next_open(utc("2026-06-01T00:00")) is None
    assert not frozen.is_open(utc("2026-06-01T00:00"))


def test_describe_and_local_time_are_what_a_refusal_shows():
    assert NIGHTS.describe() == "Sun-Thu 22:00-06:00 (Europe/Amsterdam), freeze 2026-12-24..2026-12-26"
    assert NIGHTS.local(utc("2026-11-30T21:00")) == "Mon 2026-11-30 22:00 Europe/Amsterdam"
    assert NIGHTS.to_dict() == {"timezone": "Europe/Amsterdam", "weekly": ["Sun-Thu 22:00-06:00"],
                                "freeze": ["2026-12-24..2026-12-26"]}
