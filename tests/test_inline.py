"""premailer once per issue: every edition assembled from the learned pass is byte for byte what
premailer gives it alone, and what cannot be replayed falls back to premailer."""

from __future__ import annotations

import itertools
import time
from datetime import date

import pytest

from newsletter.audience.editions import Editions
from newsletter.audience.segments import edition, edition_urls
from newsletter.compose import inline
from newsletter.compose.inline import Inliner, inline_css
from newsletter.compose.issuefiles import build_issue
from newsletter.compose.render import email_html_raw, render_issue
from newsletter.compose.select import ComposeOptions
from newsletter.config import Settings
from newsletter.core.models import Issue

DAY = date(2026, 11, 16)


def _variants(issue: Issue, settings: Settings) -> list[tuple[str, ...]]:
    """Every distinct edition of the sample for interest sets of up to two tags (and none)."""
    vocabulary = settings.vocabulary()
    found: dict[tuple[str, ...], None] = {}
    for size in (0, 1, 2):
        for tags in itertools.combinations(vocabulary.tags, size):
            urls = edition_urls(issue, ";".join(tags), vocabulary)
            if urls:
                found.setdefault(urls)
    return list(found)


def test_every_variant_of_the_sample_is_byte_identical_to_premailer_alone(
    settings: Settings,
) -> None:
    issue = build_issue(settings.issue_config(), ComposeOptions(DAY)).issue
    options = settings.render_options()
    inliner, full = Inliner.learn(email_html_raw(issue, options))
    assert inliner is not None, "the bundled template's CSS can be replayed"
    assert full == inline_css(email_html_raw(issue, options))
    variants = _variants(issue, settings)
    assert len(variants) >= 10
    for urls in variants:
        raw = email_html_raw(edition(issue, urls), options)
        replayed = inliner.apply(raw)
        assert replayed is not None, f"variant {urls} has an element the full issue lacks"
        assert replayed == inline_css(raw)


def test_editions_render_each_variant_exactly_as_before_with_one_premailer_pass(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    issue = build_issue(settings.issue_config(), ComposeOptions(DAY)).issue
    options = settings.render_options()
    variants = _variants(issue, settings)
    before = [render_issue(edition(issue, urls), options, web=False) for urls in variants]
    passes = []
    real = inline.Premailer

    def counted(*args: object, **kwargs: object) -> object:
        passes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(inline, "Premailer", counted)
    editions = Editions(issue, settings.vocabulary(), options, web=False)
    started = time.perf_counter()
    after = [editions.rendered(urls)[1] for urls in variants]
    elapsed = time.perf_counter() - started
    assert after == before
    # one pass over the full issue (and one parser object reading its <style> rules)
    assert len(passes) == 2, f"premailer ran {len(passes)} times for {len(variants)} variants"
    print(f"{len(variants)} variants in {elapsed * 1000:.0f} ms")


def test_css_that_looks_at_siblings_is_left_to_premailer(settings: Settings) -> None:
    issue = build_issue(settings.issue_config(), ComposeOptions(DAY)).issue
    options = settings.render_options()
    for rule in (".article + .article { color: #aa0000; }", "td:first-child { color: #aa0000; }"):
        raw = email_html_raw(issue, options).replace("</style>", rule + "\n</style>", 1)
        inliner, inlined = Inliner.learn(raw)
        assert inliner is None
        assert inlined == inline_css(raw)


def test_an_element_the_issue_does_not_have_falls_back_to_premailer(settings: Settings) -> None:
    issue = build_issue(settings.issue_config(), ComposeOptions(DAY)).issue
    options = settings.render_options()
    inliner, _ = Inliner.learn(email_html_raw(issue, options))
    assert inliner is not None
    raw = email_html_raw(issue, options).replace(
        '<td class="footer"', '<td class="footer" data-extra="1"', 1
    )
    assert raw != email_html_raw(issue, options)
    assert inliner.apply(raw) is None
    editions = Editions(issue, settings.vocabulary(), options)
    assert editions.inline(raw) == inline_css(raw)


def test_deeply_nested_markup_neither_crashes_nor_differs() -> None:
    depth = 5000
    body = "<div class='a'>" * depth + "x" + "</div>" * depth
    html = (
        "<!DOCTYPE html><html><head><style>.a { color: #112233; }</style></head>"
        f"<body>{body}</body></html>"
    )
    inliner, inlined = Inliner.learn(html)
    assert inliner is not None
    assert inlined == inline_css(html)
    assert inliner.apply(html) == inlined
