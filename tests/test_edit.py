"""`newsletter edit`: the editor's plan (issues/D/plan.toml) as a new editor uses it: each verb,
edits surviving a rebuild and a new article arriving, the lock once sent, hostile intros."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import SAMPLE_DATE


def _articles(workspace: Path) -> list[tuple[str, str]]:
    data = json.loads((workspace / "issues" / SAMPLE_DATE / "issue.json").read_text())
    return [(s["country"], a["url"]) for s in data["sections"] for a in s["articles"]]


def test_each_edit_verb_changes_the_issue_files(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("build", "--date", SAMPLE_DATE).code == 0
    before = _articles(workspace)
    listed = cli("edit", SAMPLE_DATE, "list")
    assert listed.code == 0 and "  1. " in listed.stdout and "Kazakhstan:" in listed.stdout
    second = before[1][1]
    assert cli("edit", SAMPLE_DATE, "drop", "2").code == 0
    after = _articles(workspace)
    assert second not in [u for _, u in after] and len(after) == len(before) - 1
    html = (workspace / "issues" / SAMPLE_DATE / "email.html").read_text()
    assert second not in html  # gone from what is sent, and from the web page
    assert second not in (workspace / "issues" / SAMPLE_DATE / "index.html").read_text()
    assert "dropped d1: " + second in cli("edit", SAMPLE_DATE, "list").stdout
    assert cli("edit", SAMPLE_DATE, "restore", "d1").code == 0
    assert _articles(workspace) == before
    third_country, third = before[2]
    assert cli("edit", SAMPLE_DATE, "move", "3", "--to", "1").code == 0
    section = [u for c, u in _articles(workspace) if c == third_country]
    assert section[0] == third
    assert cli("edit", SAMPLE_DATE, "country", third, "regional").code == 0
    assert ("Regional", third) in _articles(workspace)
    note = workspace / "note.md"
    note.write_text("**A quiet week** in the region. <script>alert(1)</script>\n")
    assert cli("edit", SAMPLE_DATE, "intro", str(note)).code == 0
    folder = workspace / "issues" / SAMPLE_DATE
    for name in ("email.html", "index.html", "email.txt"):
        text = (folder / name).read_text()
        assert "A quiet week" in text and "<script>" not in text, name
    bad = cli("edit", SAMPLE_DATE, "country", "1", "Narnia")
    assert bad.code == 1 and "unknown country 'Narnia'" in bad.stderr
    assert cli("edit", SAMPLE_DATE, "drop", "999").code == 1
    assert cli("edit", SAMPLE_DATE, "reset").code == 0
    assert _articles(workspace) == before and not (folder / "plan.toml").exists()


def test_edits_survive_a_rebuild_and_a_new_article(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("build", "--date", SAMPLE_DATE).code == 0
    first = _articles(workspace)[0][1]
    assert cli("edit", SAMPLE_DATE, "drop", first).code == 0
    article = workspace / "sources" / "articles" / "zz-new.md"
    article.write_text(
        "---\ntitle: A late story from Almaty\ndate: 2026-11-15\n"
        "url: https://news.example.org/late\ncountry: Kazakhstan\n---\nBody.\n"
    )
    rebuilt = cli("build", "--date", SAMPLE_DATE)
    assert rebuilt.code == 0, rebuilt.stderr
    urls = [u for _, u in _articles(workspace)]
    assert first not in urls and "https://news.example.org/late" in urls
    # A change naming an article no longer in the window is a warning, not an error.
    plan = workspace / "issues" / SAMPLE_DATE / "plan.toml"
    plan.write_text(plan.read_text().replace(first, "https://news.example.org/gone"))
    again = cli("build", "--date", SAMPLE_DATE)
    assert again.code == 0 and "https://news.example.org/gone is not in this issue" in again.stderr


def test_a_broken_plan_is_one_line_naming_the_file(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("build", "--date", SAMPLE_DATE).code == 0
    plan = workspace / "issues" / SAMPLE_DATE / "plan.toml"
    plan.write_text('drop = ["unclosed\n')
    result = cli("build", "--date", SAMPLE_DATE)
    assert result.code != 0 and str(plan) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
