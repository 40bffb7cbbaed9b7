"""Country inference and topic normalisation, measured on a labelled set written for the tests."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from newsletter.compose.classify import CountryClassifier, normalise_topics
from newsletter.config import DEFAULT_COUNTRIES, DEFAULT_TOPICS
from tests.conftest import DATA, run_cli

LABELLED = yaml.safe_load((DATA / "labelled_articles.yaml").read_text(encoding="utf-8"))
ACCURACY_FLOOR = 0.9  # the README states the measured figure; this guards against regressions


@pytest.fixture
def classifier() -> CountryClassifier:
    return CountryClassifier(DEFAULT_COUNTRIES, "Regional")


def test_labelled_set_is_large_and_covers_every_section() -> None:
    assert len(LABELLED) >= 30
    assert set(Counter(item["country"] for item in LABELLED)) == {*DEFAULT_COUNTRIES, "Regional"}


def test_country_inference_accuracy_on_the_labelled_set(classifier: CountryClassifier) -> None:
    misses = [
        (item["title"], verdict.country, item["country"])
        for item in LABELLED
        if (verdict := classifier.classify(item["title"], item["text"])).country != item["country"]
    ]
    accuracy = 1 - len(misses) / len(LABELLED)
    print(f"\ncountry inference: {len(LABELLED) - len(misses)}/{len(LABELLED)} = {accuracy:.1%}")
    assert accuracy >= ACCURACY_FLOOR, misses


def test_inference_is_deterministic(classifier: CountryClassifier) -> None:
    first = [classifier.classify(i["title"], i["text"]) for i in LABELLED]
    again = [
        CountryClassifier(DEFAULT_COUNTRIES, "Regional").classify(i["title"], i["text"])
        for i in LABELLED
    ]
    assert first == again


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["Economy", "kazakhstan"], "Kazakhstan"),
        (["Uzbekistan", "Tajikistan"], "Regional"),
        (["Central Asia"], "Regional"),
        (["Economy"], None),
    ],
)
def test_categories_naming_a_country_win_over_the_text(
    classifier: CountryClassifier, labels: list[str], expected: str | None
) -> None:
    assert classifier.explicit(labels) == expected
    verdict = classifier.classify("Tashkent news", "Uzbekistan " * 5, labels)
    assert verdict.country == (expected or "Uzbekistan")


def test_demonyms_cities_and_currencies_count(classifier: CountryClassifier) -> None:
    assert (
        classifier.classify("Prices rise", "Shoppers in Khujand paid more somoni").country
        == "Tajikistan"
    )
    assert classifier.classify("Kazakh miners strike", "").country == "Kazakhstan"
    assert (
        classifier.classify("Rail news", "The sum of all parts").country == "Regional"
    )  # 'sum' is a word


def test_ambiguous_words_match_only_as_proper_nouns(classifier: CountryClassifier) -> None:
    assert classifier.mentions("mary had a little lamb")["Turkmenistan"] == 0
    assert classifier.mentions("a new airport in Mary")["Turkmenistan"] == 1


def test_topics_are_normalised_to_the_vocabulary() -> None:
    topics, unknown = normalise_topics(
        ["Oil & Gas", "Railways", "ECONOMY", "Knitting", "climate"],
        DEFAULT_TOPICS,
        {"knitting": "society"},
    )
    assert topics == ("economy", "energy", "transport", "environment", "society")
    assert unknown == []
    _, unknown = normalise_topics(["Astrology"], DEFAULT_TOPICS)
    assert unknown == ["astrology"]


def _seedlike_item(title: str, text: str, day: str) -> str:
    paragraphs = text.split(". ")
    body = (
        f"<p>{paragraphs[0]}.</p><h2>Background</h2><p>{'. '.join(paragraphs[1:]) or text}</p>"
        "<ul><li>first point</li><li>second point</li></ul>"
    )
    link = "https://seed.example.org/" + "-".join(title.lower().split())[:60]
    return (
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid><pubDate>{day}</pubDate>"
        f"<content:encoded><![CDATA[{body}]]></content:encoded></item>"
    )


def test_seedlike_feed_is_grouped_by_country_and_windowed(workspace: Path) -> None:
    inside = LABELLED[::3]  # a spread of countries and the regional stories
    outside = LABELLED[1:3]
    items = [
        _seedlike_item(i["title"], i["text"], "Thu, 12 Nov 2026 08:00:00 +0000") for i in inside
    ]
    items += [
        _seedlike_item(i["title"] + " (old)", i["text"], "Mon, 02 Nov 2026 08:00:00 +0000")
        for i in outside
    ]
    items += [
        _seedlike_item(
            "Future story in Astana", "Astana tomorrow.", "Wed, 18 Nov 2026 08:00:00 +0000"
        )
    ]
    feed = workspace / "seedlike.xml"
    feed.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>Seed-like</title>'
        "<link>https://seed.example.org/</link>" + "".join(items) + "</channel></rss>"
    )
    shutil.rmtree(workspace / "sources" / "articles")
    result = run_cli("build", "--date", "2026-11-16", "--source", str(feed), cwd=workspace)
    assert result.code == 0, result.stderr
    manifest = json.loads((workspace / "issues/2026-11-16/issue.json").read_text())
    got = {a["title"]: s["country"] for s in manifest["sections"] for a in s["articles"]}
    assert got == {i["title"]: i["country"] for i in inside}
    order = [s["country"] for s in manifest["sections"]]
    assert order[-1] == "Regional"
    assert order == [c for c in [*DEFAULT_COUNTRIES, "Regional"] if c in order]
    html = (workspace / "issues/2026-11-16/email.html").read_text()
    assert "Background</h4>" in html and "second point</li>" in html
