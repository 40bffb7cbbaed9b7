"""A few hundred XSS vectors (tests/xss_vectors.py, after OWASP's cheat sheet) through the title,
text, link and image of feed items and Markdown articles: nothing executable survives in
``email.html``, ``index.html`` or the archive pages and feed served by ``newsletter serve``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

import httpx
import pytest

from newsletter.compose.issuefiles import build_and_write
from newsletter.compose.select import ComposeOptions
from newsletter.config import Settings, with_changes
from newsletter.core.tokens import Signer
from newsletter.delivery.transports import MaildirTransport
from newsletter.storage.db import Database
from newsletter.web.app import create_app
from tests.conftest import serve
from tests.xss_vectors import URLS, executable, vectors

DAY = date(2026, 11, 16)
PUBLISHED = "Sun, 15 Nov 2026 10:00:00 GMT"


def _item(n: int, title: str, text: str, link: str, image: str) -> str:
    return (
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
        f"<guid>urn:xss:{n}</guid><pubDate>{PUBLISHED}</pubDate>"
        f"<description>{escape(text)}</description>"
        f'<enclosure url={quoteattr(image)} type="image/png" length="1"/></item>'
    )


def _feeds(folder: Path, every: list[str]) -> list[str]:
    """Feeds of 20 items each (a vector that breaks XML loses one feed, not all), every vector
    in an item's title, text and image, and the URL vectors also as its link."""
    paths = []
    for start in range(0, len(every), 20):
        items = []
        for n, vector in enumerate(every[start : start + 20], start=start):
            safe_link = f"https://news.example/{n}?v={quote(vector[:40])}"
            items.append(
                _item(n, f"Story {n} {vector}", f"<p>Text {n}</p>{vector}", safe_link, vector)
            )
            if vector in URLS or vector.swapcase() in URLS:
                items.append(_item(n + 100_000, f"Link {n}", "<p>x</p>", vector, safe_link))
        path = folder / f"feed{start // 20}.xml"
        path.write_text(
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>XSS</title><link>https://news.example/</link>{''.join(items)}</channel></rss>",
            encoding="utf-8",
        )
        paths.append(str(path))
    return paths


def _markdown(folder: Path, every: list[str]) -> str:
    folder.mkdir()
    for n, vector in enumerate(every):
        (folder / f"a{n}.md").write_text(
            "---\n"
            f"title: {json.dumps('Md ' + str(n) + ' ' + vector)}\n"
            "date: 2026-11-15\n"
            f"url: https://md.example/{n}\n"
            f"image: {json.dumps(vector)}\n"
            "---\n"
            f"Body {n}\n\n{vector}\n",
            encoding="utf-8",
        )
    return str(folder)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_xss_vector_survives_into_the_email_the_web_page_or_the_archive(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    every = vectors()
    assert len(every) >= 200, len(every)
    feeds = _feeds(tmp_path, every)
    markdown = _markdown(tmp_path / "md", every)
    settings = with_changes(
        settings,
        sources={"feeds": feeds, "markdown": [markdown]},
        sender={"base_url": "https://news.example.org"},
    )
    built = build_and_write(settings.issue_config(), ComposeOptions(DAY))
    titles = [a.title for a in built.issue.articles]
    # Not vacuous: most articles made it in, and with them the vectors' text.
    assert sum(t.startswith("Story ") for t in titles) >= 0.9 * len(every), len(titles)
    assert sum(t.startswith("Md ") for t in titles) >= 0.9 * len(every)
    folder = settings.issues_dir / DAY.isoformat()
    pages = {name: (folder / name).read_text("utf-8") for name in ("email.html", "index.html")}
    assert "alert(1)" in pages["index.html"]  # the text is there, as text
    app = create_app(
        settings, db, Signer(b"xss-test-secret-0123456789abcdef"), MaildirTransport(tmp_path / "o")
    )
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for path in ("/archive", f"/archive/{DAY.isoformat()}"):
            response = client.get(path)
            assert response.status_code == 200
            pages[path] = response.text
        feed = client.get("/archive/feed.xml")
    for name, page in pages.items():
        assert executable(page) == [], name
    root = ET.fromstring(feed.content)  # well-formed, whatever the titles held
    assert not [el for el in root.iter() if el.tag.rpartition("}")[2] in ("script", "iframe")]


def test_the_checker_finds_what_it_is_meant_to_find() -> None:
    assert executable("<p>plain <b>text</b> &lt;script&gt;</p>") == []
    assert executable('<img src="data:image/png;base64,AAAA" style="width:10px">') == []
    for unsafe in (
        "<script>x</script>",
        '<img src=x onerror="y">',
        '<a href=" jav&#x09;ascript:alert(1)">x</a>',
        '<a href="data:text/html,x">x</a>',
        '<p style="width: expression(alert(1))">',
        "<style>@import 'x.css';</style>",
        '<meta http-equiv="refresh" content="0;url=x">',
        '<iframe srcdoc="x">',
        "<svg><a xlink:href='javascript:x'>",
    ):
        assert executable(unsafe), unsafe
