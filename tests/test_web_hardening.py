"""The subscriber pages against strangers and link scanners, over a real uvicorn server: no
method but POST changes anything on any route; sign-up cannot be used as a mail cannon;
cross-site posts, foreign Host headers and framing are refused; tokens never reach the log."""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select, update

from newsletter import audience
from newsletter.audience.importer import import_csv
from newsletter.compose.issuefiles import build_and_write
from newsletter.compose.select import ComposeOptions
from newsletter.config import Settings, with_changes
from newsletter.core.clock import now
from newsletter.core.tokens import Purpose, Signer
from newsletter.delivery.transports import MaildirTransport
from newsletter.errors import TokenError
from newsletter.storage.db import Database, events, lists, mail_outbox, memberships, subscribers
from newsletter.web.app import create_app
from newsletter.web.guard import RateLimit, client_key
from tests.conftest import REPO, serve, wait_until

SIGNER = Signer(b"hardening-secret-0123456789abcdef")
BASE = "https://news.example.org"
METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE", "TRACE"]


class Site:
    def __init__(self, client: httpx.Client, db: Database, outbox: Path, app: Any) -> None:
        self.client, self.db, self.outbox, self.app = client, db, outbox, app

    def sid(self, email: str) -> int:
        with self.db.connect() as conn:
            return int(
                conn.execute(
                    select(subscribers.c.id).where(subscribers.c.email == email)
                ).scalar_one()
            )

    def status(self, email: str) -> str:
        with self.db.connect() as conn:
            return audience.get(conn, email).status

    def mails(self) -> list[str]:
        folder = self.outbox / "new"
        return [p.read_text() for p in sorted(folder.iterdir())] if folder.is_dir() else []

    def snapshot(self) -> tuple[object, ...]:
        """Everything a request could change: the rows of every table it may write, and mail."""
        with self.db.connect() as conn:
            rows = tuple(
                tuple(map(tuple, conn.execute(select(table)).all()))
                for table in (subscribers, memberships, events, mail_outbox, lists)
            )
        return (*rows, tuple(self.mails()))


@contextlib.contextmanager
def open_site(settings: Settings, db: Database, tmp_path: Path, rate: RateLimit) -> Iterator[Site]:
    settings = with_changes(
        settings, sender={"base_url": BASE}, web={"public_lists": ["weekly", "digest"]}
    )
    build_and_write(settings.issue_config(), ComposeOptions(date(2026, 11, 16)))
    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    with db.connect() as conn, conn.begin():
        for name in ("digest", "internal-staff"):
            conn.execute(insert(lists).values(name=name, created_at=now()))
    outbox = tmp_path / "outbox"
    app = create_app(settings, db, SIGNER, MaildirTransport(outbox), rate=rate)
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield Site(client, db, outbox, app)


@pytest.fixture
def site(settings: Settings, db: Database, tmp_path: Path) -> Iterator[Site]:
    with open_site(settings, db, tmp_path, RateLimit(50, 600)) as opened:
        yield opened


