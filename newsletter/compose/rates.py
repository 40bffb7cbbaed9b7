"""The currency-rates header.

Input is the widespread JSON shape ``{"base": "USD", "date": "YYYY-MM-DD", "rates": {"KZT":
515.46}}`` (units of each currency per one base unit), or a list of such days. The header shows
each configured currency as ``KZT/USD = 0.00194`` (base units per one unit of the currency) with
its change from the previous known day. Every day fetched is kept in a small JSON history so
that the next build can compute the change even when the source gives only today.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from newsletter.core.models import RateRow, RatesHeader
from newsletter.errors import RatesError

_CODE = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class RatesDay:
    day: date
    base: str
    rates: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "date": self.day.isoformat(),
            "rates": dict(sorted(self.rates.items())),
        }


def _parse_day(obj: Any, source: str, where: str) -> RatesDay:
    if not isinstance(obj, dict):
        raise RatesError(f"{where or 'the top level'} must be an object", source=source)
    base = obj.get("base")
    if not isinstance(base, str) or not _CODE.fullmatch(base):
        raise RatesError(
            f"{where}base: unknown currency code {base!r}", source=source, field="base"
        )
    raw_day = obj.get("date")
    try:
        day = date.fromisoformat(str(raw_day))
    except ValueError:
        raise RatesError(
            f"{where}date: {raw_day!r} is not a YYYY-MM-DD date", source=source, field="date"
        ) from None
    rates = obj.get("rates")
    if not isinstance(rates, dict) or not rates:
        raise RatesError(f"{where}rates: must be a non-empty object", source=source, field="rates")
    parsed: dict[str, float] = {}
    for code, value in rates.items():
        name = f"{where}rates.{code}"
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise RatesError(f"{name}: unknown currency code {code!r}", source=source, field=name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RatesError(f"{name}: {value!r} is not a number", source=source, field=name)
        if not math.isfinite(value) or value <= 0:
            raise RatesError(
                f"{name}: {value!r} is not a positive number", source=source, field=name
            )
        parsed[code] = float(value)
    return RatesDay(day, base, parsed)


def parse_rates(data: bytes, source: str) -> list[RatesDay]:
    """Parse and validate a rates document (one day or a list of days)."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise RatesError("not UTF-8 text", source=source) from None
    except json.JSONDecodeError as exc:
        raise RatesError(f"invalid JSON at line {exc.lineno}: {exc.msg}", source=source) from None
    if isinstance(doc, list):
        if not doc:
            raise RatesError("the list of days is empty", source=source)
        return [_parse_day(item, source, f"[{i}].") for i, item in enumerate(doc)]
    return [_parse_day(doc, source, "")]


def load_history(path: Path) -> dict[date, RatesDay]:
    """Read the stored days; a missing file is an empty history."""
    if not path.exists():
        return {}
    days = parse_rates(path.read_bytes(), str(path))
    return {d.day: d for d in days}


def save_history(path: Path, days: dict[date, RatesDay]) -> None:
    """Write the history atomically (temp file + rename): never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps([days[k].to_json() for k in sorted(days)], indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".rates-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def merge_history(path: Path, fetched: Iterable[RatesDay]) -> dict[date, RatesDay]:
    """Add the fetched days to the stored history; save only when something changed."""
    history = load_history(path)
    changed = False
    for day in fetched:
        if history.get(day.day) != day:
            history[day.day] = day
            changed = True
    if changed:
        save_history(path, history)
    return history


def format_value(value: float, *, significant: bool = False) -> str:
    """At least five decimals, and always at least three significant digits; with
    ``significant`` (a large number, such as 515.46 tenge to the dollar) two decimals, or
    three significant digits when it is small."""
    if significant and value >= 1:
        return f"{value:,.2f}"
    decimals = max(5, -math.floor(math.log10(value)) + 2)
    return f"{value:.{decimals}f}"


def format_change(pct: float | None) -> tuple[str, str]:
    """(text, direction): ``+0.28%`` up, ``-0.18%`` down, ``unchanged`` flat (never ``-0%``;
    an "=" or "0%" after the rate read as a second equals sign)."""
    if pct is None:
        return "", ""
    rounded = round(pct, 2)
    if rounded == 0:
        return "unchanged", "flat"
    return (f"+{rounded:.2f}%", "up") if rounded > 0 else (f"-{-rounded:.2f}%", "down")


def _per_base(day: RatesDay, base: str, currency: str) -> float | None:
    """Base units per one unit of ``currency`` on ``day``, crossing through the day's base."""
    units = day.rates.get(currency, 1.0 if currency == day.base else None)
    if units is None:
        return None
    if day.base == base:
        return 1.0 / units
    base_units = day.rates.get(base)
    return None if base_units is None else base_units / units


def build_header(
    history: dict[date, RatesDay], base: str, currencies: Sequence[str], as_of: date
) -> tuple[RatesHeader, list[str]]:
    """The header for an issue dated ``as_of``: the latest known day on or before it."""
    warnings: list[str] = []
    known = sorted(d for d in history if d <= as_of)
    if not known:
        return unavailable(base, currencies), ["rates: no rates on or before the issue date"]
    today = history[known[-1]]
    previous = history[known[-2]] if len(known) > 1 else None
    rows = []
    for currency in currencies:
        value = _per_base(today, base, currency)
        if value is None:
            warnings.append(f"rates: no {currency} rate against {base} on {today.day}")
            rows.append(RateRow(currency, base, None, None, "n/a", "", ""))
            continue
        before = _per_base(previous, base, currency) if previous else None
        pct = (value / before - 1.0) * 100.0 if before else None
        text, direction = format_change(pct)
        rows.append(
            RateRow(
                currency,
                base,
                value,
                round(pct, 4) if pct is not None else None,
                format_value(value),
                text,
                direction,
            )
        )
    if (as_of - today.day).days > 7:
        warnings.append(f"rates: the latest rates are from {today.day}, more than a week old")
    return RatesHeader(base, today.day, tuple(rows)), warnings


def unavailable(base: str, currencies: Sequence[str]) -> RatesHeader:
    return RatesHeader(
        base, None, tuple(RateRow(c, base, None, None, "n/a", "", "") for c in currencies)
    )
