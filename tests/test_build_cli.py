"""`newsletter build` as a user runs it: the sample, its summary, and every kind of bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import SAMPLE_DATE, Result


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def _warnings(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


def test_sample_issue_builds_with_a_summary(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("build", "--date", SAMPLE_DATE)
    assert result.code == 0, result.stderr
    out = workspace / "issues" / SAMPLE_DATE
    assert sorted(p.name for p in out.iterdir()) == [
        "email.html",
        "email.txt",
        "index.html",
        "issue.json",
        "selection.json",
    ]
    for country in (
        "Kazakhstan",
        "Kyrgyzstan",
        "Tajikistan",
        "Turkmenistan",
        "Uzbekistan",
        "Regional",
    ):
        assert country in result.stdout
    assert "total" in result.stdout and "email.html" in result.stdout and "KB" in result.stdout
    manifest = json.loads((out / "issue.json").read_text())
    assert (
        manifest["date"] == SAMPLE_DATE
        and manifest["title"] == "Central Asia Weekly — 16 November 2026"
    )
    assert {r["currency"] for r in manifest["rates"]["rows"]} == {"KGS", "KZT", "TJS", "UZS", "TMT"}
    article = manifest["sections"][0]["articles"][0]
    assert set(article) >= {"title", "url", "country", "topics", "published"}
    titles = [a["title"] for s in manifest["sections"] for a in s["articles"]]
    assert 15 <= len(titles) <= 25
    assert "Kazakhstan Publishes Its October Inflation Figures" not in titles  # before the window
    assert "Bishkek Starts Its Heating Season Early" not in titles  # after the issue date
    assert (workspace / "issues" / "rates-history.json").is_file()


def test_out_writes_elsewhere(cli, workspace: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("build", "--date", SAMPLE_DATE, "--out", str(tmp_path / "elsewhere"))
    assert result.code == 0, result.stderr
    assert (tmp_path / "elsewhere" / "email.html").is_file()
    assert not (workspace / "issues" / SAMPLE_DATE).exists()


def test_unreadable_feed_is_a_warning_and_the_issue_builds_from_the_others(
    cli, workspace: Path
) -> None:  # type: ignore[no-untyped-def]
    (workspace / "sources" / "feed.xml").unlink()
    result = cli("build", "--date", SAMPLE_DATE)
    assert result.code == 0, result.stderr
    (line,) = [w for w in _warnings(result) if "feed.xml" in w]
    assert "cannot read" in line and "source skipped" in line


def test_malformed_feed_is_a_warning_naming_file_and_line(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    feed = workspace / "sources" / "feed.xml"
    feed.write_text(feed.read_text().replace("</item>", "", 1))
    result = cli("build", "--date", SAMPLE_DATE)
    assert result.code == 0, result.stderr
    (line,) = [w for w in _warnings(result) if "XML" in w]
    assert "not well-formed XML" in line and re.search(rf"{re.escape(str(feed))}:\d+: ", line)
    assert "read leniently" in line


def test_markdown_with_broken_front_matter_is_named_and_skipped(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    bad = workspace / "sources" / "articles" / "broken.md"
    bad.write_text("---\ntitle: 'unclosed\ndate: 2026-11-15\n---\nBody\n")
    result = cli("build", "--date", SAMPLE_DATE)
    assert result.code == 0, result.stderr
    (line,) = [w for w in _warnings(result) if "broken.md" in w]
    assert "bad front matter" in line


def test_no_articles_at_all_is_an_error_with_exit_3(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("build", "--date", "2030-01-01")
    assert result.code == 3
    assert "no articles published between" in _one_error_line(result)
    assert not (workspace / "issues" / "2030-01-01").exists()


def test_only_source_unreadable_exits_3_naming_it(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("build", "--date", SAMPLE_DATE, "--source", str(tmp_path / "missing.xml"))
    assert result.code == 3
    assert "missing.xml" in _one_error_line(result)


def test_rates_with_a_non_number_still_build_and_say_unavailable(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    rates = workspace / "bad-rates.json"
    rates.write_text('{"base": "USD", "date": "2026-11-16", "rates": {"KZT": "five hundred"}}')
    result = cli("build", "--date", SAMPLE_DATE, "--rates", str(rates))
    assert result.code == 0, result.stderr
    (line,) = [w for w in _warnings(result) if "rates" in w]
    assert "bad-rates.json" in line and "rates.KZT" in line and "not a number" in line
    html = (workspace / "issues" / SAMPLE_DATE / "email.html").read_text()
    assert "Exchange rates are unavailable" in html
    assert "rates: unavailable" in result.stdout


def test_rates_with_an_unknown_currency_code_are_reported(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    rates = workspace / "odd-rates.json"
    rates.write_text('{"base": "USD", "date": "2026-11-16", "rates": {"KZT": 511.4, "kzt!": 1}}')
    result = cli("build", "--date", SAMPLE_DATE, "--rates", str(rates))
    assert result.code == 0
    assert any("unknown currency code 'kzt!'" in w for w in _warnings(result))


def test_unknown_currency_in_the_settings_exits_2(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "build", "--date", SAMPLE_DATE, env={"NEWSLETTER_RATES__CURRENCIES": '["KZT", "TENGE"]'}
    )
    assert result.code == 2
    assert "'rates.currencies'" in _one_error_line(result) and "TENGE" in result.stderr


def test_template_syntax_error_exits_1_naming_the_template(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    template = workspace / "templates" / "email.html.j2"
    template.write_text(template.read_text().replace("{% endfor %}", "{% endfo %}", 1))
    result = cli("build", "--date", SAMPLE_DATE)
    assert result.code == 1
    line = _one_error_line(result)
    assert "email.html.j2:" in line and "template syntax error" in line
    assert not (workspace / "issues" / SAMPLE_DATE).exists()


def test_unknown_setting_exits_2(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = workspace / "newsletter.toml"
    cfg.write_text(cfg.read_text().replace("[paths]", "[paths]\ntemplate = 'x'"))
    result = cli("build", "--date", SAMPLE_DATE)
    assert result.code == 2
    assert "unknown setting 'paths.template'" in _one_error_line(result)


def test_bad_date_option_exits_2(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("build", "--date", "16/11/2026")
    assert result.code == 2
    assert "YYYY-MM-DD" in result.stderr and "Traceback" not in result.stderr


def test_strict_build_check_failure_exits_4_and_writes_nothing(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "build", "--date", SAMPLE_DATE, "--strict", env={"NEWSLETTER_BUILD__MAX_HTML_KB": "5"}
    )
    assert result.code == 4
    assert "Gmail clips" in _one_error_line(result)
    assert not (workspace / "issues" / SAMPLE_DATE).exists()


def test_rebuilding_replaces_files_without_leaving_temporaries(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("build", "--date", SAMPLE_DATE).code == 0
    first = (workspace / "issues" / SAMPLE_DATE / "email.html").read_bytes()
    assert cli("build", "--date", SAMPLE_DATE).code == 0
    folder = workspace / "issues" / SAMPLE_DATE
    assert (folder / "email.html").read_bytes() == first
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
