"""The US equity market's regular sessions: weekdays 09:30-16:00 America/New_York.

Exchange holidays and early closes are not modelled; the paper broker documents this.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["NEW_YORK", "is_open", "next_open"]

NEW_YORK = ZoneInfo("America/New_York")
OPEN = time(9, 30)
CLOSE = time(16, 0)
SATURDAY = 5


def is_open(at: datetime) -> bool:
    """Whether a regular session is in progress at ``at`` (an aware datetime)."""
    local = at.astimezone(NEW_YORK)
    return local.weekday() < SATURDAY and OPEN <= local.time() < CLOSE


def next_open(at: datetime) -> datetime:
    """The start of the next regular session at or after ``at`` (``at`` itself if open)."""
    if is_open(at):
        return at
    local = at.astimezone(NEW_YORK)
    day = local.date()
    if local.time() >= OPEN:
        day += timedelta(days=1)
    while day.weekday() >= SATURDAY:
        day += timedelta(days=1)
    return datetime.combine(day, OPEN, tzinfo=NEW_YORK)