def _path_for(template: str, site: Site) -> str:
    """A route's path with a valid value in each parameter."""
    sid = site.sid("pending@example.org")
    values = {
        "/u/{token}": f"/u/{SIGNER.make(Purpose.SUBSCRIBER, sid)}",
        "/p/{token}": f"/p/{SIGNER.make(Purpose.SUBSCRIBER, sid)}",
        "/confirm/{token}": f"/confirm/{SIGNER.make(Purpose.CONFIRM, sid, ttl=3600)}",
        "/archive/{day}": "/archive/2026-11-16",
    }
    return values.get(template, template)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_method_but_post_changes_anything_on_any_route(site: Site) -> None:
    routes = [route.path for route in site.app.routes]
    assert len(routes) >= 8, routes
    for template in routes:
        path = _path_for(template, site)
        assert "{" not in path, f"add a value for the new route {template} to _path_for"
        for method in METHODS:
            before = site.snapshot()
            response = site.client.request(method, path, data=None)
            assert response.status_code in (200, 405), (method, template, response.status_code)
            assert site.snapshot() == before, f"{method} {template} changed something"
            assert "Traceback" not in response.text
    # The same walk with a form body that POST would act on, sent with every other method.
    for template in routes:
        path = _path_for(template, site)
        body = {"email": "walker@example.org", "List-Unsubscribe": "One-Click", "resubscribe": "1"}
        for method in ("PUT", "PATCH", "DELETE"):
            before = site.snapshot()
            site.client.request(method, path, data=body)
            assert site.snapshot() == before, f"{method} {template} with a form changed something"
    assert site.status("pending@example.org") == "unconfirmed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_response_carries_the_security_headers(site: Site) -> None:
    token = SIGNER.make(Purpose.SUBSCRIBER, site.sid("lena@example.org"))
    for path, method in [
        ("/", "GET"),
        ("/subscribe", "GET"),
        (f"/u/{token}", "GET"),
        (f"/p/{token}", "GET"),
        ("/archive", "GET"),
        ("/archive/2026-11-16", "GET"),
        ("/archive/feed.xml", "GET"),
        ("/nowhere", "GET"),
        ("/archive", "POST"),
        ("/u/forged", "GET"),
    ]:
        headers = site.client.request(method, path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] in ("no-referrer", "same-origin"), path
    assert site.client.get(f"/u/{token}").headers["referrer-policy"] == "no-referrer"
    assert site.client.get(f"/p/{token}").headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_one_confirmation_mail_per_address_and_day_however_many_clients_ask(site: Site) -> None:
    for n in range(6):  # six clients (X-Forwarded-For from the trusted proxy 127.0.0.1)
        response = site.client.post(
            "/subscribe",
            data={"email": "target@example.org", "name": "WIN $1000 at http://spam.example"},
            headers={"X-Forwarded-For": f"198.51.100.{n + 1}"},
        )
        assert response.status_code == 200 and "Check your inbox" in response.text
    wait_until(lambda: site.mails(), what="the confirmation mail")
    mails = site.mails()
    assert len(mails) == 1
    assert "WIN" not in mails[0] and "spam.example" not in mails[0]
    with site.db.connect() as conn:
        kinds = [
            r.detail for r in conn.execute(select(events).where(events.c.kind == "web.subscribe"))
        ]
    assert len(kinds) == 6  # every sign-up is in the audit trail, with its client
    assert {re.search(r"ip=(\S+)", k).group(1) for k in kinds} == {  # type: ignore[union-attr]
        f"198.51.100.{n + 1}" for n in range(6)
    }
    with site.db.connect() as conn, conn.begin():  # a day later another one may go out
        conn.execute(
            update(subscribers)
            .where(subscribers.c.email == "target@example.org")
            .values(confirmation_sent_at=now() - timedelta(hours=24, minutes=1))
        )
    site.client.post("/subscribe", data={"email": "target@example.org"})
    wait_until(lambda: len(site.mails()) == 2, what="the second confirmation mail")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cross_site_posts_are_refused_and_change_nothing(site: Site) -> None:
    token = SIGNER.make(Purpose.SUBSCRIBER, site.sid("lena@example.org"))
    form = {"email": "csrf@example.org"}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page.html"},
        {"Origin": "http://news.example.org"},  # the scheme counts
    ):
        before = site.snapshot()
        response = site.client.post("/subscribe", data=form, headers=headers)
        assert response.status_code == 403, headers
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert site.snapshot() == before
    refused = site.client.post(f"/u/{token}", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and site.status("lena@example.org") == "active"
    # Our own origin, or none at all (a mail provider's one-click POST), goes through; a token
    # page's own form posts "Origin: null" (it sends no referrer) and holds the token.
    assert site.client.post("/subscribe", data=form, headers={"Origin": BASE}).status_code == 200
    host = site.client.base_url.netloc.decode()
    same = site.client.post("/subscribe", data=form, headers={"Origin": f"http://{host}"})
    assert same.status_code == 200
    one_click = site.client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "null"},
    )
    assert one_click.status_code == 200 and site.status("lena@example.org") == "unsubscribed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_confirmation_sent_before_an_unsubscribe_no_longer_subscribes(site: Site) -> None:
    site.client.post("/subscribe", data={"email": "fickle@example.org"})
    wait_until(lambda: site.mails(), what="the confirmation mail")
    link = re.search(r"https://news\.example\.org(/confirm/[\w-]+)", site.mails()[0]).group(1)  # type: ignore[union-attr]
    assert site.client.post(link).status_code == 200
    assert site.status("fickle@example.org") == "active"
    token = SIGNER.make(Purpose.SUBSCRIBER, site.sid("fickle@example.org"))
    site.client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert site.status("fickle@example.org") == "unsubscribed"
    for method in ("GET", "POST"):
        again = site.client.request(method, link)
        assert again.status_code == 400 and "before you unsubscribed" in again.text
    assert site.status("fickle@example.org") == "unsubscribed"


