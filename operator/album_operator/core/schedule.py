"""Cron decisions shared by scheduled kinds: what run is due, and when the next one is."""

from __future__ import annotations

import datetime as dt

from croniter import CroniterBadCronError, CroniterBadDateError, croniter


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


def schedule_problem(schedule: str, now: dt.datetime) -> str | None:
    """Why a cron expression can never run (None when it can). The CRD's pattern checks
    each field's range; names and impossible dates (31 February) are caught here."""
    if not croniter.is_valid(schedule):
        return f"schedule {schedule!r} is not a valid cron expression"
    try:
        croniter(schedule, now).get_next(dt.datetime)
    except (CroniterBadDateError, CroniterBadCronError):
        return f"schedule {schedule!r} never matches a date"
    return None


def first_slot_since(schedule: str, last_run: dt.datetime | None, schedule_seen: dt.datetime,
                     now: dt.datetime) -> dt.datetime | None:
    """The slot due now, counting only slots after the last run and after the schedule was
    first seen: adding a schedule never runs a slot that passed before it existed."""
    since = max(last_run, schedule_seen) if last_run else schedule_seen
    return due_scheduled_time(schedule, since, now)
