"""The rates header: formatting, day-to-day change, stored history, broken sources."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from newsletter.compose.rates import (
    build_header,
    format_change,
    format_value,
    merge_history,
    parse_rates,
)
from newsletter.compose.select import compose_rates
from newsletter.config import Settings
from newsletter.errors import RatesError


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1 / 87.45, "0.01144"),
        (1 / 515.46, "0.00194"),
        (1 / 12000, "0.0000833"),
        (1 / 3.5, "0.28571"),
        (1.0842, "1.08420"),
        (1 / 1_500_000, "0.000000667"),
    ],
)
def test_values_keep_at_least_three_significant_digits(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("pct", "expected"),
    [
        (0.0, ("unchanged", "flat")),
        (-0.0001, ("unchanged", "flat")),
        (0.004, ("unchanged", "flat")),
        (0.28, ("+0.28%", "up")),
        (-0.1834, ("-0.18%", "down")),
        (None, ("", "")),
    ],
)
def test_change_is_never_minus_zero(pct: float | None, expected: tuple[str, str]) -> None:
    assert format_change(pct) == expected


def _days(*days: tuple[str, dict[str, float]]) -> bytes:
    return json.dumps([{"base": "USD", "date": d, "rates": r} for d, r in days]).encode()


def test_header_shows_each_currency_once_with_change_from_previous_day() -> None:
    days = parse_rates(
        _days(
            ("2026-11-13", {"KZT": 500.0, "UZS": 12000.0}),
            ("2026-11-16", {"KZT": 510.0, "UZS": 12000.0}),
        ),
        "r.json",
    )
    header, warnings = build_header(
        {d.day: d for d in days}, "USD", ["KZT", "UZS"], date(2026, 11, 16)
    )
    assert warnings == []
    assert [(r.currency, r.value_text, r.change_text, r.direction) for r in header.rows] == [
        ("KZT", "0.00196", "-1.96%", "down"),
        ("UZS", "0.0000833", "unchanged", "flat"),
    ]


def test_rates_are_crossed_through_another_base() -> None:
    days = parse_rates(
        json.dumps(
            {"base": "EUR", "date": "2026-11-16", "rates": {"USD": 1.1, "KZT": 550.0}}
        ).encode(),
        "r.json",
    )
    header, _ = build_header({d.day: d for d in days}, "USD", ["KZT"], date(2026, 11, 16))
    assert header.rows[0].value == pytest.approx(1.1 / 550.0)


def test_history_gives_the_change_when_the_source_only_has_today(tmp_path: Path) -> None:
    history_file = tmp_path / "history.json"
    merge_history(history_file, parse_rates(_days(("2026-11-13", {"KZT": 500.0})), "a"))
    history = merge_history(history_file, parse_rates(_days(("2026-11-16", {"KZT": 505.0})), "b"))
    assert sorted(history) == [date(2026, 11, 13), date(2026, 11, 16)]
    header, _ = build_header(history, "USD", ["KZT"], date(2026, 11, 16))
    assert header.rows[0].change_text == "-0.99%"
    assert json.loads(history_file.read_text())[0]["date"] == "2026-11-13"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"base": "USD", "date": "2026-11-16", "rates": {"KZT": "abc"}},
            "rates.KZT: 'abc' is not a number",
        ),
        ({"base": "USD", "date": "2026-11-16", "rates": {"KZ": 500}}, "unknown currency code 'KZ'"),
        ({"base": "USD", "date": "16/11/2026", "rates": {"KZT": 500}}, "is not a YYYY-MM-DD date"),
        ({"base": "USD", "date": "2026-11-16", "rates": {"KZT": -1}}, "not a positive number"),
        ([{"base": "USD", "date": "2026-11-16", "rates": {"KZT": 1}}, {"base": "usd"}], "[1].base"),
    ],
)
def test_invalid_rates_documents_name_the_field(doc: object, expected: str) -> None:
    with pytest.raises(RatesError) as info:
        parse_rates(json.dumps(doc).encode(), "rates.json")
    assert str(info.value).startswith("rates.json: ") and expected in str(info.value)


def test_invalid_json_names_the_line() -> None:
    with pytest.raises(RatesError, match="invalid JSON at line 2"):
        parse_rates(b'{"base": "USD",\n oops}', "rates.json")


def test_broken_rates_make_the_header_unavailable_with_a_warning(
    settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"base": "USD", "date": "2026-11-16", "rates": {"KZT": "n/a"}}')
    header, warnings = compose_rates(settings.issue_config(), date(2026, 11, 16), str(bad))
    assert not header.available
    assert len(warnings) == 1 and "rates unavailable" in warnings[0] and "rates.KZT" in warnings[0]


def test_a_configured_currency_missing_from_the_source_is_reported(
    settings: Settings, tmp_path: Path
) -> None:
    partial = tmp_path / "partial.json"
    partial.write_text('{"base": "USD", "date": "2026-11-16", "rates": {"KZT": 511.4}}')
    header, warnings = compose_rates(settings.issue_config(), date(2026, 11, 16), str(partial))
    assert header.available
    assert any("no UZS rate" in w for w in warnings)
    assert {r.currency: r.value_text for r in header.rows}["UZS"] == "n/a"
