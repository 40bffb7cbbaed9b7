"""CSV import of subscribers, with a validation report.

- A header row; ``email`` required; ``name``, ``interests`` (``;`` or ``|`` separated),
  ``status``; any other column is kept as an attribute. UTF-8 with or without BOM; ``,`` or ``;``
  delimiter (whichever the header uses).
- Each bad row is reported with its line number and reason (bad address, unknown interest,
  duplicate in file, not UTF-8, too long, line break in a value, too many fields) and skipped.
- Valid rows are upserted in batches, one transaction per batch: a crash loses at most the batch
  in flight, never half of it. An unsubscribed, bounced or complained address is never
  re-activated: it is counted as "kept" and left untouched.
- Memory stays flat in the number of rows: rows are streamed, and the addresses already seen in
  the file (for the duplicate check) live in a temporary SQLite file, not in memory.
- ``dry_run`` runs every check against the database and writes nothing.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from newsletter.audience.seen import SeenAddresses
from newsletter.audience.subscribers import ensure_list, record_event
from newsletter.core.addresses import control_character, normalise
from newsletter.core.clock import now
from newsletter.core.csvcells import restore
from newsletter.core.interests import Vocabulary
from newsletter.core.states import STATUSES, SUPPRESSED, SubscriberStatus
from newsletter.errors import AddressError, CSVImportError, UnknownInterestError
from newsletter.storage.db import Database, memberships, subscribers

MAX_FIELD = 1000
MAX_NAME = 200  # the subscribers.name column
KNOWN_COLUMNS = ("email", "name", "interests", "status")
_BAD_BYTES = re.compile("[\udc80-\udcff]")
_LINE_BREAK = re.compile(r"[\r\n]")
_SUSPICIOUS = re.compile("[\udc80-\udcff\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
csv.field_size_limit(16 * 1024 * 1024)  # long fields are rejected by our own check, by line


@dataclass
class ImportReport:
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0
    rejected: int = 0
    dry_run: bool = False
    rejections: list[tuple[int, str]] = field(default_factory=list)  # the first 1,000

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "kept": self.kept,
            "rejected": self.rejected,
            "dry_run": self.dry_run,
            "rejections": [{"line": n, "reason": r} for n, r in self.rejections],
        }


@dataclass
class _Row:
    line: int
    email: str
    key: str
    name: str | None
    interests: str | None
    status: str | None
    attributes: dict[str, str]


def _open_text(path: Path) -> tuple[Any, io.TextIOWrapper]:
    try:
        binary = path.open("rb")
    except OSError as exc:
        raise CSVImportError(f"cannot read: {exc.strerror}", path=path) from None
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
    return binary, text


def _delimiter(header: str) -> str:
    unquoted = re.sub(r'"[^"]*"', "", header)
    return ";" if unquoted.count(";") > unquoted.count(",") else ","


def _records(
    text: io.TextIOWrapper, path: Path
) -> tuple[list[str], Iterator[tuple[int, list[str] | str]]]:
    """The header, and (line, fields) for each record, or (line, error) for an unreadable one."""
    first = text.readline()
    if not first.strip():
        raise CSVImportError(
            "empty file: a header row with an 'email' column is needed", path=path, line=1
        )
    reader = csv.reader(itertools.chain([first], text), delimiter=_delimiter(first))
    header = [h.strip().lower() for h in next(reader)]
    if _BAD_BYTES.search("".join(header)):
        raise CSVImportError("the header is not valid UTF-8", path=path, line=1)
    if "email" not in header:
        raise CSVImportError(
            f"no 'email' column in the header (columns: {', '.join(header)})", path=path, line=1
        )
    duplicated = {h for h in header if h and header.count(h) > 1}
    if duplicated:
        raise CSVImportError(
            f"column {sorted(duplicated)[0]!r} appears twice in the header", path=path, line=1
        )

    def rows() -> Iterator[tuple[int, list[str] | str]]:
        last = reader.line_num
        while True:
            start = last + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                last = reader.line_num
                yield start, f"unreadable CSV: {exc}"
                continue
            last = reader.line_num
            yield start, fields

    return header, rows()


def _validate(
    header: list[str], line: int, fields: list[str], vocabulary: Vocabulary
) -> _Row | str:
    if len(fields) > len(header):
        return f"{len(fields)} fields, but the header has {len(header)}"
    fields = fields + [""] * (len(header) - len(fields))
    if any(f[:1] == "'" for f in fields):  # a cell our export kept from being a formula
        fields = [restore(f) for f in fields]
    values = dict(zip(header, fields, strict=True))
    suspicious = _SUSPICIOUS.search("".join(fields)) is not None
    for column, value in values.items():
        if suspicious and _BAD_BYTES.search(value):
            return f"column {column!r} is not valid UTF-8"
        if len(value) > MAX_FIELD:
            return f"column {column!r} is longer than {MAX_FIELD} characters"
        if suspicious and _LINE_BREAK.search(value):
            return f"column {column!r} contains a line break"
        if suspicious and (char := control_character(value)):
            return f"column {column!r} contains a control character ({char})"
    try:
        email, key = normalise(values["email"])
    except AddressError as exc:
        return str(exc)
    interests = None
    if "interests" in values:
        try:
            interests = vocabulary.parse(values["interests"])
        except UnknownInterestError as exc:
            return str(exc)
    status = values.get("status", "").strip().lower() or None
    if status is not None and status not in STATUSES:
        return f"unknown status {status!r} (one of: {', '.join(STATUSES)})"
    name = values["name"].strip() if "name" in values else None
    if name is not None and len(name) > MAX_NAME:
        return f"column 'name' is longer than {MAX_NAME} characters"
    attributes = {k: v for k, v in values.items() if k not in KNOWN_COLUMNS and k and v != ""}
    return _Row(line, email, key, name, interests, status, attributes)


def _insert_ignore(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    else:
        from sqlalchemy.dialects import sqlite

        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)


def _apply(conn: Connection, batch: list[_Row], list_id: int, report: ImportReport) -> None:
    """Upsert one batch inside the caller's transaction."""
    keys = [r.key for r in batch]
    existing: dict[str, Any] = {}
    for start in range(0, len(keys), 900):
        chunk = keys[start : start + 900]
        for row in conn.execute(select(subscribers).where(subscribers.c.email_key.in_(chunk))):
            existing[row.email_key] = row
    stamp = now()
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    member_ids: list[int] = []
    for r in batch:
        old = existing.get(r.key)
        if old is None:
            status = r.status or SubscriberStatus.ACTIVE
            new.append(
                {
                    "email": r.email,
                    "email_key": r.key,
                    "name": r.name or "",
                    "status": status,
                    "interests": r.interests or "",
                    "attributes": r.attributes,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "unsubscribed_at": stamp if status in SUPPRESSED else None,
                }
            )
            continue
        member_ids.append(old.id)
        if old.status in SUPPRESSED:
            report.kept += 1
            continue
        values = {
            "name": old.name if r.name is None else r.name,
            "interests": old.interests if r.interests is None else r.interests,
            "status": r.status or old.status,
            "attributes": {**(old.attributes or {}), **r.attributes},
        }
        if values == {
            "name": old.name,
            "interests": old.interests,
            "status": old.status,
            "attributes": old.attributes or {},
        }:
            report.unchanged += 1
            continue
        values["unsubscribed_at"] = stamp if values["status"] in SUPPRESSED else None
        changed.append({"_id": old.id, "updated_at": stamp, **values})
        report.updated += 1
    if new:
        result = conn.execute(insert(subscribers).returning(subscribers.c.id), new)
        member_ids.extend(int(i) for i in result.scalars())
        report.added += len(new)
    if changed:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == bindparam("_id"))
            .values(
                {
                    c: bindparam(c)
                    for c in (
                        "name",
                        "interests",
                        "status",
                        "attributes",
                        "updated_at",
                        "unsubscribed_at",
                    )
                }
            ),
            changed,
        )
    _insert_ignore(
        conn,
        memberships,
        [{"list_id": list_id, "subscriber_id": sid, "added_at": stamp} for sid in member_ids],
    )


