"""Segments: each subscriber's edition, and variants rendered once per distinct article set."""

from __future__ import annotations

from datetime import date

import pytest

from newsletter.audience.importer import import_csv
from newsletter.audience.segments import edition, edition_urls, plan_from_counts, plan_list
from newsletter.compose.issuefiles import build_issue
from newsletter.compose.select import ComposeOptions
from newsletter.config import Settings
from newsletter.core.interests import Vocabulary
from newsletter.core.models import Issue
from newsletter.storage.db import Database
from tests.conftest import REPO


@pytest.fixture
def issue(settings: Settings) -> Issue:
    return build_issue(settings.issue_config(), ComposeOptions(date(2026, 11, 16))).issue


def _countries(issue: Issue, urls: tuple[str, ...]) -> set[str]:
    return {a.country for a in issue.articles if a.url in urls}


def test_no_interests_means_everything(issue: Issue, vocabulary: Vocabulary) -> None:
    assert edition_urls(issue, "", vocabulary) == tuple(a.url for a in issue.articles)


def test_a_country_follower_gets_that_country_and_regional(
    issue: Issue, vocabulary: Vocabulary
) -> None:
    urls = edition_urls(issue, "Kazakhstan", vocabulary)
    assert _countries(issue, urls) == {"Kazakhstan", "Regional"}
    assert len(urls) == 4 + 3


def test_topic_followers_get_matching_articles_from_every_country(
    issue: Issue, vocabulary: Vocabulary
) -> None:
    urls = edition_urls(issue, "energy", vocabulary)
    arts = [a for a in issue.articles if a.url in urls]
    assert arts and all("energy" in a.topics for a in arts)
    assert not any(a.country == "Regional" and "energy" not in a.topics for a in arts)


def test_interests_combine_as_a_union(issue: Issue, vocabulary: Vocabulary) -> None:
    both = set(edition_urls(issue, "Tajikistan;transport", vocabulary))
    assert both == set(edition_urls(issue, "Tajikistan", vocabulary)) | set(
        edition_urls(issue, "transport", vocabulary)
    )


def test_same_article_set_shares_one_variant_and_empty_editions_are_skipped(
    issue: Issue, vocabulary: Vocabulary
) -> None:
    counts = [
        ("", 10),
        ("Kazakhstan", 5),
        ("Kazakhstan;Regional", 2),
        ("security", 3),
        ("Uzbekistan", 1),
    ]
    plan = plan_from_counts(issue, counts, vocabulary)
    assert plan.skipped == 3 and plan.skipped_interest_sets == ["security"]
    assert plan.subscribers == 18
    assert len(plan.variants) == 3  # everything; Kazakhstan (+Regional, same set); Uzbekistan
    kz = plan.variant(plan.by_interests["Kazakhstan"])
    assert kz.subscribers == 7 and sorted(kz.interest_sets) == ["Kazakhstan", "Kazakhstan;Regional"]
    assert plan.variants[0].full and plan.variants[0].subscribers == 10


def test_edition_keeps_section_order_and_drops_empty_sections(
    issue: Issue, vocabulary: Vocabulary
) -> None:
    cut = edition(issue, edition_urls(issue, "Uzbekistan", vocabulary))
    assert [s.country for s in cut.sections] == ["Uzbekistan", "Regional"]
    assert cut.rates == issue.rates and cut.title == issue.title


def test_plan_list_groups_active_members_by_interests(
    db: Database, issue: Issue, vocabulary: Vocabulary
) -> None:
    report = import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", vocabulary)
    assert report.added == 20
    with db.connect() as conn:
        plan = plan_list(conn, issue, "weekly", vocabulary)
    # 20 rows: 1 unsubscribed and 1 unconfirmed are not planned; 1 (security) has nothing this week
    assert plan.subscribers == 17 and plan.skipped == 1
    distinct_interest_sets = sum(len(v.interest_sets) for v in plan.variants)
    assert len(plan.variants) <= distinct_interest_sets < plan.subscribers