def test_each_token_has_one_spelling() -> None:
    token = SIGNER.make(Purpose.SUBSCRIBER, 42)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bytes = [
        token[:-1] + c
        for c in alphabet
        if base64.urlsafe_b64decode(token[:-1] + c + "=" * (-len(token) % 4)) == raw
    ]
    assert len(same_bytes) == 4  # base64's spare bits: four spellings decode alike
    accepted = []
    for spelling in same_bytes:
        with contextlib.suppress(TokenError):
            accepted.append(SIGNER.read(spelling, Purpose.SUBSCRIBER))
    assert accepted == [42]
    with pytest.raises(TokenError):
        SIGNER.read(token.replace(token[0], "é", 1), Purpose.SUBSCRIBER)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_other_spellings_of_a_token_get_the_bad_link_page(site: Site) -> None:
    token = SIGNER.make(Purpose.SUBSCRIBER, site.sid("lena@example.org"))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for c in alphabet:
        other = token[:-1] + c
        if other != token and base64.urlsafe_b64decode(other + "=" * (-len(other) % 4)) == raw:
            assert site.client.post(f"/u/{other}").status_code == 400
    assert site.status("lena@example.org") == "active"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_preferences_offer_public_lists_and_the_persons_own_and_refuse_others(site: Site) -> None:
    token = SIGNER.make(Purpose.SUBSCRIBER, site.sid("lena@example.org"))
    page = site.client.get(f"/p/{token}").text
    assert 'value="weekly"' in page and 'value="digest"' in page
    assert "internal-staff" not in page
    before = site.snapshot()
    refused = site.client.post(f"/p/{token}", data={"list": ["weekly", "internal-staff"]})
    assert refused.status_code == 400 and "no such list: internal-staff" in refused.text
    assert site.snapshot() == before
    saved = site.client.post(f"/p/{token}", data={"list": ["weekly", "digest"]})
    assert saved.status_code == 200
    with site.db.connect() as conn:
        assert audience.get(conn, "lena@example.org").lists == ["digest", "weekly"]
        staff = conn.execute(select(lists.c.id).where(lists.c.name == "internal-staff")).scalar()
        conn.execute(
            insert(memberships).values(
                list_id=staff, subscriber_id=site.sid("lena@example.org"), added_at=now()
            )
        )
        conn.commit()
    # A list the person is on is offered to them (so that they can leave it).
    assert 'value="internal-staff"' in site.client.get(f"/p/{token}").text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_trailing_slash_redirects_to_the_base_url_never_to_the_host_header(site: Site) -> None:
    root = str(site.client.base_url).rstrip("/")
    for path in ("/archive/", "/subscribe/", "//evil.example/", "/archive/feed.xml/"):
        response = site.client.get(root + path, headers={"Host": "evil.example"})
        assert response.status_code == 308, path
        location = response.headers["location"]
        assert location.startswith(BASE + "/") and "evil.example" not in location.split("/")[2]
    assert site.client.get("/archive/?x=1").headers["location"] == f"{BASE}/archive?x=1"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_access_log_never_holds_a_token(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    settings = with_changes(settings, sender={"base_url": BASE})
    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    app = create_app(settings, db, SIGNER, MaildirTransport(tmp_path / "outbox"))
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    try:
        with serve(app, log_level="info") as url, httpx.Client(base_url=url) as client:
            # uvicorn sets up its loggers as it starts: the handler goes on after that
            logging.getLogger("uvicorn.access").addHandler(handler)
            with db.connect() as conn:
                sid = int(
                    conn.execute(
                        select(subscribers.c.id).where(subscribers.c.email == "lena@example.org")
                    ).scalar_one()
                )
            tokens = [
                SIGNER.make(Purpose.SUBSCRIBER, sid),
                SIGNER.make(Purpose.CONFIRM, sid, ttl=60),
            ]
            for path in (f"/u/{tokens[0]}", f"/p/{tokens[0]}?x=1", f"/confirm/{tokens[1]}"):
                client.get(path)
                client.head(path)
            client.get("/archive")
    finally:
        logging.getLogger("uvicorn.access").removeHandler(handler)
    assert len(lines) == 7, lines
    assert not any(t in line for t in tokens for line in lines)
    assert any("/u/[token]" in line for line in lines)
    assert any("/confirm/[token]" in line for line in lines)


def test_the_rate_limit_forgets_idle_clients_and_keeps_its_memory_bounded() -> None:
    limit = RateLimit(2, 60, max_clients=1000)
    for n in range(50_000):
        limit.allow(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", now=float(n) / 1000)
    assert limit.clients <= 1000
    limit.allow("192.0.2.1", now=10_000.0)  # every earlier client has been idle for > 60 s
    assert limit.clients == 1
    assert [limit.allow("192.0.2.9", now=10_001.0) for _ in range(3)] == [True, True, False]
    assert limit.allow("192.0.2.9", now=10_062.0)  # its window has passed


def test_ipv6_clients_are_limited_per_64() -> None:
    assert (
        client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    limit = RateLimit(3, 600)
    answers = [limit.allow(f"2001:db8:1:2::{n:x}", now=1.0) for n in range(1, 6)]
    assert answers == [True, True, True, False, False]
    assert limit.allow("2001:db8:1:3::1", now=1.0)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_limit_holds_for_an_ipv6_block_over_http(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    with open_site(settings, db, tmp_path, RateLimit(2, 600)) as site:
        check_ipv6_block(site)


def check_ipv6_block(site: Site) -> None:
    codes = [
        site.client.post(
            "/subscribe",
            data={"email": f"v6-{n}@example.org"},
            headers={"X-Forwarded-For": f"2001:db8:aa:bb::{n + 1:x}"},
        ).status_code
        for n in range(4)
    ]
    assert codes == [200, 200, 429, 429]
    with site.db.connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(subscribers).where(subscribers.c.email.like("v6-%"))
        ).scalar()
    assert count == 2


def test_newsletter_serve_logs_requests_without_their_tokens(workspace: Path) -> None:
    """The real command, as an operator runs it: uvicorn's own access log, tokens redacted."""
    import os
    import subprocess
    import sys

    from newsletter.delivery.localserver import free_port

    port = free_port()
    key = "serve-log-secret-0123456789abcdef"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_SECURITY__SECRET_KEY"] = key
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    token = Signer(key.encode()).make(Purpose.SUBSCRIBER, 1)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            def up() -> bool:
                try:
                    return client.get("/archive").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(up, 30, "newsletter serve to answer")
            for path in (f"/u/{token}", f"/p/{token}", f"/confirm/{token}"):
                client.get(path)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert token not in output
    assert '"GET /u/[token] HTTP/1.1"' in output and '"GET /p/[token] HTTP/1.1"' in output
