"""The scheduler with short real intervals: fires and delivers, misfires, coalescing, restarts,
two schedulers on one database, bad schedules, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text, update

from newsletter.audience.importer import import_csv
from newsletter.config import Settings, load_settings, with_changes
from newsletter.delivery.factory import make_sender
from newsletter.errors import SendLockedError
from newsletter.schedule import service as service_module
from newsletter.schedule.cron import show
from newsletter.schedule.service import SchedulerService
from newsletter.storage.db import Database, locks, schedule_runs
from tests.conftest import REPO, SMTPServer, rss

ACTIVE_WITH_NEWS = 17  # sample list: 18 active, one follows only "security"


def _fresh_feed(workspace: Path) -> None:
    """Articles published an hour ago, so that today's issue has news whatever the date."""
    stamp = format_datetime(datetime.now().astimezone() - timedelta(hours=1))
    items = []
    for i, (country, title) in enumerate(
        [
            ("Kazakhstan", "Astana opens a new bridge"),
            ("Kyrgyzstan", "Bishkek adds bus lanes"),
            ("Tajikistan", "Dushanbe plants trees"),
            ("Turkmenistan", "Ashgabat hosts a fair"),
            ("Uzbekistan", "Tashkent extends its metro"),
            ("Central Asia", "Central Asian ministers meet"),
        ]
    ):
        items.append(
            {
                "title": title,
                "link": f"https://fresh.example.org/{i}",
                "date": stamp,
                "categories": f"{country},economy,energy,transport,society,technology,environment",
                "body": f"<p>{title} in {country}.</p>",
            }
        )
    (workspace / "sources" / "feed.xml").write_text(rss(items))


@pytest.fixture
def sched(workspace: Path, smtp_server: SMTPServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    _fresh_feed(workspace)
    config = workspace / "newsletter.toml"  # only the fresh feed: the sample articles are dated
    config.write_text(
        config.read_text().replace('markdown = ["sources/articles"]', "markdown = []")
    )
    db_url = f"sqlite:///{tmp_path / 'sched.db'}"

    def make(
        cron: str = "*/2 * * * * *", grace: int = 60, **schedule: object
    ) -> tuple[Settings, Database]:
        settings = load_settings(
            workspace / "newsletter.toml",
            database={"url": db_url},
            smtp={"host": "127.0.0.1", "port": smtp_server.port, "security": "none"},
            security={"secret_key": "schedule-test-secret-0123456789"},
            scheduler={"misfire_grace_time": grace},
            schedules=[{"name": "weekly", "cron": cron, "lists": ["weekly"], **schedule}],
        )
        db = Database(settings.database_url)
        return settings, db

    settings, db = make()
    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    db.dispose()
    return make, smtp_server


def _runs(db: Database) -> list[dict[str, object]]:
    with db.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(select(schedule_runs).order_by(schedule_runs.c.id))
        ]


