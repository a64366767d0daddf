"""Cron decisions shared by scheduled kinds: what run is due, and when the next one is."""

from __future__ import annotations

import datetime as dt

from croniter import croniter


def due_scheduled_time(schedule: str, since: dt.datetime, now: dt.datetime
                       ) -> dt.datetime | None:
    """The latest scheduled time in (since, now], or None.

    Runs missed while the operator was down collapse into this one catch-up, not a burst.
    """
    first = croniter(schedule, since).get_next(dt.datetime)
    if first > now:
        return None
    latest: dt.datetime = croniter(schedule, now + dt.timedelta(seconds=1)).get_prev(
        dt.datetime)
    return latest


def next_scheduled_time(schedule: str, after: dt.datetime) -> dt.datetime:
    following: dt.datetime = croniter(schedule, after).get_next(dt.datetime)
    return following
