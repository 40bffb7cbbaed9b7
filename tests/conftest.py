"""Shared fixtures: a copy of the sample workspace, a CLI runner, a real local HTTP server."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from newsletter.config import Settings, load_settings

if TYPE_CHECKING:
    from newsletter.core.interests import Vocabulary
    from newsletter.storage.db import Database

# Read before the autouse fixture below clears NEWSLETTER_* variables. .ci/run sets it to the
# local PostgreSQL server; without it the PostgreSQL half of the database tests is skipped.
TEST_PG_URL = os.environ.get("NEWSLETTER_TEST_DATABASE_URL", "")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SAMPLE_DATE = "2026-11-16"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NEWSLETTER_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A fresh copy of the repository's sample workspace."""
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(REPO / "newsletter.toml", ws / "newsletter.toml")
    shutil.copytree(REPO / "sources", ws / "sources")
    shutil.copytree(REPO / "templates", ws / "templates")
    shutil.copytree(REPO / "subscribers", ws / "subscribers")
    (ws / "issues").mkdir()
    return ws


@pytest.fixture
def settings(workspace: Path) -> Settings:
    return load_settings(workspace / "newsletter.toml")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> Result:
    """Run the real command line in a subprocess, as a user would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(workspace: Path):  # type: ignore[no-untyped-def]
    return partial(run_cli, cwd=workspace)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        if self.path.startswith("/status/"):
            code = int(self.path.rsplit("/", 1)[1])
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 (free port) serving a temporary folder."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss(items: list[dict[str, str]], title: str = "Test feed") -> str:
    """A small RSS 2.0 document; each item: title, link, date (RFC 822), body, categories."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">',
        f"<channel><title>{title}</title><link>https://feed.example.org/</link>",
    ]
    for item in items:
        cats = "".join(
            f"<category>{c}</category>" for c in item.get("categories", "").split(",") if c
        )
        parts.append(
            "<item>"
            f"<title>{item['title']}</title><link>{item['link']}</link>"
            f"<guid>{item.get('guid', item['link'])}</guid><pubDate>{item['date']}</pubDate>{cats}"
            f"<description><![CDATA[{item.get('summary', '')}]]></description>"
            + (
                f"<content:encoded><![CDATA[{item['body']}]]></content:encoded>"
                if item.get("body")
                else ""
            )
            + "</item>"
        )
    parts.append("</channel></rss>")
    return "\n".join(parts)


def _pg_unavailable() -> str | None:
    if not TEST_PG_URL:
        return "PostgreSQL not configured: set NEWSLETTER_TEST_DATABASE_URL (.ci/run does)"
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(TEST_PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except (ImportError, OSError, SQLAlchemyError) as exc:  # unreachable: skip, with the reason
        return f"PostgreSQL at {TEST_PG_URL} is not reachable: {type(exc).__name__}"
    return None


_PG_REASON: list[str | None] = []


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database: a SQLite file, or a private schema on the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not _PG_REASON:
        _PG_REASON.append(_pg_unavailable())
    if _PG_REASON[0]:
        pytest.skip(_PG_REASON[0])
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(TEST_PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in TEST_PG_URL else "?"
    try:
        yield f"{TEST_PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    from newsletter.storage.db import Database

    database = Database(db_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def vocabulary(settings: Settings) -> Vocabulary:

    return settings.vocabulary()


# -- a real SMTP server (aiosmtpd) with failures injected on the server side --------------------


class RecordingHandler:
    """Stores what it receives; ``rules[address]`` injects a failure for that recipient:
    "450" / "550" at RCPT, "450-once" (then accept), "drop" (close the connection at DATA),
    "slow" (sleep past the client's timeout at DATA). With ``pipelining`` (the default, as on
    Postfix, Exim or Gmail) EHLO offers PIPELINING, so the client pipelines its commands."""

    def __init__(self, pipelining: bool = True) -> None:
        self.pipelining = pipelining
        self.messages: list[tuple[str, bytes, float]] = []
        self.mail_from: dict[str, str] = {}  # recipient -> the envelope sender of its message
        self.rules: dict[str, str] = {}
        self.slow_seconds = 3.0
        self.data_delay = 0.0
        self.throttle_next = 0  # this many RCPTs to come get "454 Throttling", then all is well
        self.on_message = None  # called with the recipient after each stored message
        self.in_data = 0  # messages whose DATA is being handled right now

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        extra = ["250-PIPELINING"] if self.pipelining else []
        return [*responses[:-1], *extra, *responses[-1:]] if responses else responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return "454 4.7.0 Throttling failure: Maximum sending rate exceeded."
        rule = self.rules.get(address.lower())
        if rule == "550":
            return f"550 5.1.1 <{address}>: no such user"
        if rule and len(rule) > 4 and rule[:3].isdigit() and rule[3] == " ":
            return rule  # a whole reply, as the test wrote it
        if rule in ("450", "450-once"):
            if rule == "450-once":
                self.rules.pop(address.lower())
            return f"450 4.2.0 <{address}>: mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        import asyncio
        import time

        rule = self.rules.get(envelope.rcpt_tos[0].lower())
        if rule == "drop":
            server.transport.close()
            return "421 closing"
        if rule == "slow":
            await asyncio.sleep(self.slow_seconds)
        if self.data_delay:
            self.in_data += 1
            try:
                await asyncio.sleep(self.data_delay)
            finally:
                self.in_data -= 1
        self.messages.append(
            (envelope.rcpt_tos[0], envelope.original_content or envelope.content, time.monotonic())
        )
        self.mail_from[envelope.rcpt_tos[0].lower()] = envelope.mail_from
        if self.on_message is not None:
            self.on_message(envelope.rcpt_tos[0])
        return "250 2.0.0 OK"

    def received(self, address: str) -> list[bytes]:
        return [m for rcpt, m, _ in self.messages if rcpt.lower() == address.lower()]


@dataclass
class SMTPServer:
    handler: RecordingHandler
    host: str
    port: int


def stop_smtp(controller) -> None:  # type: ignore[no-untyped-def]
    """Stop the server thread. aiosmtpd leaves the sockets of sessions that were cut short
    (timeouts, dropped connections, failed TLS) to the garbage collector: collect them here, so
    their ResourceWarning is not raised inside whichever test happens to run next."""
    import gc
    import warnings

    controller.stop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def start_smtp(handler: RecordingHandler, **kwargs: object):  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller

    from newsletter.delivery.localserver import free_port

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, SMTPServer(handler, "127.0.0.1", port)


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[SMTPServer]:
    """A real aiosmtpd server on a free port; parametrize indirectly with "serial" for one that
    does not offer PIPELINING."""
    handler = RecordingHandler(pipelining=getattr(request, "param", "pipelining") != "serial")
    controller, server = start_smtp(handler)
    try:
        yield server
    finally:
        stop_smtp(controller)


# -- a real headless Chromium (Debian's chromium package, driven by Playwright) ----------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium); .ci/run installs it"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (pip) drives the browser"
    )
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@contextlib.contextmanager
def serve(app: object, log_level: str = "warning") -> Iterator[str]:
    """The app on a real uvicorn server on 127.0.0.1 (free port), in a thread."""
    import uvicorn

    from newsletter.delivery.localserver import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or condition}")
        time.sleep(0.01)