class _Run:
    """One import: rejections reported in line order, batches applied in their transaction."""

    def __init__(
        self,
        report: ImportReport,
        list_name: str,
        dry_run: bool,
        on_reject: Callable[[int, str], None] | None,
        on_progress: Callable[[int, int], None] | None,
        binary: Any,
        path: Path,
    ) -> None:
        self.report, self.list_name, self.dry_run = report, list_name, dry_run
        self.on_reject, self.on_progress, self.binary = on_reject, on_progress, binary
        self.total = path.stat().st_size if path.exists() else 0
        self.seen = SeenAddresses()
        self.pending: list[tuple[int, str]] = []  # this batch's rejections

    def reject(self, line: int, reason: str) -> None:
        self.report.rejected += 1
        self.pending.append((line, reason))

    def report_rejections(self) -> None:
        for line, reason in sorted(self.pending):
            if len(self.report.rejections) < 1000:
                self.report.rejections.append((line, reason))
            if self.on_reject is not None:
                self.on_reject(line, reason)
        self.pending.clear()

    def flush(self, conn: Connection, batch: list[_Row]) -> None:
        """Apply a batch (duplicates of earlier lines rejected); empties ``batch``."""
        earlier = self.seen.earlier([r.key for r in batch])
        fresh: list[_Row] = []
        first_line: dict[str, int] = {}
        for r in batch:
            where = earlier.get(r.key) or first_line.get(r.key)
            if where is not None:
                self.reject(r.line, f"duplicate of line {where} ({r.email})")
                continue
            first_line[r.key] = r.line
            fresh.append(r)
        self.seen.add(list(first_line.items()))
        if fresh:
            trans = conn.begin()
            try:
                _apply(conn, fresh, ensure_list(conn, self.list_name), self.report)
            except BaseException:
                trans.rollback()
                raise
            if self.dry_run:
                trans.rollback()
            else:
                trans.commit()
        batch.clear()
        self.report_rejections()
        if self.on_progress is not None:
            self.on_progress(self.binary.tell(), self.total)


