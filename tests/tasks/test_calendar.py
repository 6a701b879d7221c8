"""Tests of ``tasks.brokers.calendar``: regular sessions, weekends and DST in New York."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasks.brokers.calendar import NEW_YORK, is_open, next_open


def ny(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in New York."""
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


# 2026-01-05 is a Monday; 2026-01-09 a Friday.
@pytest.mark.parametrize(
    ("at", "open_"),
    [
        (ny(2026, 1, 5, 9, 29), False),
        (ny(2026, 1, 5, 9, 30), True),
        (ny(2026, 1, 5, 12, 0), True),
        (ny(2026, 1, 5, 15, 59), True),
        (ny(2026, 1, 5, 16, 0), False),
        (ny(2026, 1, 5, 23, 0), False),
        (ny(2026, 1, 9, 10, 0), True),
        (ny(2026, 1, 10, 11, 0), False),  # Saturday
        (ny(2026, 1, 11, 11, 0), False),  # Sunday
    ],
)
def test_is_open_during_weekday_hours_only(at: datetime, open_: bool) -> None:
    """Weekdays 09:30 (inclusive) to 16:00 (exclusive) New York time are open."""
    assert is_open(at) is open_


def test_is_open_reads_any_zone() -> None:
    """An instant given in UTC is judged by New York wall time."""
    assert is_open(datetime(2026, 1, 5, 14, 30, tzinfo=UTC)) is True  # 09:30 EST
    assert is_open(datetime(2026, 1, 5, 14, 29, tzinfo=UTC)) is False
    assert is_open(datetime(2026, 7, 6, 13, 30, tzinfo=UTC)) is True  # 09:30 EDT


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (ny(2026, 1, 5, 7, 0), ny(2026, 1, 5, 9, 30)),  # before open: same day
        (ny(2026, 1, 5, 0, 0), ny(2026, 1, 5, 9, 30)),  # midnight
        (ny(2026, 1, 5, 16, 0), ny(2026, 1, 6, 9, 30)),  # at close: next day
        (ny(2026, 1, 5, 20, 0), ny(2026, 1, 6, 9, 30)),  # after close
        (ny(2026, 1, 9, 16, 30), ny(2026, 1, 12, 9, 30)),  # Friday evening: Monday
        (ny(2026, 1, 10, 9, 0), ny(2026, 1, 12, 9, 30)),  # Saturday morning
        (ny(2026, 1, 11, 23, 59), ny(2026, 1, 12, 9, 30)),  # Sunday night
    ],
)
def test_next_open_when_closed(at: datetime, expected: datetime) -> None:
    """A closed instant's next open is the next weekday's 09:30 New York."""
    assert next_open(at) == expected


def test_next_open_when_open_is_now() -> None:
    """During a session the next open is the instant itself."""
    now = ny(2026, 1, 7, 11, 15)
    assert next_open(now) == now


def test_next_open_across_spring_forward() -> None:
    """Friday evening before the March change opens Monday 09:30 EDT (13:30 UTC)."""
    opens = next_open(ny(2026, 3, 6, 17, 0))  # DST starts Sunday 2026-03-08
    assert opens == ny(2026, 3, 9, 9, 30)
    assert opens.astimezone(UTC) == datetime(2026, 3, 9, 13, 30, tzinfo=UTC)


def test_next_open_across_fall_back() -> None:
    """Friday evening before the November change opens Monday 09:30 EST (14:30 UTC)."""
    opens = next_open(ny(2026, 10, 30, 17, 0))  # DST ends Sunday 2026-11-01
    assert opens == ny(2026, 11, 2, 9, 30)
    assert opens.astimezone(UTC) == datetime(2026, 11, 2, 14, 30, tzinfo=UTC)


def test_is_open_from_utc_around_the_march_change() -> None:
    """14:00 UTC is closed the Friday before the change (09:00 EST), open after (10:00 EDT)."""
    assert is_open(datetime(2026, 3, 6, 14, 0, tzinfo=UTC)) is False
    assert is_open(datetime(2026, 3, 9, 14, 0, tzinfo=UTC)) is True


_instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=400, deadline=None)
@given(at=_instants)
@example(at=datetime(2026, 3, 8, 7, 0, tzinfo=UTC))  # the spring-forward hour (02:00 EST)
@example(at=datetime(2026, 11, 1, 6, 30, tzinfo=UTC))  # the repeated fall-back hour
@example(at=datetime(2026, 3, 6, 21, 0, tzinfo=UTC))  # Friday close before spring forward
@example(at=datetime(2026, 10, 30, 20, 0, tzinfo=UTC))  # Friday close before fall back
def test_next_open_properties(at: datetime) -> None:
    """next_open(t) >= t, is open, is 09:30 on a weekday when t is closed, and none is skipped."""
    opens = next_open(at)
    assert opens >= at
    assert is_open(opens)
    assert opens - at < timedelta(days=3, hours=10)
    if is_open(at):
        assert opens == at
        return
    local = opens.astimezone(NEW_YORK)
    assert local.weekday() < 5
    assert local.time() == time(9, 30)
    just_before = opens - timedelta(minutes=1)
    if just_before >= at:
        assert not is_open(just_before)
