"""`newsletter preview` in a real headless Chromium (Debian's chromium package)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.request import urlopen

import pytest

from newsletter.config import Settings
from newsletter.errors import ServerError
from newsletter.web.preview import PreviewServer

DAY = date(2026, 11, 16)


@pytest.fixture
def preview(settings: Settings) -> Iterator[PreviewServer]:
    server = PreviewServer(settings, DAY, host="127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_preview_serves_every_part_without_writing_the_issue(
    preview: PreviewServer, settings: Settings
) -> None:
    for name, marker in [
        ("", b"Preview:"),
        ("email.html", b"Central Asia Weekly"),
        ("email.txt", b"KAZAKHSTAN"),
        ("index.html", b"web edition"),
        ("issue.json", b'"sections"'),
    ]:
        with urlopen(preview.url + name, timeout=10) as response:
            assert response.status == 200
            assert marker in response.read()
    assert not (settings.issues_dir / DAY.isoformat()).exists()


def test_preview_binds_to_loopback_by_default(preview: PreviewServer) -> None:
    assert preview.url.startswith("http://127.0.0.1:")


def test_preview_refuses_a_foreign_host_header(preview: PreviewServer) -> None:
    """DNS rebinding: a stranger's page whose name now resolves to 127.0.0.1 sends its own
    name as Host; the preview (which can show subscribers' editions) does not answer it."""
    import httpx

    port = preview.url.rsplit(":", 1)[1].strip("/")
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", ""):
        response = httpx.get(preview.url, headers={"Host": host}, timeout=10)
        assert response.status_code == 421, host
        assert b"Central Asia" not in response.content
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        response = httpx.get(preview.url + "email.html", headers={"Host": host}, timeout=10)
        assert response.status_code == 200, host
        assert response.headers["x-content-type-options"] == "nosniff"


def test_busy_port_is_a_clear_error(preview: PreviewServer, settings: Settings) -> None:
    second = PreviewServer(settings, DAY, port=preview.port)
    with pytest.raises(ServerError, match=f"cannot serve the preview on 127.0.0.1:{preview.port}"):
        second.start()


@pytest.mark.browser
def test_email_reads_at_desktop_and_mobile_widths(
    preview: PreviewServer, browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    for width in (600, 375):
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(preview.url + "email.html")
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"horizontal scrolling at {width}px ({scroll_width}px wide)"
        headline = page.locator("h3.headline").first.bounding_box()
        assert headline is not None and headline["x"] + headline["width"] <= width
        shot = tmp_path / f"email-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        page.close()


@pytest.mark.browser
def test_preview_page_shows_both_frames_and_the_text(
    preview: PreviewServer, browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(preview.url)
    assert page.locator("iframe#desktop").get_attribute("width") == "600"
    assert page.locator("iframe#mobile").get_attribute("width") == "375"
    mobile = page.frame_locator("iframe#mobile")
    assert mobile.locator("h1").inner_text() == "Central Asia Weekly"
    frame_scroll = page.evaluate(
        "document.getElementById('mobile').contentDocument.documentElement.scrollWidth"
    )
    assert frame_scroll <= 375
    assert "KAZAKHSTAN" in page.locator("pre#text").inner_text()
    page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)


@pytest.mark.browser
def test_editing_a_template_rebuilds_and_reloads_the_page(
    preview: PreviewServer, browser, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(preview.url)
    before = preview.version
    template = settings.templates_dir / "email.html.j2"
    template.write_text(
        template.read_text().replace(
            '<h1 class="title">{{ issue.name }}</h1>',
            '<h1 class="title">{{ issue.name }} (edited)</h1>',
        )
    )
    page.frame_locator("iframe#mobile").locator("h1", has_text="(edited)").wait_for(timeout=15_000)
    assert preview.version > before


@pytest.mark.browser
def test_a_broken_template_shows_the_error_and_keeps_the_last_good_build(
    preview: PreviewServer, browser, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(preview.url)
    template = settings.templates_dir / "email.html.j2"
    template.write_text(template.read_text().replace("{% endfor %}", "{% endfo %}", 1))
    alert = page.locator("[role=alert]")
    alert.wait_for(timeout=15_000)
    assert "template syntax error" in alert.inner_text() and "email.html.j2" in alert.inner_text()
    assert page.frame_locator("iframe#desktop").locator("h1").inner_text() == "Central Asia Weekly"


def test_new_markdown_article_appears_after_a_rebuild(
    preview: PreviewServer, settings: Settings
) -> None:
    (settings.path("sources/articles") / "new.md").write_text(
        "---\ntitle: Late Story From Naryn\ndate: 2026-11-16T12:00:00+05:00\nurl: https://e.example.org/late\n---\nText.\n"
    )
    # Wait for the served text itself: a rebuild for an earlier change may land first.
    deadline = time.monotonic() + 20
    text = b""
    while b"Late Story From Naryn" not in text and time.monotonic() < deadline:
        with urlopen(preview.url + "email.txt", timeout=10) as response:
            text = response.read()
        time.sleep(0.1)
    assert b"Late Story From Naryn" in text


@pytest.fixture
def audience_preview(settings: Settings, tmp_path: Path) -> Iterator[PreviewServer]:
    from newsletter.audience.importer import import_csv
    from newsletter.storage.db import Database
    from tests.conftest import REPO

    db = Database(f"sqlite:///{tmp_path / 'preview.db'}")
    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    server = PreviewServer(settings, DAY, port=0, database=db, list_name="weekly")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        db.dispose()


def _get(url: str) -> str:
    with urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_switcher_lists_the_variants_and_shows_one(audience_preview: PreviewServer) -> None:
    plan = audience_preview.plan
    assert plan is not None and len(plan.variants) > 3
    shell = _get(audience_preview.url)
    assert shell.count('<option value="v') == len(plan.variants)
    small = min(plan.variants, key=lambda v: len(v.urls))
    chosen = _get(audience_preview.url + f"?variant={small.id}")
    assert f'src="/email.html?variant={small.id}"' in chosen
    html = _get(audience_preview.url + f"email.html?variant={small.id}")
    assert html.count('class="headline"') == len(small.urls) < 21


def test_subscriber_edition_matches_their_interests(audience_preview: PreviewServer) -> None:
    shell = _get(audience_preview.url + "?subscriber=nodira%40example.org")
    assert "nodira@example.org: Uzbekistan" in shell
    text_part = shell.split('<pre id="text">')[1]
    assert "UZBEKISTAN" in text_part and "REGIONAL" in text_part and "KAZAKHSTAN" not in text_part
    gone = _get(audience_preview.url + "?subscriber=former%40example.org")
    assert "(unsubscribed: would not be sent)" in gone
    unknown = _get(audience_preview.url + "?subscriber=who%40example.org")
    assert "no subscriber &#39;who@example.org&#39;: showing the full edition" in unknown


@pytest.mark.browser
def test_choosing_a_variant_in_the_browser_changes_the_frames(
    audience_preview: PreviewServer, browser
) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(audience_preview.url)
    full = page.frame_locator("iframe#desktop").locator("h3.headline").count()
    page.fill("#subscriber", "gulnara@example.org")
    page.click("text=Show their edition")
    page.wait_for_url("**/?subscriber=*")
    frame = page.frame_locator("iframe#desktop")
    frame.locator("h2", has_text="Turkmenistan").wait_for()
    assert [t.lower() for t in frame.locator("h2").all_inner_texts()] == [
        "turkmenistan",
        "regional",
    ]
    assert frame.locator("h3.headline").count() < full


@pytest.fixture
def desk(settings: Settings) -> Iterator[PreviewServer]:
    from newsletter.compose.issuefiles import build_and_write
    from newsletter.compose.select import ComposeOptions

    build_and_write(settings.issue_config(), ComposeOptions(DAY))
    server = PreviewServer(settings, DAY, host="127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _issue_urls(settings: Settings) -> list[str]:
    import json

    data = json.loads((settings.issues_dir / DAY.isoformat() / "issue.json").read_text())
    return [a["url"] for s in data["sections"] for a in s["articles"]]


@pytest.mark.browser
def test_the_editors_desk_edits_from_buttons_and_fits_a_phone(
    desk: PreviewServer, settings: Settings, browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import json

    data = json.loads((settings.issues_dir / DAY.isoformat() / "issue.json").read_text())
    kazakhstan = data["sections"][0]["articles"]
    second, third = kazakhstan[1], kazakhstan[2]
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(desk.url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    page.screenshot(path=str(tmp_path / "desk-375.png"), full_page=True)
    page.get_by_role("button", name=f"Drop: {second['title']}").click()
    page.wait_for_load_state()
    assert second["url"] not in _issue_urls(settings)
    mobile = page.frame_locator("iframe#mobile")
    mobile.locator("h1").wait_for()
    assert second["title"] not in page.frame_locator("iframe#mobile").locator("body").inner_text()
    page.get_by_role("button", name=f"Up: {third['title']}").click()
    page.wait_for_load_state()
    assert _issue_urls(settings)[0] == third["url"]
    page.get_by_label("Intro (Markdown, above the sections)").fill(
        "**A quiet week** on the steppe."
    )
    page.get_by_role("button", name="Save intro").click()
    page.wait_for_load_state()
    body = page.frame_locator("iframe#desktop").locator("body")
    body.get_by_text("A quiet week").wait_for()
    page.get_by_role("button", name=f"Restore: {second['url']}").click()
    page.wait_for_load_state()
    assert second["url"] in _issue_urls(settings)


def test_the_desk_takes_edits_from_its_own_page_only(
    desk: PreviewServer, settings: Settings
) -> None:
    import httpx

    urls = _issue_urls(settings)
    port = desk.url.rsplit(":", 1)[1].strip("/")
    form = {"verb": "drop", "article": urls[0]}
    for headers in (
        {"Origin": "http://evil.example"},
        {},  # no Origin: not a browser form of ours
        {"Origin": f"http://127.0.0.1:{port}", "Host": "evil.example"},
    ):
        refused = httpx.post(desk.url + "__edit", data=form, headers=headers, timeout=10)
        assert refused.status_code in (403, 421), headers
    assert _issue_urls(settings) == urls
    ok = httpx.post(
        desk.url + "__edit", data=form, headers={"Origin": f"http://127.0.0.1:{port}"}, timeout=10
    )
    assert ok.status_code == 303 and urls[0] not in _issue_urls(settings)
    assert httpx.get(desk.url + "__edit", timeout=10).status_code == 404  # GET changes nothing
