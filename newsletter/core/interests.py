"""Subscriber interests: tags from the configured vocabulary (countries, Regional, topics).

Interests are stored in a canonical string: the tags in vocabulary order joined by ``;``
(``"Kazakhstan;energy"``); the empty string means "everything".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from newsletter.errors import UnknownInterestError

SEPARATORS = re.compile(r"[;|]")


@dataclass(frozen=True)
class Vocabulary:
    countries: tuple[str, ...]
    regional: str
    topics: tuple[str, ...]
    _parsed: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def tags(self) -> tuple[str, ...]:
        return (*self.countries, self.regional, *self.topics)

    def canonical(self, tags: Iterable[str]) -> str:
        """Canonical string of ``tags`` (case-insensitive); raises UnknownInterestError."""
        lookup = {t.lower(): t for t in self.tags}
        chosen: set[str] = set()
        for raw in tags:
            tag = " ".join(raw.split())
            if not tag:
                continue
            known = lookup.get(tag.lower())
            if known is None:
                raise UnknownInterestError(tag, self.tags)
            chosen.add(known)
        return ";".join(t for t in self.tags if t in chosen)

    def parse(self, text: str) -> str:
        """Canonical string from ``"kazakhstan; Energy|economy"`` (memoised: imports repeat)."""
        known = self._parsed.get(text)
        if known is None:
            known = self.canonical(SEPARATORS.split(text))
            if len(self._parsed) < 100_000:
                self._parsed[text] = known
        return known


def split(canonical: str) -> list[str]:
    return [t for t in canonical.split(";") if t]
