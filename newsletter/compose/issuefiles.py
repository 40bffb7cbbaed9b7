"""Build an issue: compose, render, check, and write ``issues/<D>/`` without half-written files.

Files written: ``issue.json`` (the manifest, also the input of later stages), ``index.html``
(web version), ``email.html`` (inlined) and ``email.txt``. Each file is written to a temporary
name and renamed into place; ``issue.json`` goes last, so a folder with an ``issue.json`` is a
complete issue.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.compose.checks import check_html, check_text
from newsletter.compose.options import IssueConfig
from newsletter.compose.render import RenderedIssue, render_issue
from newsletter.core.models import Article, Issue, RateRow, RatesHeader, Section, Window
from newsletter.errors import BuildCheckError, IssueNotFoundError

if TYPE_CHECKING:  # composing (feeds, Markdown) is imported where it runs: a send only loads
    from newsletter.compose.select import ComposeOptions

MANIFEST_FORMAT = 1
SELECTION_FILE = "selection.json"  # the automatic selection, before the editor's plan
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@dataclass
class BuildResult:
    issue: Issue
    rendered: RenderedIssue
    problems: list[str]
    files: dict[str, bytes]
    out_dir: Path | None = None
    sizes: dict[str, int] = field(default_factory=dict)


def manifest(issue: Issue, sizes: dict[str, int]) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "date": issue.day.isoformat(),
        "title": issue.title,
        "date_text": issue.date_text,
        "window": {"start": issue.window.start.isoformat(), "end": issue.window.end.isoformat()},
        "rates": {
            "base": issue.rates.base,
            "date": issue.rates.day.isoformat() if issue.rates.day else None,
            "available": issue.rates.available,
            "rows": [r.to_json() for r in issue.rates.rows],
        },
        "counts": {s.country: len(s.articles) for s in issue.sections},
        "sections": [
            {"country": s.country, "slug": s.slug, "articles": [a.to_json() for a in s.articles]}
            for s in issue.sections
        ],
        "files": sizes,
        "warnings": issue.warnings,
        "intro_html": issue.intro_html,
    }


def issue_from_manifest(data: dict[str, Any]) -> Issue:
    rates = data["rates"]
    return Issue(
        day=date.fromisoformat(data["date"]),
        title=data["title"],
        date_text=data["date_text"],
        window=Window(
            datetime.fromisoformat(data["window"]["start"]),
            datetime.fromisoformat(data["window"]["end"]),
        ),
        rates=RatesHeader(
            rates["base"],
            date.fromisoformat(rates["date"]) if rates.get("date") else None,
            tuple(RateRow.from_json(r) for r in rates["rows"]),
        ),
        sections=[
            Section(s["country"], s["slug"], tuple(Article.from_json(a) for a in s["articles"]))
            for s in data["sections"]
        ],
        warnings=list(data.get("warnings", [])),
        intro_html=str(data.get("intro_html", "")),
    )


def load_issue(issues_dir: Path, day: date | str) -> Issue:
    """Read a built issue back from ``issues/<D>/issue.json``."""
    folder = issues_dir / str(day)
    path = folder / "issue.json"
    if not path.is_file():
        raise IssueNotFoundError(
            f"issue {day} has not been built ({path} not found); run: newsletter build --date {day}",
            path=path,
        )
    try:
        return issue_from_manifest(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise IssueNotFoundError(f"{path}: not a valid issue manifest ({exc})", path=path) from None


def build_issue(
    config: IssueConfig, options: ComposeOptions, *, strict: bool | None = None
) -> BuildResult:
    """Compose, render and check an issue in memory (nothing is written): the automatic
    selection, with the editor's plan applied."""
    from newsletter.compose.select import compose_issue

    return finish_issue(config, compose_issue(config, options), strict=strict)


def rebuild_from_selection(
    config: IssueConfig, day: date, *, strict: bool | None = None
) -> BuildResult:
    """The issue again from its stored automatic selection (``selection.json``) and the plan,
    without reading the sources: what an edit does."""
    path = config.issues_dir / day.isoformat() / SELECTION_FILE
    try:
        selection = issue_from_manifest(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise IssueNotFoundError(
            f"{path} is missing: build the issue again with 'newsletter build --date {day}'",
            path=path,
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise IssueNotFoundError(f"{path}: not a valid selection ({exc})", path=path) from None
    return finish_issue(config, selection, strict=strict)


def finish_issue(
    config: IssueConfig, selection: Issue, *, strict: bool | None = None
) -> BuildResult:
    from newsletter.compose.select import with_plan

    issue = with_plan(config, selection)
    rendered = render_issue(issue, config.render)
    problems = check_html(rendered.email_html, "email.html", max_kb=config.max_html_kb)
    problems += check_html(rendered.web_html, "index.html", max_kb=1e9, inlined=False)
    problems += check_text(rendered.email_txt, "email.txt", max_line=config.max_text_line)
    if (config.strict if strict is None else strict) and problems:
        raise BuildCheckError(problems)
    files = {
        "email.html": rendered.email_html.encode("utf-8"),
        "email.txt": rendered.email_txt.encode("utf-8"),
        "index.html": rendered.web_html.encode("utf-8"),
    }
    sizes = {name: len(data) for name, data in files.items()}
    doc = json.dumps(manifest(issue, sizes), ensure_ascii=False, indent=2) + "\n"
    auto = json.dumps(manifest(selection, {}), ensure_ascii=False, indent=2) + "\n"
    files[SELECTION_FILE] = auto.encode("utf-8")
    files["issue.json"] = doc.encode("utf-8")
    return BuildResult(issue, rendered, problems, files, sizes=sizes)


def write_files(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write every file to a temporary name first, then rename them in; issue.json last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, Path]] = []
    try:
        for name, data in files.items():
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
            staged.append((name, Path(tmp_name)))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp_name, 0o644 & ~_UMASK)  # mkstemp makes 0600; these are web files
        for name, path in sorted(staged, key=lambda item: item[0] == "issue.json"):
            os.replace(path, out_dir / name)
    finally:
        for _, path in staged:
            path.unlink(missing_ok=True)


def build_and_write(
    config: IssueConfig,
    options: ComposeOptions,
    *,
    out_dir: Path | None = None,
    strict: bool | None = None,
) -> BuildResult:
    result = build_issue(config, options, strict=strict)
    target = out_dir or config.issues_dir / options.day.isoformat()
    write_files(target, result.files)
    result.out_dir = target
    return result


ISSUE_FILES = ("issue.json", "email.html", "email.txt", "index.html", "selection.json")


def keep_revision(folder: Path) -> int:
    """Move the built files of ``folder`` into ``folder/revisions/N/`` (N = 1, 2, ...): what was
    sent stays on disk when an issue is rebuilt with ``--force``. Returns N."""
    revisions = folder / "revisions"
    revisions.mkdir(exist_ok=True)
    number = 1 + max((int(p.name) for p in revisions.iterdir() if p.name.isdigit()), default=0)
    target = revisions / str(number)
    target.mkdir()
    for name in ISSUE_FILES:
        if (folder / name).exists():
            shutil.copy2(folder / name, target / name)  # copies: the folder stays whole
    return number
