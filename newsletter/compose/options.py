"""What composing and building an issue need to know, as one small frozen object.

Built from the settings at the edge (:meth:`newsletter.config.Settings.issue_config`); every path
and location in it is already resolved against the workspace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path

from newsletter.compose.render import RenderOptions


@dataclass(frozen=True)
class FetchLimits:
    """How a feed or document is fetched (:mod:`newsletter.compose.fetch`)."""

    timeout: float = 20.0  # seconds for the whole fetch
    max_bytes: int = 10_000_000  # as received, and again as decompressed
    max_redirects: int = 5
    allow_private: bool = False  # may a redirect lead to a non-public address


@dataclass(frozen=True)
class IssueConfig:
    issues_dir: Path
    render: RenderOptions
    rates_history: Path  # where every day of rates fetched is kept
    title: str = "Central Asia Weekly"
    timezone: str = "UTC"
    tz: tzinfo = UTC
    window_days: int = 7
    summary_chars: int = 300
    countries: tuple[str, ...] = ()
    regional: str = "Regional"
    topics: tuple[str, ...] = ()
    topic_aliases: dict[str, str] = field(default_factory=dict)
    feeds: tuple[str, ...] = ()  # resolved locations: URLs, or absolute paths
    markdown: tuple[str, ...] = ()  # absolute paths of Markdown folders
    fetch: FetchLimits = field(default_factory=FetchLimits)  # every URL: deadline, caps
    rates_source: str = ""  # resolved location, or "" for none
    rates_base: str = "USD"
    rates_currencies: tuple[str, ...] = ()
    max_html_kb: float = 102.0
    max_text_line: int = 78
    strict: bool = False

    @property
    def all_countries(self) -> list[str]:
        return [*self.countries, self.regional]
