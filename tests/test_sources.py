"""Article sources: RSS/Atom from files and real HTTP, Markdown folders, failures as warnings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.compose.fetch import FetchLimits
from newsletter.compose.select import read_sources
from newsletter.compose.sources import load_feed, load_markdown_folder, parse_markdown_file
from newsletter.config import Settings
from newsletter.errors import SourceError
from tests.conftest import rss

ALMATY = ZoneInfo("Asia/Almaty")

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Atom test</title><link href="https://atom.example.org/"/>
  <id>urn:atom-test</id><updated>2026-11-15T10:00:00Z</updated>
  <entry>
    <title>Bishkek Opens a Library</title>
    <link href="https://atom.example.org/library"/>
    <id>urn:atom-test:1</id>
    <updated>2026-11-15T10:00:00Z</updated>
    <category term="Culture"/>
    <summary>Short summary.</summary>
    <content type="html">&lt;p&gt;The full text of the story.&lt;/p&gt;</content>
  </entry>
</feed>
"""


def test_rss_uses_content_encoded_when_present_else_the_summary(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(
        rss(
            [
                {
                    "title": "Full",
                    "link": "https://e.example.org/1",
                    "date": "Mon, 16 Nov 2026 10:00:00 +0000",
                    "summary": "teaser",
                    "body": "<p>The whole story.</p>",
                },
                {
                    "title": "Short",
                    "link": "https://e.example.org/2",
                    "date": "Mon, 16 Nov 2026 09:00:00 +0000",
                    "summary": "<p>Only a summary.</p>",
                },
            ]
        )
    )
    items = load_feed(str(feed)).items
    assert [i.content_html for i in items] == ["<p>The whole story.</p>", "<p>Only a summary.</p>"]
    assert items[0].summary_html == "teaser"
    assert items[0].published == datetime(2026, 11, 16, 10, 0, tzinfo=UTC)


def test_atom_entries_are_read_with_categories(tmp_path: Path) -> None:
    feed = tmp_path / "atom.xml"
    feed.write_text(ATOM)
    (item,) = load_feed(str(feed)).items
    assert item.title == "Bishkek Opens a Library"
    assert item.url == "https://atom.example.org/library"
    assert "The full text" in item.content_html
    assert item.categories == ["Culture"]


def test_feed_is_fetched_over_http(http_root: tuple[str, Path]) -> None:
    base, root = http_root
    (root / "feed.xml").write_text(
        rss(
            [
                {
                    "title": "Over HTTP",
                    "link": "https://e.example.org/h",
                    "date": "Mon, 16 Nov 2026 10:00:00 +0000",
                    "body": "<p>x</p>",
                }
            ]
        )
    )
    assert [i.title for i in load_feed(f"{base}/feed.xml").items] == ["Over HTTP"]


def test_http_error_names_the_url_and_status(http_root: tuple[str, Path]) -> None:
    base, _ = http_root
    with pytest.raises(SourceError) as info:
        load_feed(f"{base}/status/503")
    assert f"{base}/status/503" in str(info.value) and "HTTP 503" in str(info.value)


def test_unreachable_url_is_a_source_error(closed_port: int) -> None:
    with pytest.raises(SourceError, match=r"cannot connect to 127\.0\.0\.1"):
        load_feed(f"http://127.0.0.1:{closed_port}/feed.xml", limits=FetchLimits(timeout=2))


def test_malformed_xml_without_any_item_names_the_file_and_line(tmp_path: Path) -> None:
    feed = tmp_path / "broken.xml"
    feed.write_text('<?xml version="1.0"?>\n<rss version="2.0"><channel>\n<title>A</title\n')
    with pytest.raises(SourceError) as info:
        load_feed(str(feed))
    assert str(info.value) == f"{feed}:3: malformed XML: unclosed token"


def test_a_sloppy_feed_is_read_leniently_with_a_warning(tmp_path: Path) -> None:
    feed = tmp_path / "sloppy.xml"
    feed.write_text(
        '<?xml version="1.0"?>\n<rss version="2.0"><channel><title>T</title>\n'
        "<item><title>Caf&eacute; opens&nbsp;today</title><link>https://a.example/1</link>"
        "<pubDate>Mon, 16 Nov 2026 10:00:00 GMT</pubDate>"
        "<description>Tea &amp; cake &mdash; and &copy; notes</description></item>\n"
        "<item><title>Second</title><link>https://a.example/2</link>"
        "<pubDate>Mon, 16 Nov 2026 11:00:00 GMT</pubDate></item>\n</channel></rss>\n"
    )
    result = load_feed(str(feed))
    assert [i.title for i in result.items] == ["Café opens today", "Second"]
    assert "Tea & cake — and © notes" in result.items[0].content_html
    assert result.warnings == [
        f"{feed}:3: not well-formed XML (undefined entity); read leniently, 2 item(s) found"
    ]


def test_items_without_date_or_link_are_skipped_with_a_warning(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(
        rss(
            [
                {"title": "No date", "link": "https://e.example.org/1", "date": ""},
                {
                    "title": "Relative",
                    "link": "/relative/2",
                    "date": "Mon, 16 Nov 2026 10:00:00 +0000",
                },
            ]
        )
    )
    result = load_feed(str(feed))
    assert [i.url for i in result.items] == ["https://feed.example.org/relative/2"]
    assert (
        len(result.warnings) == 1
        and "'No date'" in result.warnings[0]
        and "no publication date" in result.warnings[0]
    )


def _md(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_markdown_front_matter_and_body(tmp_path: Path) -> None:
    path = _md(
        tmp_path,
        "a.md",
        "---\ntitle: Story\ndate: 2026-11-15\nurl: https://e.example.org/story\ncountry: Kyrgyzstan\n"
        "topics: [transport, tech]\nimage: pic.jpg\nimage_alt: A bus\n---\n"
        "Intro with a [link](/other).\n\n## Sub-heading\n\n- one\n- two\n",
    )
    item = parse_markdown_file(path, tz=ALMATY)
    assert (
        item.title == "Story"
        and item.country == "Kyrgyzstan"
        and item.topics == ["transport", "tech"]
    )
    assert item.published == datetime(2026, 11, 15, tzinfo=ALMATY)
    assert "<h2>Sub-heading</h2>" in item.content_html and "<li>one</li>" in item.content_html
    assert item.image == "https://e.example.org/pic.jpg"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("title: x\n---\nbody", ":1: no front matter"),
        ("---\ntitle: [unclosed\ndate: 2026-11-15\n---\n", ":3: bad front matter"),
        ("---\ntitle: x\ndate: 2026-11-15\n---\n", "front matter has no 'url'"),
        (
            "---\ntitle: x\ndate: someday\nurl: https://e.example.org/x\n---\n",
            "'date' is not an ISO date",
        ),
        (
            "---\ntitle: x\ndate: 2026-11-15\nurl: /x\n---\n",
            "'url' must be an absolute http(s) URL",
        ),
        (
            "---\ntitle: x\ndate: 2026-11-15\nurl: https://e.example.org/x\nauthor: me\n---\n",
            "unknown front-matter key 'author'",
        ),
        ("---\ntitle: x\n", "not closed"),
    ],
)
def test_bad_front_matter_names_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = _md(tmp_path, "bad.md", text)
    with pytest.raises(SourceError) as info:
        parse_markdown_file(path, tz=ALMATY)
    assert str(info.value).startswith(str(path)) and expected in str(info.value)


def test_a_bad_markdown_file_is_skipped_and_the_others_read(tmp_path: Path) -> None:
    _md(
        tmp_path,
        "good.md",
        "---\ntitle: Good\ndate: 2026-11-15\nurl: https://e.example.org/g\n---\nText.\n",
    )
    _md(tmp_path, "bad.md", "---\ntitle: [\n---\n")
    (tmp_path / "latin1.md").write_bytes("---\ntitle: caf\xe9\n---\n".encode("latin-1"))
    result = load_markdown_folder(str(tmp_path), tz=ALMATY)
    assert [i.title for i in result.items] == ["Good"]
    assert len(result.warnings) == 2
    assert any("bad.md" in w for w in result.warnings) and any(
        "not UTF-8" in w for w in result.warnings
    )


def test_failed_source_is_a_warning_and_the_others_still_count(
    settings: Settings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text("<rss><channel><item></channel>")
    sources = [
        (str(broken), False),
        (str(tmp_path / "missing.xml"), False),
        (settings.location("sources/articles"), True),
    ]
    items, warnings = read_sources(settings.issue_config(), sources)
    assert len(items) >= 8
    assert any(str(broken) in w and "not well-formed XML" in w for w in warnings)
    assert any("missing.xml" in w and "cannot read" in w for w in warnings)


def test_image_urls_other_than_http_are_dropped_with_a_warning(tmp_path: Path) -> None:
    items = "".join(
        f"<item><title>Item {n}</title><link>https://a.example/{n}</link>"
        f"<pubDate>Mon, 16 Nov 2026 10:00:00 GMT</pubDate>"
        f'<enclosure url="{url}" type="image/png" length="1"/></item>'
        for n, url in enumerate(
            [
                "javascript:alert(1)",
                "data:image/svg+xml;base64,PHN2Zz4=",
                "file:///etc/passwd",
                " JaVaScRiPt:alert(2)",
                "/pic.png",
                "https://img.example/ok.png",
            ]
        )
    )
    feed = tmp_path / "images.xml"
    feed.write_text(f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>')
    result = load_feed(str(feed))
    assert [i.image for i in result.items] == [
        None,
        None,
        None,
        None,
        "https://a.example/pic.png",
        "https://img.example/ok.png",
    ]
    dropped = [w for w in result.warnings if "image URL" in w]
    assert len(dropped) == 4 and all("dropped (http and https only)" in w for w in dropped)
    assert "item 1 ('Item 0'): image URL with scheme 'javascript' dropped" in dropped[0]
    folder = tmp_path / "md"
    folder.mkdir()
    (folder / "a.md").write_text(
        "---\ntitle: A\ndate: 2026-11-15\nurl: https://e.example.org/a\n"
        "image: 'data:text/html,<script>alert(1)</script>'\n---\nBody\n"
    )
    loaded = load_markdown_folder(str(folder), tz=UTC)
    assert loaded.items[0].image is None
    assert any("a.md: image URL with scheme 'data' dropped" in w for w in loaded.warnings)


def test_characters_xml_forbids_are_stripped_from_titles(tmp_path: Path) -> None:
    folder = tmp_path / "md"
    folder.mkdir()
    (folder / "a.md").write_text(
        '---\ntitle: "Bad\\x01 \\x0b title\\uFFFE"\ndate: 2026-11-15\nurl: https://e.example.org/a\n---\nB\n'
    )
    (item,) = load_markdown_folder(str(folder), tz=UTC).items
    assert item.title == "Bad title"
