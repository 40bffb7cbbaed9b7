"""Which country section an article belongs to, and which topics it has.

Country, in this order (deterministic; documented in docs/classification.md):

1. **Explicit**: the item's categories (feeds) or ``country`` (Markdown) name a configured country
   or the regional section ("Regional", "Central Asia"). One country named: that country; more
   than one: Regional.
2. **Title**: the title mentions (by name, demonym, city, currency, leader or institution) two or
   more countries, or a regional phrase ("Central Asia", "Caspian", "C5"...): Regional. Exactly one
   country: that country, unless the text names two or more other countries and mentions them
   more than twice as often (plus one) as the title's country: then Regional.
3. **Text**: otherwise every mention in the text counts one point for its country. The top country
   wins when it has a clear lead: the runner-up has fewer than ``max(2, top / 2)`` points, no tie,
   and regional phrases do not outnumber it. Otherwise (no mention at all, or several countries
   about equally) the article is Regional.

Topics come from categories / front matter, lower-cased and mapped through aliases onto the
configured vocabulary; unknown ones are reported, never invented.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Words that point to a country. Lower-case entries match in any case; entries with a capital
# letter match only as written (they are also ordinary words: "Mary", "Osh", "Manas").
COUNTRY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Kazakhstan": (
        "kazakhstan",
        "kazakh",
        "kazakhs",
        "kazakhstani",
        "kazakhstanis",
        "astana",
        "almaty",
        "shymkent",
        "karaganda",
        "karagandy",
        "aktobe",
        "atyrau",
        "aktau",
        "pavlodar",
        "taraz",
        "oskemen",
        "ust-kamenogorsk",
        "semey",
        "kostanay",
        "kyzylorda",
        "turkistan",
        "mangystau",
        "tenge",
        "tokayev",
        "akorda",
        "mazhilis",
        "samruk-kazyna",
        "kazmunaygas",
        "kazatomprom",
        "temir zholy",
        "tengiz",
        "kashagan",
        "karachaganak",
        "baikonur",
        "balkhash",
        "nazarbayev",
        "air astana",
        "kegoc",
    ),
    "Kyrgyzstan": (
        "kyrgyzstan",
        "kyrgyz",
        "kyrgyzstani",
        "kyrgyzstanis",
        "bishkek",
        "Osh",
        "jalal-abad",
        "karakol",
        "naryn",
        "talas",
        "batken",
        "issyk-kul",
        "issyk kul",
        "japarov",
        "tashiev",
        "jogorku kenesh",
        "kumtor",
        "kambarata",
        "kambar-ata",
        "toktogul",
        "Manas",
        "cholpon-ata",
        "kyrgyz som",
    ),
    "Tajikistan": (
        "tajikistan",
        "tajik",
        "tajiks",
        "tajikistani",
        "dushanbe",
        "khujand",
        "bokhtar",
        "kulob",
        "khorog",
        "badakhshan",
        "gbao",
        "somoni",
        "rahmon",
        "rakhmon",
        "rogun",
        "nurek",
        "talco",
        "majlisi oli",
        "sughd",
        "khatlon",
        "pamir",
        "pamirs",
        "istaravshan",
    ),
    "Turkmenistan": (
        "turkmenistan",
        "turkmen",
        "turkmens",
        "ashgabat",
        "turkmenbashi",
        "Mary",
        "dashoguz",
        "turkmenabat",
        "balkanabat",
        "awaza",
        "manat",
        "berdimuhamedov",
        "Serdar",
        "galkynysh",
        "turkmengaz",
        "tapi",
        "halk maslahaty",
        "darvaza",
        "lebap",
    ),
    "Uzbekistan": (
        "uzbekistan",
        "uzbek",
        "uzbeks",
        "uzbekistani",
        "tashkent",
        "samarkand",
        "bukhara",
        "khiva",
        "andijan",
        "namangan",
        "nukus",
        "karakalpakstan",
        "karakalpak",
        "termez",
        "navoi",
        "navoiy",
        "uzbek sum",
        "soum",
        "so'm",
        "mirziyoyev",
        "oliy majlis",
        "uzbekneftegaz",
        "almalyk",
        "muruntau",
        "qarshi",
        "jizzakh",
        "urgench",
    ),
}

REGIONAL_PHRASES: tuple[str, ...] = (
    "central asia",
    "central asian",
    "central asians",
    "caspian",
    "trans-caspian",
    "middle corridor",
    "c5",
    "c5+1",
    "fergana valley",
    "aral sea",
    "amu darya",
    "syr darya",
    "region-wide",
    "five republics",
    "five countries of the region",
    "the region's",
)

REGIONAL_NAMES = ("regional", "central asia", "region")

BUILTIN_TOPIC_ALIASES: dict[str, str] = {
    "business": "economy",
    "finance": "economy",
    "trade": "economy",
    "banking": "economy",
    "economics": "economy",
    "markets": "economy",
    "investment": "economy",
    "agriculture": "economy",
    "industry": "economy",
    "mining": "economy",
    "oil": "energy",
    "gas": "energy",
    "oil & gas": "energy",
    "oil and gas": "energy",
    "power": "energy",
    "electricity": "energy",
    "hydropower": "energy",
    "nuclear": "energy",
    "renewables": "energy",
    "government": "politics",
    "elections": "politics",
    "diplomacy": "politics",
    "foreign policy": "politics",
    "defence": "security",
    "defense": "security",
    "military": "security",
    "crime": "security",
    "borders": "security",
    "railways": "transport",
    "rail": "transport",
    "logistics": "transport",
    "aviation": "transport",
    "roads": "transport",
    "infrastructure": "transport",
    "tech": "technology",
    "it": "technology",
    "digital": "technology",
    "science": "technology",
    "telecoms": "technology",
    "climate": "environment",
    "water": "environment",
    "ecology": "environment",
    "health": "society",
    "education": "society",
    "culture": "society",
    "sport": "society",
    "sports": "society",
    "migration": "society",
    "human rights": "society",
    "media": "society",
    "tourism": "society",
}


def _pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    parts = []
    for word in sorted(set(words), key=lambda w: (-len(w), w)):
        body = re.escape(word).replace(r"\ ", r"[\s\-]+")
        case_sensitive = word != word.lower()
        parts.append(f"(?:{body})" if case_sensitive else f"(?i:{body})")
    if not parts:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)")


@dataclass(frozen=True)
class Verdict:
    country: str
    reason: str


class CountryClassifier:
    """Deterministic country inference for the configured countries (see module docstring)."""

    def __init__(
        self,
        countries: Sequence[str],
        regional_label: str,
        extra_keywords: dict[str, Sequence[str]] | None = None,
    ) -> None:
        self.countries = list(countries)
        self.regional = regional_label
        self._patterns: dict[str, re.Pattern[str]] = {}
        for country in self.countries:
            words = [country.lower(), *COUNTRY_KEYWORDS.get(country, ())]
            words += list((extra_keywords or {}).get(country, ()))
            pattern = _pattern(words)
            if pattern is not None:
                self._patterns[country] = pattern
        regional = _pattern(REGIONAL_PHRASES)
        if regional is None:  # pragma: no cover - the phrase list is a constant
            raise RuntimeError("no regional phrases")
        self._regional = regional
        self._names = {c.lower(): c for c in self.countries}

    def explicit(self, labels: Iterable[str]) -> str | None:
        """The section named by categories/front matter, if any names a known one."""
        named: list[str] = []
        for label in labels:
            key = label.strip().lower()
            if key in self._names and self._names[key] not in named:
                named.append(self._names[key])
            elif key in REGIONAL_NAMES or key == self.regional.lower():
                return self.regional
        if len(named) == 1:
            return named[0]
        return self.regional if named else None

    def mentions(self, text: str) -> dict[str, int]:
        return {c: len(p.findall(text)) for c, p in self._patterns.items()}

    def classify(self, title: str, text: str, labels: Iterable[str] = ()) -> Verdict:
        explicit = self.explicit(labels)
        if explicit:
            return Verdict(explicit, "category")
        in_title = [c for c, n in self.mentions(title).items() if n]
        if len(in_title) >= 2:
            return Verdict(self.regional, "title names several countries")
        if self._regional.search(title):
            return Verdict(self.regional, "title names the region")
        scores = self.mentions(text)
        if len(in_title) == 1:
            named = in_title[0]
            others = [n for c, n in scores.items() if c != named and n]
            if len(others) >= 2 and sum(others) > 2 * scores.get(named, 0) + 1:
                return Verdict(self.regional, "text is mostly about other countries")
            return Verdict(named, "title")
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])  # stable: configured order
        if not ranked or ranked[0][1] == 0:
            return Verdict(self.regional, "no country mentioned")
        top_country, top = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else 0
        regional = len(self._regional.findall(text))
        if runner_up == top or runner_up >= max(2, top / 2):
            return Verdict(self.regional, "text is about several countries")
        if regional > top:
            return Verdict(self.regional, "text is about the region")
        return Verdict(top_country, "text")


def normalise_topics(
    labels: Iterable[str], vocabulary: Sequence[str], aliases: dict[str, str] | None = None
) -> tuple[tuple[str, ...], list[str]]:
    """Map labels onto the vocabulary. Returns (topics in vocabulary order, unknown labels)."""
    mapping = {
        **BUILTIN_TOPIC_ALIASES,
        **{k.lower(): v.lower() for k, v in (aliases or {}).items()},
    }
    known = set(vocabulary)
    found: set[str] = set()
    unknown: list[str] = []
    for label in labels:
        key = " ".join(label.strip().lower().split())
        if not key:
            continue
        topic = key if key in known else mapping.get(key)
        if topic in known:
            found.add(topic)
        elif key not in unknown:
            unknown.append(key)
    return tuple(t for t in vocabulary if t in found), unknown