def _wait_for(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _burst(start: datetime, seconds: int) -> str:
    """A 6-field cron that fires every second from ``start`` for ``seconds`` seconds, once a day."""
    return f"{start.second}-{start.second + seconds - 1} {start.minute} {start.hour} * * *"


def _soon(lead: float = 3.0, span: int = 1) -> datetime:
    """A moment ``lead`` s ahead whose seconds don't wrap within ``span``."""
    zone = ZoneInfo("Asia/Almaty")  # the sample workspace's zone: cron fields are read in it
    moment = datetime.now(zone) + timedelta(seconds=lead)
    while moment.second + span > 59:
        time.sleep(1)
        moment = datetime.now(zone) + timedelta(seconds=lead)
    return moment.replace(microsecond=0)


def test_a_job_fires_and_delivers_to_every_subscriber_once(sched) -> None:  # type: ignore[no-untyped-def]
    make, server = sched
    settings, db = make()
    service = SchedulerService(settings, db)
    service.start()
    try:
        assert _wait_for(lambda: any(r["outcome"] == "sent" for r in _runs(db)))
        time.sleep(2.5)  # later firings find the issue sent: nobody gets it twice
    finally:
        service.stop()
    recipients = [rcpt for rcpt, _, _ in server.handler.messages]
    assert len(recipients) == ACTIVE_WITH_NEWS == len(set(recipients))
    first = _runs(db)[0]
    assert first["sent"] == ACTIVE_WITH_NEWS and "built 6 articles" in str(first["detail"])


def test_a_run_missed_within_the_grace_time_runs_once_after_a_restart(sched) -> None:  # type: ignore[no-untyped-def]
    make, server = sched
    when = _soon()
    settings, db = make(cron=_burst(when, 1), grace=60)
    first = SchedulerService(settings, db)
    first.start()
    first.stop()  # down before the run time
    stored = show(settings, db)[0]["stored_next_run"]
    assert stored is not None and datetime.fromisoformat(stored) == when  # the job store kept it
    _wait_for(lambda: datetime.now().astimezone() > when + timedelta(seconds=1.5), timeout=10)
    again = SchedulerService(settings, db)
    again.start()
    try:
        assert _wait_for(lambda: len(_runs(db)) == 1 and _runs(db)[0]["outcome"] == "sent")
    finally:
        again.stop()
    assert len(server.handler.messages) == ACTIVE_WITH_NEWS


def test_a_run_missed_beyond_the_grace_time_is_skipped(sched) -> None:  # type: ignore[no-untyped-def]
    make, server = sched
    when = _soon()
    settings, db = make(cron=_burst(when, 1), grace=1)
    first = SchedulerService(settings, db)
    first.start()
    first.stop()
    _wait_for(lambda: datetime.now().astimezone() > when + timedelta(seconds=3), timeout=10)
    again = SchedulerService(settings, db)
    again.start()
    time.sleep(1.5)
    again.stop()
    assert _runs(db) == [] and server.handler.messages == []


def test_a_long_outage_coalesces_missed_runs_into_one(sched) -> None:  # type: ignore[no-untyped-def]
    make, server = sched
    when = _soon(span=4)
    settings, db = make(cron=_burst(when, 4), grace=60)  # four firings, one second apart
    first = SchedulerService(settings, db)
    first.start()
    first.stop()
    _wait_for(lambda: datetime.now().astimezone() > when + timedelta(seconds=5), timeout=15)
    again = SchedulerService(settings, db)
    again.start()
    try:
        assert _wait_for(lambda: len(_runs(db)) >= 1 and _runs(db)[0]["finished_at"] is not None)
        time.sleep(1.5)
    finally:
        again.stop()
    assert len(_runs(db)) == 1, "missed runs were not coalesced"
    assert len(server.handler.messages) == ACTIVE_WITH_NEWS


def test_a_run_failing_unexpectedly_is_recorded_and_the_next_run_happens(sched) -> None:  # type: ignore[no-untyped-def]
    make, server = sched
    settings, db = make()
    calls: list[int] = []

    def sender_factory(settings: Settings, db: Database):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:  # a bug, a library's surprise: not a NewsletterError
            raise RuntimeError("injected fault")
        return make_sender(settings, db)

    service = SchedulerService(settings, db, sender_factory=sender_factory)
    service.start()
    try:
        assert _wait_for(lambda: any(r["outcome"] == "sent" for r in _runs(db)))
    finally:
        service.stop()
    runs = _runs(db)
    assert runs[0]["outcome"] == "failed" and runs[0]["finished_at"] is not None
    assert runs[0]["detail"] == "unexpected error: RuntimeError: injected fault"
    assert not [r for r in runs if r["outcome"] == "running"]
    recipients = [rcpt for rcpt, _, _ in server.handler.messages]
    assert len(recipients) == ACTIVE_WITH_NEWS == len(set(recipients))


def _lock_row(db: Database) -> tuple[str, datetime]:
    with db.connect() as conn:
        row = conn.execute(
            select(locks.c.owner, locks.c.heartbeat_at).where(locks.c.name == "scheduler")
        ).one()
        return row.owner, row.heartbeat_at


def test_the_heartbeat_rides_out_database_errors_and_a_lost_lock_stops_the_scheduler(
    sched, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(service_module, "BEAT_SECONDS", 0.2)
    make, _server = sched
    settings, db = make(cron="0 0 1 1 *")  # never fires during the test
    with db.connect() as conn, conn.begin():  # a database that refuses lock updates while armed
        conn.execute(text("CREATE TABLE faults (armed INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO faults VALUES (1)"))
        conn.execute(
            text(
                "CREATE TRIGGER fail_beats BEFORE UPDATE ON locks WHEN (SELECT armed FROM faults) "
                "= 1 BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        )
    service = SchedulerService(settings, db)
    service.start()
    try:
        assert _wait_for(
            lambda: "cannot refresh the scheduler lock (injected fault)" in caplog.text
        )
        _, before = _lock_row(db)
        with db.connect() as conn, conn.begin():
            conn.execute(text("UPDATE faults SET armed = 0"))
        assert _wait_for(lambda: _lock_row(db)[1] > before), "the heartbeat stopped for good"
        assert not service.stopped
        with db.connect() as conn, conn.begin():  # another scheduler took the lock over
            conn.execute(update(locks).where(locks.c.name == "scheduler").values(owner="other:1/x"))
        assert _wait_for(lambda: service.stopped)
        assert "lost its lock to another scheduler" in service.lost_lock
    finally:
        service.stop()
    assert _lock_row(db)[0] == "other:1/x"  # stopping did not release the other's lock


def test_a_second_scheduler_on_the_same_database_exits_or_waits(sched) -> None:  # type: ignore[no-untyped-def]
    make, server = sched
    settings, db = make()
    first = SchedulerService(settings, db)
    first.start()
    try:
        second = SchedulerService(*make())
        with pytest.raises(SendLockedError, match="another scheduler is running on this database"):
            second.start()
        waiting = SchedulerService(*make())
        started = threading.Event()
        thread = threading.Thread(
            target=lambda: (waiting.acquire(wait=True, poll=0.2), started.set())
        )
        thread.start()
        assert _wait_for(lambda: any(r["outcome"] == "sent" for r in _runs(db)))
        assert not started.is_set()
    finally:
        first.stop()
    thread.join(10)
    assert started.is_set(), "the waiting scheduler did not take over"
    waiting.stop()
    recipients = [rcpt for rcpt, _, _ in server.handler.messages]
    assert len(recipients) == len(set(recipients)) == ACTIVE_WITH_NEWS


def test_build_only_builds_and_sends_test_copies_to_the_editor(sched) -> None:  # type: ignore[no-untyped-def]
    make, server = sched
    settings, db = make(build_only=True, notify="editor@example.org")
    result = SchedulerService(settings, db).run_schedule("weekly")
    assert result["outcome"] == "built"
    assert {rcpt for rcpt, _, _ in server.handler.messages} == {"editor@example.org"}
    today = datetime.now(settings.issue.tz).date().isoformat()
    assert (settings.issues_dir / today / "email.html").is_file()


def test_nothing_new_means_no_issue(sched, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    make, server = sched
    (workspace / "sources" / "feed.xml").write_text(rss([]))
    settings, db = make()
    settings = with_changes(settings, sources={"markdown": []})
    result = SchedulerService(settings, db).run_schedule("weekly")
    assert result["outcome"] == "skipped" and "no new articles" in result["detail"]
    assert server.handler.messages == [] and _runs(db)[0]["outcome"] == "skipped"


def _cli_env(db_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            "NEWSLETTER_DATABASE__URL": db_url,
            "NEWSLETTER_SMTP__HOST": "127.0.0.1",
            "NEWSLETTER_SMTP__PORT": str(port),
            "NEWSLETTER_SMTP__SECURITY": "none",
            "NEWSLETTER_SECURITY__SECRET_KEY": "schedule-test-secret-0123456789",
            "COLUMNS": "200",
        }
    )
    return env


def _with_schedule(workspace: Path, cron: str, lists: str = '["weekly"]') -> None:
    config = workspace / "newsletter.toml"
    base = config.read_text().split("[[schedules]]")[0]  # replace the sample's schedule
    config.write_text(
        base + f'\n[[schedules]]\nname = "weekly"\ncron = "{cron}"\nlists = {lists}\n'
    )


@pytest.mark.parametrize(
    ("cron", "lists", "expected"),
    [
        ("0 7 * * funday", '["weekly"]', "schedule 'weekly': bad cron expression '0 7 * * funday'"),
        ("0 7 * *", '["weekly"]', "schedule 'weekly': bad cron expression"),
        ("0 7 * * mon", '["monthly"]', "schedule 'weekly': unknown list 'monthly'"),
    ],
)
def test_bad_schedules_fail_at_start_naming_the_schedule(
    sched, workspace: Path, tmp_path: Path, cron: str, lists: str, expected: str
) -> None:  # type: ignore[no-untyped-def]
    _make, server = sched
    _with_schedule(workspace, cron, lists)
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter", "schedule", "run"],
        cwd=workspace,
        env=_cli_env(f"sqlite:///{tmp_path / 'sched.db'}", server.port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr


def test_schedule_run_stops_cleanly_on_sigterm_and_show_reports(
    sched, workspace: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _make, server = sched
    _with_schedule(workspace, "*/2 * * * * *")
    env = _cli_env(f"sqlite:///{tmp_path / 'sched.db'}", server.port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "schedule", "run"],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: len(server.handler.messages) >= ACTIVE_WITH_NEWS, timeout=30)
    second = subprocess.run(
        [sys.executable, "-m", "newsletter", "schedule", "run"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        second.returncode == 7 and "another scheduler is running on this database" in second.stderr
    )
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "scheduler stopped" in out, err
    shown = subprocess.run(
        [sys.executable, "-m", "newsletter", "schedule", "show"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0 and "weekly" in shown.stdout and "sent" in shown.stdout
    db = Database(env["NEWSLETTER_DATABASE__URL"])
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schedule_runs)).scalar()
    assert len(server.handler.messages) == ACTIVE_WITH_NEWS
