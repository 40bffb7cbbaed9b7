"""Which articles are 'latest': the window since the previous issue, up to the end of the day."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.compose.select import compute_window
from newsletter.config import Settings

ALMATY = ZoneInfo("Asia/Almaty")


def test_without_an_earlier_issue_the_window_is_the_last_seven_days(settings: Settings) -> None:
    window = compute_window(settings.issue_config(), date(2026, 11, 16), None)
    assert window.start == datetime(2026, 11, 10, tzinfo=ALMATY)
    assert window.end == datetime(2026, 11, 17, tzinfo=ALMATY)


def test_the_window_starts_where_the_previous_issue_ended(settings: Settings) -> None:
    previous = settings.issues_dir / "2026-11-09"
    previous.mkdir(parents=True)
    (previous / "issue.json").write_text(
        json.dumps({"window": {"end": "2026-11-09T18:00:00+05:00"}})
    )
    (settings.issues_dir / "2026-11-20").mkdir()  # a later folder without issue.json is ignored
    window = compute_window(settings.issue_config(), date(2026, 11, 16), None)
    assert window.start == datetime(2026, 11, 9, 18, tzinfo=ALMATY)


def test_since_overrides_the_start(settings: Settings) -> None:
    window = compute_window(settings.issue_config(), date(2026, 11, 16), date(2026, 11, 1))
    assert window.start == datetime(2026, 11, 1, tzinfo=ALMATY)


def test_window_days_and_timezone_are_configurable(workspace: Path) -> None:
    from newsletter.config import load_settings

    cfg = workspace / "newsletter.toml"
    cfg.write_text(
        cfg.read_text()
        .replace('timezone = "Asia/Almaty"', 'timezone = "Europe/London"')
        .replace("window_days = 7", "window_days = 3")
    )
    settings = load_settings(cfg)
    window = compute_window(settings.issue_config(), date(2026, 11, 16), None)
    london = ZoneInfo("Europe/London")
    assert (window.start, window.end) == (
        datetime(2026, 11, 14, tzinfo=london),
        datetime(2026, 11, 17, tzinfo=london),
    )


def test_consecutive_issues_do_not_repeat_articles(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("build", "--date", "2026-11-12").code == 0
    assert cli("build", "--date", "2026-11-16").code == 0
    first = json.loads((workspace / "issues/2026-11-12/issue.json").read_text())
    second = json.loads((workspace / "issues/2026-11-16/issue.json").read_text())
    urls = lambda m: {a["url"] for s in m["sections"] for a in s["articles"]}  # noqa: E731
    assert urls(first) and urls(second)
    assert not urls(first) & urls(second)
    assert second["window"]["start"] == first["window"]["end"]
