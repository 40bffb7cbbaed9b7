"""The one way to render an edition: the issue reduced to an interest set's articles, rendered
once per distinct article set (a *variant*) however many subscribers, senders or previews ask,
with one premailer pass for the whole issue (:class:`~newsletter.compose.inline.Inliner`).

Used by the send (each variant becomes a message template), the preview (a variant or one
subscriber's edition) and ``newsletter segments`` (sizes per variant).
"""

from __future__ import annotations

import threading

from newsletter.audience.segments import edition, edition_urls, variant_id
from newsletter.compose.inline import Inliner, inline_css
from newsletter.compose.render import (
    PLACEHOLDERS,
    RenderedIssue,
    RenderOptions,
    email_html_raw,
    render_issue,
)
from newsletter.core.interests import Vocabulary
from newsletter.core.models import Issue


class Editions:
    """The rendered variants of one issue, made on first use and kept (thread-safe)."""

    def __init__(
        self,
        issue: Issue,
        vocabulary: Vocabulary,
        render: RenderOptions,
        links: tuple[str, str] = PLACEHOLDERS,
        *,
        web: bool = True,
    ) -> None:
        """``links``: the unsubscribe and preferences URLs of email mode (the send passes its
        secret slot marks; previews keep the placeholders). ``web=False``: no web pages (a
        send does not need them)."""
        self.issue, self.vocabulary, self.render = issue, vocabulary, render
        self.links, self.web = links, web
        self._rendered: dict[str, RenderedIssue] = {}
        self._by_interests: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._inliner: Inliner | None = None
        self._learned = False

    def variant_of(self, interests: str) -> tuple[str, tuple[str, ...]]:
        """(variant id, article URLs) of an interest set; ("", ()) when nothing matches."""
        known = self._by_interests.get(interests)
        if known is None:
            urls = edition_urls(self.issue, interests, self.vocabulary)
            known = self._by_interests[interests] = (variant_id(urls) if urls else "", urls)
        return known

    def rendered(self, urls: tuple[str, ...]) -> tuple[str, RenderedIssue]:
        """(variant id, the rendered edition) of an article set."""
        vid = variant_id(urls)
        with self._lock:
            done = self._rendered.get(vid)
        if done is None:
            done = render_issue(
                edition(self.issue, urls), self.render, self.links, web=self.web, inline=self.inline
            )
            with self._lock:
                done = self._rendered.setdefault(vid, done)
        return vid, done

    def inline(self, html: str) -> str:
        """An edition's email HTML inlined as premailer would, premailer run once per issue:
        on the full issue the first time, replayed on each edition after."""
        with self._lock:
            if not self._learned:
                full = email_html_raw(self.issue, self.render, self.links)
                self._inliner, _ = Inliner.learn(full)
                self._learned = True
        replayed = self._inliner.apply(html) if self._inliner is not None else None
        return replayed if replayed is not None else inline_css(html)

    def for_interests(self, interests: str) -> tuple[str, RenderedIssue | None]:
        """(variant id, rendered edition) of an interest set; ("", None) when nothing matches."""
        vid, urls = self.variant_of(interests)
        if not vid:
            return "", None
        return self.rendered(urls)

    @property
    def count(self) -> int:
        return len(self._rendered)
