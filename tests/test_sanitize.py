"""Hostile HTML from feeds is cleaned; relative URLs become absolute."""

from __future__ import annotations

from newsletter.compose.sanitize import clean_html, clean_text, truncate

HOSTILE = """
<h1>Headline inside the body</h1>
<p onclick="steal()" style="position:absolute">Text <a href="javascript:alert(1)">bad</a>
<a href="JaVaScRiPt:alert(2)">bad2</a> <a href="/story/2">relative</a> <img src="pic.png" onerror="x()"></p>
<script>alert('x')</script><iframe src="https://evil.example.org/">frame text</iframe>
<form action="https://evil.example.org/"><input name="card"><button>Pay</button></form>
<link rel="stylesheet" href="https://evil.example.org/x.css"><style>body{display:none}</style>
<object data="x.swf"></object><svg onload="x()"><circle/></svg>
<ul><li>kept item</li></ul><!-- comment -->
"""


def test_hostile_html_is_neutralised() -> None:
    out = clean_html(HOSTILE, "https://news.example.org/a/b")
    lowered = out.lower()
    for bad in (
        "<script",
        "onclick",
        "onerror",
        "onload",
        "javascript:",
        "<iframe",
        "<form",
        "<input",
        "<button",
        "<link",
        "<style",
        "stylesheet",
        "<object",
        "<svg",
        "position:",
        "<!--",
        "frame text",
        "alert(",
    ):
        assert bad not in lowered, bad
    assert '<a href="https://news.example.org/story/2">relative</a>' in out
    assert '<img src="https://news.example.org/a/pic.png">' in out
    assert "<li>kept item</li>" in out


def test_body_headings_are_demoted_below_the_article_headline() -> None:
    out = clean_html("<h1>a</h1><h2>b</h2><h3>c</h3><h5>d</h5>", "https://e.example.org/")
    assert out == "<h4>a</h4><h4>b</h4><h4>c</h4><h5>d</h5>"


def test_clean_text_strips_tags_and_entities() -> None:
    assert clean_text("<b>Tom &amp; Jerry</b>\n <script>x()</script> go") == "Tom & Jerry go"


def test_truncate_cuts_at_a_word_boundary() -> None:
    assert truncate("one two three four", 12) == "one two…"
    assert truncate("short", 12) == "short"
