"""Schedules as data: cron expressions checked against the settings, next run times, and what
``newsletter schedule show`` and ``status`` report of past runs."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select

from newsletter.config import Settings
from newsletter.errors import ScheduleError
from newsletter.storage.db import Database, lists, schedule_runs

JOBS_TABLE = "apscheduler_jobs"


def parse_cron(expr: str, tz: tzinfo) -> CronTrigger:
    """Five fields (minute hour day month weekday), or six with seconds first."""
    fields = expr.split()
    if len(fields) == 5:
        return CronTrigger.from_crontab(expr, timezone=tz)
    if len(fields) == 6:
        second, minute, hour, day, month, day_of_week = fields
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=day_of_week,
            timezone=tz,
        )
    raise ValueError(f"{len(fields)} fields; a cron expression has 5 (or 6 with seconds first)")


def check_schedules(settings: Settings, database: Database) -> dict[str, CronTrigger]:
    """Every schedule's trigger; raises ScheduleError naming the first bad schedule."""
    if not settings.schedules:
        raise ScheduleError("no schedules configured: add a [[schedules]] table to the config")
    triggers = {}
    with database.connect() as conn:
        known = {name for (name,) in conn.execute(select(lists.c.name))}
    for schedule in settings.schedules:
        try:
            triggers[schedule.name] = parse_cron(schedule.cron, settings.issue.tz)
        except ValueError as exc:
            raise ScheduleError(
                f"bad cron expression {schedule.cron!r}: {exc}", schedule=schedule.name
            ) from None
        for name in schedule.lists:
            if name not in known:
                raise ScheduleError(
                    f"unknown list {name!r} (lists: {', '.join(sorted(known)) or 'none yet'})",
                    schedule=schedule.name,
                )
    return triggers


def next_times(trigger: CronTrigger, count: int, start: datetime | None = None) -> list[datetime]:
    times: list[datetime] = []
    previous = None
    moment = start or datetime.now(trigger.timezone)
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None:
            break
        times.append(fire)
        previous, moment = fire, fire + timedelta(microseconds=1)
    return times


def show(settings: Settings, database: Database) -> list[dict[str, Any]]:
    """Each schedule with its next run times, the stored job, and its last run."""
    from sqlalchemy import inspect

    out = []
    with database.connect() as conn:
        stored: dict[str, Any] = {}
        if inspect(conn).has_table(JOBS_TABLE):
            from sqlalchemy import column, table

            jobs = table(JOBS_TABLE, column("id"), column("next_run_time"))
            stored = {
                row.id: row.next_run_time
                for row in conn.execute(select(jobs.c.id, jobs.c.next_run_time))
            }
        for schedule in settings.schedules:
            entry: dict[str, Any] = {
                "name": schedule.name,
                "cron": schedule.cron,
                "lists": schedule.lists,
                "build_only": schedule.build_only,
            }
            try:
                trigger = parse_cron(schedule.cron, settings.issue.tz)
                entry["next_runs"] = [t.isoformat() for t in next_times(trigger, 3)]
            except ValueError as exc:
                entry["error"] = f"bad cron expression: {exc}"
            stamp = stored.get(f"schedule:{schedule.name}")
            entry["stored_next_run"] = (
                datetime.fromtimestamp(stamp, settings.issue.tz).isoformat()
                if stamp is not None
                else None
            )
            last = conn.execute(
                select(schedule_runs)
                .where(schedule_runs.c.schedule == schedule.name)
                .order_by(schedule_runs.c.id.desc())
                .limit(1)
            ).first()
            entry["last_run"] = dict(last._mapping) if last else None
            out.append(entry)
    return out


def runs_for_issue(database: Database, issue: str) -> list[dict[str, Any]]:
    with database.connect() as conn:
        rows = conn.execute(
            select(schedule_runs).where(schedule_runs.c.issue == issue).order_by(schedule_runs.c.id)
        )
        return [dict(r._mapping) for r in rows]
