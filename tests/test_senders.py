"""Several senders sharing one send on PostgreSQL, as operators run them: three `newsletter
send` processes against one aiosmtpd server. One killed mid-send -> its messages go to the
others within seconds; one rate limit for all, measured at the server; a relay answering 454
for a while -> nothing lost. (SQLite keeps one sender: tests/test_locks.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.storage.db import Database, rate_buckets
from tests.conftest import SAMPLE_DATE, SMTPServer, wait_until

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
KEY = "senders-test-secret-0123456789"


def _world(cli, workspace: Path, db_url: str, count: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {"NEWSLETTER_DATABASE__URL": db_url, "NEWSLETTER_SECURITY__SECRET_KEY": KEY}
    assert cli("build", "--date", SAMPLE_DATE, env=env).code == 0
    people = workspace / "many.csv"
    people.write_text(
        "email,name,interests\n"
        + "".join(f"reader{i:04d}@example.org,Reader {i},Regional\n" for i in range(count))
    )
    assert cli("subscribers", "import", str(people), "--list", "weekly", env=env).code == 0
    return env


def _senders(
    workspace: Path, env: dict[str, str], server: SMTPServer, n: int, **extra: str
) -> list[subprocess.Popen[str]]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    full.update(env)
    full.update(
        {
            "NEWSLETTER_SMTP__HOST": server.host,
            "NEWSLETTER_SMTP__PORT": str(server.port),
            "NEWSLETTER_SMTP__SECURITY": "none",
            "NEWSLETTER_SMTP__CONCURRENCY": "2",
            "NEWSLETTER_SMTP__SENDER_TIMEOUT": "2",
            **extra,
        }
    )
    return [
        subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send", SAMPLE_DATE, "--list", "weekly"],
            cwd=workspace,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]


def _finish(procs: list[subprocess.Popen[str]], timeout: float = 90) -> list[tuple[int, str]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append((proc.returncode, stdout + stderr))
    return out


def test_three_senders_one_killed_everyone_gets_it_and_the_survivors_finish(
    cli, workspace: Path, smtp_server: SMTPServer, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    env = _world(cli, workspace, db_url, 600)
    smtp_server.handler.data_delay = 0.01
    procs = _senders(workspace, env, smtp_server, 3)
    wait_until(lambda: len(smtp_server.handler.messages) >= 180, 60, "30 % of the send")
    os.kill(procs[0].pid, signal.SIGKILL)
    killed_at = time.monotonic()
    procs[0].communicate(timeout=10)  # reaped, its pipes closed
    results = _finish(procs[1:])
    finished = time.monotonic() - killed_at
    assert all(code == 0 for code, _ in results), results
    received = Counter(rcpt for rcpt, _, _ in smtp_server.handler.messages)
    assert set(received) == {f"reader{i:04d}@example.org" for i in range(600)}, "somebody was lost"
    duplicates = sum(n - 1 for n in received.values())
    print(
        f"\nkilled 1 of 3 senders at 30 %; survivors done {finished:.1f} s later; duplicates {duplicates}"
    )
    assert duplicates <= 16  # the killed sender's messages in flight, at most
    status = cli("status", SAMPLE_DATE, env=env)
    assert "600 sent" in status.stdout and "0 sending" in status.stdout


def test_one_rate_limit_for_all_senders_measured_at_the_server(
    cli, workspace: Path, smtp_server: SMTPServer, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    env = _world(cli, workspace, db_url, 500)
    procs = _senders(workspace, env, smtp_server, 3, NEWSLETTER_SMTP__RATE_PER_SECOND="100")
    results = _finish(procs)
    assert all(code == 0 for code, _ in results), results
    stamps = sorted(t for _, _, t in smtp_server.handler.messages)
    assert len(stamps) == 500
    # Skip the first second (the bucket starts full and the senders start one by one).
    steady = [t for t in stamps if t >= stamps[0] + 1.0]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    print(f"\nthree senders, limit 100/s: the server saw {rate:.1f} messages/s")
    assert 95 <= rate <= 105


def test_a_relay_that_throttles_for_a_while_loses_nothing(
    cli, workspace: Path, smtp_server: SMTPServer, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    env = _world(cli, workspace, db_url, 120)
    smtp_server.handler.throttle_next = 20  # a relay over its quota answers 454 for a while
    procs = _senders(
        workspace,
        env,
        smtp_server,
        3,
        NEWSLETTER_SMTP__RATE_PER_SECOND="100",
        NEWSLETTER_SMTP__RETRIES="8",
        NEWSLETTER_SMTP__BACKOFF="0.2",
    )
    results = _finish(procs)
    assert all(code == 0 for code, _ in results), results
    received = Counter(rcpt for rcpt, _, _ in smtp_server.handler.messages)
    assert len(received) == 120 and max(received.values()) == 1
    db = Database(db_url)
    try:
        with db.connect() as conn:
            slowed = conn.execute(select(rate_buckets.c.slowed_at)).scalars().all()
    finally:
        db.dispose()
    assert slowed and max(slowed) > 0, "the shared rate was never slowed down"


def test_a_worker_joins_a_send_started_elsewhere_and_stops_on_sigterm(
    cli, workspace: Path, smtp_server: SMTPServer, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    env = _world(cli, workspace, db_url, 1000)
    smtp_server.handler.data_delay = 0.01
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    full.update(env)
    full.update(
        {
            "NEWSLETTER_SMTP__HOST": smtp_server.host,
            "NEWSLETTER_SMTP__PORT": str(smtp_server.port),
            "NEWSLETTER_SMTP__SECURITY": "none",
            "NEWSLETTER_SMTP__CONCURRENCY": "2",
        }
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "worker", "--poll", "0.2"],
        cwd=workspace,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: worker.stderr is not None, 5)
        (started,) = _senders(workspace, env, smtp_server, 1)
        code, output = _finish([started])[0]
        assert code == 0, output
        wait_until(lambda: len(smtp_server.handler.messages) >= 1000, 60, "every message")
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    received = Counter(rcpt for rcpt, _, _ in smtp_server.handler.messages)
    assert len(received) == 1000 and max(received.values()) == 1
    served = int(re.search(r"served, (\d+) sent", out).group(1))  # type: ignore[union-attr]
    assert 0 < served < 1000, out + err  # the worker took a share of the send
    assert (
        "worker needs PostgreSQL"
        in cli("worker", env={"NEWSLETTER_SECURITY__SECRET_KEY": KEY}).stderr
    )
