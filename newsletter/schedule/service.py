"""The weekly issue goes out by itself: APScheduler 3 with its job store in our database.

* Schedules come from ``[[schedules]]`` in the config (cron in the configured time zone).
* Jobs live in an ``SQLAlchemyJobStore`` in the project's database, with ``coalesce`` and
  ``max_instances=1`` and a configurable misfire grace time: a scheduler that was down at 07:00
  and is back at 09:00 still runs that week's job once; one that was down for three weeks runs
  only the latest, once. A restart keeps the stored next run times (jobs whose trigger did not
  change are left as they are).
* Only one scheduler runs per database: it holds the ``scheduler`` lock row (with a heartbeat);
  a second one exits with a message, or waits with ``--wait``. The send log's unique
  (issue, subscriber) key holds in any case.
* Each run's outcome is written to ``schedule_runs`` and logged.
* ``stop()`` (SIGTERM, SIGINT) asks running sends to stop: messages in flight finish, the rest
  stay queued for the next run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import date, datetime, timedelta
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import insert, update
from sqlalchemy.exc import SQLAlchemyError

from newsletter.compose.issuefiles import build_and_write, load_issue
from newsletter.compose.select import ComposeOptions
from newsletter.config import ScheduleSettings, Settings
from newsletter.core.clock import now
from newsletter.core.states import RunOutcome, ScheduleOutcome
from newsletter.delivery.factory import make_sender
from newsletter.errors import NewsletterError, NoArticlesError, SendLockedError
from newsletter.schedule.cron import JOBS_TABLE, check_schedules
from newsletter.storage import locks
from newsletter.storage.db import Database, error_line, schedule_runs

log = logging.getLogger("newsletter.schedule.service")
BEAT_SECONDS = 20.0  # the lock is stale after 90 s without a beat


LOCK = "scheduler"


_current: SchedulerService | None = None


def run_job(name: str) -> None:
    """The APScheduler job target (stored by reference in the job store)."""
    if _current is None:  # pragma: no cover - a job only runs inside a started service
        log.error("schedule %s fired outside a running scheduler", name)
        return
    _current.run_schedule(name)


def fetch_job() -> None:
    """The APScheduler job that reads the IMAP mailbox of returns (bounces.fetch_every_minutes)."""
    if _current is not None:
        _current.fetch_returns()


FETCH_JOB = "returns:imap"


class SchedulerService:
    """``newsletter schedule run``: see the module docstring."""

    def __init__(
        self, settings: Settings, database: Database, *, sender_factory: Any = None
    ) -> None:
        self.settings = settings
        self.db = database
        self.owner = locks.owner_name()
        self.sender_factory = sender_factory  # (settings, db) -> Sender; the CLI's by default
        self.schedules = {s.name: s for s in settings.schedules}
        self._stop = threading.Event()
        self._active: set[Any] = set()
        self._active_lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None
        self._heartbeat: threading.Thread | None = None
        self.lost_lock = ""  # why the scheduler stopped by itself, if it did

    # -- lifecycle
    def acquire(self, wait: bool = False, poll: float = 5.0) -> None:
        while True:
            try:
                with self.db.connect() as conn, conn.begin():
                    locks.acquire_lock(conn, LOCK, self.owner)
                return
            except SendLockedError as exc:
                message = str(exc).replace(
                    f"{LOCK} is held", "another scheduler is running on this database: held"
                )
                if not wait:
                    raise SendLockedError(
                        message + " (use --wait to wait for it)", name=LOCK, owner=exc.owner
                    ) from None
                log.info("%s; waiting", message)
                if self._stop.wait(poll):
                    raise SendLockedError(
                        "stopped while waiting for the scheduler lock", name=LOCK, owner=exc.owner
                    ) from None

    def start(self, *, wait_for_lock: bool = False) -> None:
        global _current
        triggers = check_schedules(self.settings, self.db)
        self.acquire(wait_for_lock)
        _current = self
        store = SQLAlchemyJobStore(engine=self.db.engine, tablename=JOBS_TABLE)
        scheduler = BackgroundScheduler(
            jobstores={"default": store},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.settings.scheduler.misfire_grace_time,
            },
            timezone=self.settings.issue.tz,
        )
        scheduler.start(paused=True)
        wanted: dict[str, Any] = {f"schedule:{n}": t for n, t in triggers.items()}
        bounces = self.settings.bounces
        if bounces.fetch_every_minutes and bounces.imap_host:
            wanted[FETCH_JOB] = IntervalTrigger(minutes=bounces.fetch_every_minutes)
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                log.info("removing job %s: no longer configured", job.id)
                job.remove()
        for job_id, trigger in wanted.items():
            existing = scheduler.get_job(job_id)
            if existing is not None and str(existing.trigger) == str(trigger):
                continue  # keep its stored next run time: a missed run is still due
            scheduler.add_job(
                fetch_job if job_id == FETCH_JOB else run_job,
                trigger,
                args=[] if job_id == FETCH_JOB else [job_id.split(":", 1)[1]],
                id=job_id,
                name=job_id,
                replace_existing=True,
            )
        scheduler.resume()
        self._scheduler = scheduler
        self._heartbeat = threading.Thread(
            target=self._beat, name="scheduler-heartbeat", daemon=True
        )
        self._heartbeat.start()
        for job in scheduler.get_jobs():
            log.info("%s: next run %s", job.id, job.next_run_time)

    def _beat(self) -> None:
        """Every 20 s (every 5 s after a failure): refresh the lock. A database error is logged
        and retried; a lock found taken over stops this scheduler (another one runs now)."""
        wait = BEAT_SECONDS
        while not self._stop.wait(wait):
            try:
                with self.db.connect() as conn, conn.begin():
                    held = locks.heartbeat(conn, LOCK, self.owner)
            except SQLAlchemyError as exc:
                wait = min(5.0, BEAT_SECONDS)
                log.warning(
                    "cannot refresh the scheduler lock (%s); retrying in %g s",
                    error_line(exc),
                    wait,
                )
                continue
            wait = BEAT_SECONDS
            if not held:
                self.lost_lock = (
                    "this scheduler lost its lock to another scheduler (its heartbeat could "
                    "not be written for too long); stopping"
                )
                log.error("%s", self.lost_lock)
                self._stop.set()
                with self._active_lock:
                    for sender in self._active:
                        sender.request_stop()
                return

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    @property
    def stopped(self) -> bool:
        """True once the scheduler stopped by itself (see :attr:`lost_lock`)."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop cleanly: running sends stop claiming; what is in flight finishes."""
        global _current
        self._stop.set()
        with self._active_lock:
            for sender in self._active:
                sender.request_stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        with self.db.connect() as conn, conn.begin():
            locks.release_lock(conn, LOCK, self.owner)
        if _current is self:
            _current = None

    # -- one run
    def fetch_returns(self) -> None:
        """One round over the IMAP mailbox of returns; a failure is logged, the next round
        comes all the same."""
        from newsletter.inbound.factory import make_imap_config, make_mailroom, make_policy
        from newsletter.inbound.service import fetch_returns

        try:
            tally = fetch_returns(
                self.db,
                make_imap_config(self.settings),
                make_mailroom(self.settings),
                make_policy(self.settings),
            )
        except Exception as exc:  # the mailbox or the database away: the next round will tell
            log.warning("fetching returned mail failed: %s", error_line(exc))
            return
        log.info(
            "returned mail: %d read, %s, %d refused",
            tally.read,
            dict(tally.kinds) or "nothing to act on",
            len(tally.problems),
        )

    def run_schedule(self, name: str) -> dict[str, Any]:
        schedule = self.schedules[name]
        day = datetime.now(self.settings.issue.tz).date()
        with self.db.connect() as conn, conn.begin():
            run_id = conn.execute(
                insert(schedule_runs)
                .values(
                    schedule=name,
                    issue=day.isoformat(),
                    started_at=now(),
                    outcome=ScheduleOutcome.RUNNING,
                    sent=0,
                    failed=0,
                    skipped=0,
                    detail="",
                )
                .returning(schedule_runs.c.id)
            ).scalar_one()
        log.info("schedule %s: issue %s", name, day)
        try:
            result = self._run(schedule, day)
        except NewsletterError as exc:
            result = {"outcome": ScheduleOutcome.FAILED, "detail": str(exc)}
        except Exception as exc:  # any failure is recorded; the next run happens all the same
            log.exception("schedule %s: unexpected error", name)
            result = {
                "outcome": ScheduleOutcome.FAILED,
                "detail": f"unexpected error: {type(exc).__name__}: {exc}",
            }
        self._record(name, run_id, result)
        log.info("schedule %s: %s %s", name, result["outcome"], result.get("detail", ""))
        return result

    def _record(self, name: str, run_id: int, result: dict[str, Any]) -> None:
        """Write a run's outcome; a database error is retried for ~30 s, then logged."""
        values = {
            "finished_at": now(),
            "outcome": result["outcome"],
            "sent": result.get("sent", 0),
            "failed": result.get("failed", 0),
            "skipped": result.get("skipped", 0),
            "detail": str(result.get("detail", ""))[:2000],
        }
        for delay in (1.0, 2.0, 4.0, 8.0, 15.0, None):
            try:
                with self.db.connect() as conn, conn.begin():
                    conn.execute(
                        update(schedule_runs).where(schedule_runs.c.id == run_id).values(**values)
                    )
                return
            except SQLAlchemyError as exc:
                if delay is None:
                    log.error(
                        "schedule %s: cannot record the outcome %s of run %d: %s",
                        name,
                        result["outcome"],
                        run_id,
                        error_line(exc),
                    )
                    return
                log.warning(
                    "schedule %s: cannot record the run (%s); retrying", name, error_line(exc)
                )
                self._stop.wait(delay)

    def _issue(self, schedule: ScheduleSettings, day: date) -> str | None:
        """Build today's issue unless it exists; None when there is nothing new."""
        if (self.settings.issues_dir / day.isoformat() / "issue.json").is_file():
            load_issue(self.settings.issues_dir, day)
            return "issue already built; not rebuilt"
        since = (
            None
            if schedule.skip_if_no_new_articles
            else day - timedelta(days=self.settings.issue.window_days)
        )
        try:
            built = build_and_write(self.settings.issue_config(), ComposeOptions(day, since=since))
        except NoArticlesError as exc:
            if schedule.skip_if_no_new_articles:
                return None
            raise exc
        return f"built {len(built.issue.articles)} articles"

    def _run(self, schedule: ScheduleSettings, day: date) -> dict[str, Any]:
        from newsletter.delivery.options import SendOptions

        note = self._issue(schedule, day)
        if note is None:
            return {
                "outcome": ScheduleOutcome.SKIPPED,
                "detail": "no new articles since the last issue: no issue",
            }
        if schedule.build_only:
            detail = f"{note}; build only: an editor sends it"
            if schedule.notify:
                for list_name in schedule.lists[:1] or []:
                    self._send(
                        SendOptions(
                            day.isoformat(),
                            list_name,
                            to=schedule.notify,
                            origin=f"schedule:{schedule.name}",
                        )
                    )
                detail += f"; test copies sent to {schedule.notify}"
            return {"outcome": ScheduleOutcome.BUILT, "detail": detail}
        totals = {"sent": 0, "failed": 0, "skipped": 0}
        outcomes = []
        for list_name in schedule.lists:
            summary = self._send(
                SendOptions(day.isoformat(), list_name, origin=f"schedule:{schedule.name}")
            )
            for key in totals:
                totals[key] += getattr(summary, key)
            outcomes.append(
                f"{list_name}: {summary.outcome}"
                + (f" ({summary.paused})" if summary.paused else "")
            )
            if self._stop.is_set():
                break
        worst = (
            ScheduleOutcome.SENT
            if all(o.endswith(RunOutcome.COMPLETE) for o in outcomes)
            else ScheduleOutcome.INCOMPLETE
        )
        return {"outcome": worst, "detail": f"{note}; " + "; ".join(outcomes), **totals}

    def _send(self, options: Any) -> Any:
        sender = (
            self.sender_factory(self.settings, self.db)
            if self.sender_factory
            else make_sender(self.settings, self.db)
        )
        with self._active_lock:
            if self._stop.is_set():
                sender.request_stop()
            self._active.add(sender)
        try:
            return asyncio.run(sender.run(options))
        finally:
            with self._active_lock:
                self._active.discard(sender)
