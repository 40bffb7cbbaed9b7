"""Plain data passed between the pipeline stages. No behaviour beyond (de)serialisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def date_text(day: date) -> str:
    """``15 December 2025``: the way the issue shows dates, whatever the locale."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


@dataclass(frozen=True)
class Article:
    """One article, as every later stage sees it: sanitised, classified, timezone-aware."""

    title: str
    url: str
    published: datetime
    body_html: str
    summary: str
    country: str
    topics: tuple[str, ...]
    source: str
    guid: str = ""
    image: str | None = None
    image_alt: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "url": self.url,
            "country": self.country,
            "topics": list(self.topics),
            "published": self.published.isoformat(),
            "summary": self.summary,
            "image": self.image,
            "image_alt": self.image_alt,
            "guid": self.guid,
            "source": self.source,
            "body_html": self.body_html,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Article:
        return cls(
            title=data["title"],
            url=data["url"],
            published=datetime.fromisoformat(data["published"]),
            body_html=data.get("body_html", ""),
            summary=data.get("summary", ""),
            country=data["country"],
            topics=tuple(data.get("topics", ())),
            source=data.get("source", ""),
            guid=data.get("guid", ""),
            image=data.get("image"),
            image_alt=data.get("image_alt", ""),
        )


@dataclass(frozen=True)
class RateRow:
    """One currency of the rates header: ``value`` is base units per one unit of ``currency``."""

    currency: str
    base: str
    value: float | None
    change_pct: float | None
    value_text: str
    change_text: str
    direction: str  # "up", "down", "flat" or "" when unknown

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "base": self.base,
            "value": self.value,
            "change": self.change_pct,
            "value_text": self.value_text,
            "change_text": self.change_text,
            "direction": self.direction,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RateRow:
        return cls(
            currency=data["currency"],
            base=data["base"],
            value=data.get("value"),
            change_pct=data.get("change"),
            value_text=data.get("value_text", ""),
            change_text=data.get("change_text", ""),
            direction=data.get("direction", ""),
        )


@dataclass(frozen=True)
class RatesHeader:
    base: str
    day: date | None
    rows: tuple[RateRow, ...]

    @property
    def available(self) -> bool:
        return self.day is not None and any(r.value is not None for r in self.rows)


@dataclass(frozen=True)
class Section:
    country: str
    slug: str
    articles: tuple[Article, ...]


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


@dataclass
class Issue:
    """What an issue holds before rendering: the manifest's content."""

    day: date
    title: str
    date_text: str
    window: Window
    rates: RatesHeader
    sections: list[Section]
    warnings: list[str] = field(default_factory=list)
    intro_html: str = ""  # the editor's note (issues/D/plan.toml), sanitised HTML

    @property
    def articles(self) -> list[Article]:
        return [a for s in self.sections for a in s.articles]