def import_csv(
    db: Database,
    path: Path,
    list_name: str,
    vocabulary: Vocabulary,
    *,
    dry_run: bool = False,
    batch_size: int = 5000,
    on_reject: Callable[[int, str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import ``path`` into ``list_name``; see the module docstring for the rules."""
    report = ImportReport(dry_run=dry_run)
    binary, text = _open_text(path)
    run = _Run(report, list_name, dry_run, on_reject, on_progress, binary, path)
    try:
        header, records = _records(text, path)
        with db.connect() as conn:
            batch: list[_Row] = []
            for line, fields in records:
                if isinstance(fields, str):
                    report.rows += 1
                    run.reject(line, fields)
                    continue
                if not fields or not any(f.strip() for f in fields):
                    continue  # empty line
                report.rows += 1
                checked = _validate(header, line, fields, vocabulary)
                if isinstance(checked, str):
                    run.reject(line, checked)
                    continue
                batch.append(checked)
                if len(batch) >= batch_size:
                    run.flush(conn, batch)
            run.flush(conn, batch)
            if not dry_run:
                with conn.begin():
                    ensure_list(conn, list_name)  # the list exists even when no row was valid
                    record_event(
                        conn,
                        "import",
                        None,
                        f"file={path.name} list={list_name} added={report.added} "
                        f"updated={report.updated} kept={report.kept} rejected={report.rejected}",
                    )
    finally:
        run.seen.close()
        text.close()
    if dry_run and on_progress is not None:
        on_progress(run.total, run.total)
    return report
