"""Segments: which edition each subscriber gets, planned per distinct variant.

A subscriber's edition holds the articles whose country, or any of whose topics, is among their
interests; no interests means everything; Regional articles go to everyone who follows any
country (or Regional itself). Subscribers whose article set is identical share one **variant**,
rendered once. Planning reads one ``GROUP BY interests`` row per distinct interest set, so its
cost grows with the number of distinct interest sets, not with the number of subscribers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from newsletter.audience.subscribers import list_id
from newsletter.core.interests import Vocabulary, split
from newsletter.core.models import Issue, Section
from newsletter.core.states import SubscriberStatus
from newsletter.storage.db import memberships, subscribers


def edition_urls(issue: Issue, interests: str, vocabulary: Vocabulary) -> tuple[str, ...]:
    """The URLs of the articles a subscriber with these interests gets, in issue order."""
    tags = set(split(interests))
    if not tags:
        return tuple(a.url for a in issue.articles)
    follows_country = bool(tags & (set(vocabulary.countries) | {vocabulary.regional}))
    chosen = []
    for article in issue.articles:
        if (
            article.country in tags
            or tags.intersection(article.topics)
            or (article.country == vocabulary.regional and follows_country)
        ):
            chosen.append(article.url)
    return tuple(chosen)


def variant_id(urls: Iterable[str]) -> str:
    """A short stable name for an article set."""
    return "v" + hashlib.sha1("\n".join(urls).encode()).hexdigest()[:8]


def edition(issue: Issue, urls: Iterable[str]) -> Issue:
    """The issue reduced to these articles (sections without articles dropped)."""
    wanted = set(urls)
    sections = []
    for section in issue.sections:
        kept = tuple(a for a in section.articles if a.url in wanted)
        if kept:
            sections.append(Section(section.country, section.slug, kept))
    return replace(issue, sections=sections, warnings=[])


@dataclass
class Variant:
    id: str
    urls: tuple[str, ...]
    interest_sets: list[str] = field(default_factory=list)
    subscribers: int = 0
    full: bool = False  # the whole issue

    def per_section(self, issue: Issue) -> dict[str, int]:
        urls = set(self.urls)
        return {
            s.country: n for s in issue.sections if (n := sum(a.url in urls for a in s.articles))
        }


@dataclass
class VariantPlan:
    variants: list[Variant]
    skipped: int = 0  # subscribers whose edition would be empty
    skipped_interest_sets: list[str] = field(default_factory=list)
    by_interests: dict[str, str] = field(default_factory=dict)  # canonical interests -> variant id

    @property
    def subscribers(self) -> int:
        return sum(v.subscribers for v in self.variants)

    def variant(self, variant: str) -> Variant:
        for v in self.variants:
            if v.id == variant:
                return v
        raise KeyError(variant)


def plan_from_counts(
    issue: Issue, counts: Iterable[tuple[str, int]], vocabulary: Vocabulary
) -> VariantPlan:
    """Group (interests, subscriber count) pairs into variants."""
    plan = VariantPlan([])
    by_id: dict[str, Variant] = {}
    everything = tuple(a.url for a in issue.articles)
    for interests, count in counts:
        urls = edition_urls(issue, interests, vocabulary)
        if not urls:
            plan.skipped += count
            plan.skipped_interest_sets.append(interests)
            continue
        vid = variant_id(urls)
        variant = by_id.get(vid)
        if variant is None:
            variant = by_id[vid] = Variant(vid, urls, full=urls == everything)
        variant.interest_sets.append(interests)
        variant.subscribers += count
        plan.by_interests[interests] = vid
    plan.variants = sorted(by_id.values(), key=lambda v: (-v.subscribers, v.id))
    return plan


def plan_list(
    conn: Connection, issue: Issue, list_name: str, vocabulary: Vocabulary
) -> VariantPlan:
    """Plan the variants that the active members of a list get for an issue."""
    lid = list_id(conn, list_name)
    rows = conn.execute(
        select(subscribers.c.interests, func.count())
        .join(memberships, memberships.c.subscriber_id == subscribers.c.id)
        .where(memberships.c.list_id == lid, subscribers.c.status == SubscriberStatus.ACTIVE)
        .group_by(subscribers.c.interests)
        .order_by(subscribers.c.interests)
    )
    return plan_from_counts(issue, ((str(i), int(n)) for i, n in rows), vocabulary)
