"""CSV import: mixed good and bad rows, dry runs, crashes mid-import, property-based round trips."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from newsletter import audience
from newsletter.audience.importer import import_csv
from newsletter.core.addresses import _fast, normalise
from newsletter.core.interests import Vocabulary
from newsletter.errors import AddressError, CSVImportError
from newsletter.storage.db import Database, memberships, subscribers
from tests.conftest import REPO


def _count(db: Database, table=subscribers) -> int:  # type: ignore[no-untyped-def]
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


MIXED = (
    "\ufeffEmail;Name;Interests;Status;Company\n"  # BOM, ';' delimiter, header case
    "ok1@example.org;Ana;Kazakhstan|energy;;Acme\n"  # line 2
    "\n"  # line 3: empty line, skipped silently
    "not an address;Bad;;;\n"  # line 4
    'ok2@example.org;"Lee; Bo, Jr.";Uzbekistan;active;"Big, Co"\n'  # line 5: quoted delimiters
    "OK1@Example.org;Duplicate in other case;;;\n"  # line 6
    "ok3@example.org;Mo;Mongolia;;\n"  # line 7: unknown interest
    f"ok4@example.org;{'x' * 5000};;;\n"  # line 8: very long field
    "ok5@example.org;Ed;;retired;\n"  # line 9: unknown status
    "ok6@example.org;Zoë;Tajikistan;unconfirmed;\n"  # line 10: good, non-ASCII
    'ok7@example.org;"two\nlines";;;\n'  # lines 11-12: line break inside a value
    "ok8@example.org;Extra;;;;;;\n"  # line 13: too many fields
    "ok9@example.org;Gone;;unsubscribed;\n"  # line 14: good, stays unsubscribed
)


def test_control_characters_in_a_name_are_refused_naming_the_line(
    db: Database, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    path = tmp_path / "control.csv"
    path.write_text(
        "email,name\n"
        "tab@example.org,Tab\tSeparated\n"  # line 2: a tab is fine
        "vt@example.org,Vertical\x0bTab\n"  # line 3
        "nel@example.org,Next\x85Line\n"  # line 4: C1
        "ls@example.org,Line\u2028Separator\n"  # line 5
        f"long@example.org,{'n' * 201}\n",  # line 6: longer than the column
        encoding="utf-8",
    )
    rejected: list[tuple[int, str]] = []
    report = import_csv(
        db, path, "weekly", vocabulary, on_reject=lambda n, r: rejected.append((n, r))
    )
    assert rejected == [
        (3, "column 'name' contains a control character (U+000B)"),
        (4, "column 'name' contains a control character (U+0085)"),
        (5, "column 'name' contains a control character (U+2028)"),
        (6, "column 'name' is longer than 200 characters"),
    ]
    assert report.added == 1


def test_mixed_csv_imports_good_rows_and_reports_every_bad_one_by_line(
    db: Database, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    data = MIXED.encode("utf-8") + b"bad\xff\xfe@example.org;Latin;;;\n"  # line 15: not UTF-8
    data += b"ok10@example.org;Last;;;\n"  # line 16
    path.write_bytes(data)
    rejected: list[tuple[int, str]] = []
    report = import_csv(
        db, path, "weekly", vocabulary, batch_size=3, on_reject=lambda n, r: rejected.append((n, r))
    )
    lines = {n: r for n, r in rejected}
    assert sorted(lines) == [4, 6, 7, 8, 9, 11, 13, 15]
    assert "bad address 'not an address'" in lines[4]
    assert "duplicate of line 2" in lines[6]
    assert "unknown interest 'Mongolia'" in lines[7]
    assert "longer than 1000 characters" in lines[8]
    assert "unknown status 'retired'" in lines[9]
    assert "line break" in lines[11]
    assert "8 fields, but the header has 5" in lines[13]
    assert "not valid UTF-8" in lines[15]
    assert (report.added, report.rejected, report.rows) == (5, 8, 13)
    with db.connect() as conn:
        ana = audience.get(conn, "ok1@example.org")
        assert (ana.name, ana.interests, ana.attributes) == (
            "Ana",
            "Kazakhstan;energy",
            {"company": "Acme"},
        )
        bo = audience.get(conn, "ok2@example.org")
        assert bo.name == "Lee; Bo, Jr." and bo.attributes == {"company": "Big, Co"}
        assert audience.get(conn, "ok6@example.org").status == "unconfirmed"
        assert audience.get(conn, "ok9@example.org").status == "unsubscribed"
    assert _count(db) == 5 and _count(db, memberships) == 5


def test_reimport_counts_unchanged_updated_and_kept(
    db: Database, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    path = tmp_path / "a.csv"
    path.write_text("email,name,status\na@example.org,A,\nb@example.org,B,\nc@example.org,C,\n")
    import_csv(db, path, "weekly", vocabulary)
    with db.connect() as conn, conn.begin():
        audience.unsubscribe(conn, "c@example.org")
    path.write_text(
        "email,name,status\na@example.org,A,\nb@example.org,Bee,\nC@EXAMPLE.ORG,C,active\nd@example.org,D,\n"
    )
    report = import_csv(db, path, "weekly", vocabulary)
    assert (report.added, report.updated, report.unchanged, report.kept) == (1, 1, 1, 1)
    with db.connect() as conn:
        assert audience.get(conn, "c@example.org").status == "unsubscribed"


def test_dry_run_changes_nothing_but_reports_the_same(
    db: Database, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED, encoding="utf-8")
    dry = import_csv(db, path, "weekly", vocabulary, dry_run=True, batch_size=2)
    assert _count(db) == 0
    with db.connect() as conn:
        assert audience.list_counts(conn) == []
    real = import_csv(db, path, "weekly", vocabulary, batch_size=2)
    assert (dry.added, dry.rejected, dry.rows) == (real.added, real.rejected, real.rows)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"name,city\nA,B\n", "no 'email' column"),
        (b"email,Email\nx,y\n", "appears twice"),
    ],
)
def test_unusable_files_fail_naming_the_file(
    db: Database, vocabulary: Vocabulary, tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    with pytest.raises(CSVImportError) as info:
        import_csv(db, path, "weekly", vocabulary)
    assert str(info.value).startswith(str(path)) and expected in str(info.value)


def test_killed_import_leaves_whole_batches_and_a_rerun_completes(
    workspace: Path, tmp_path: Path, db_url: str
) -> None:
    rows, batch = 60_000, 1_000
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("email,name,interests\n")
        for i in range(rows):
            fh.write(f"user{i:06d}@example.org,User {i},Kazakhstan\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
        "NEWSLETTER_DATABASE__URL": db_url,
        "NEWSLETTER_DATABASE__IMPORT_BATCH_SIZE": str(batch),
        "PYTHONPATH": str(REPO),
    }
    cmd = [
        sys.executable,
        "-m",
        "newsletter",
        "subscribers",
        "import",
        str(path),
        "--list",
        "weekly",
    ]
    proc = subprocess.Popen(
        cmd, cwd=workspace, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    watcher = create_engine(db_url)  # plain reads: never races the child's migration
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                with watcher.connect() as conn:
                    if (
                        conn.execute(text("SELECT count(*) FROM subscribers")).scalar() or 0
                    ) >= 3 * batch:
                        break
            except SQLAlchemyError:  # the child has not created the schema yet
                pass
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
        watcher.dispose()
    db = Database(db_url)
    done = _count(db)
    assert 0 < done < rows, "the kill came too late to test anything"
    assert done % batch == 0, f"{done} rows: a batch was half-written"
    assert _count(db, memberships) == done
    rerun = subprocess.run(cmd, cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{rows - done} added" in rerun.stdout and f"{done} unchanged" in rerun.stdout
    assert _count(db) == rows
    db.dispose()


# -- properties -------------------------------------------------------------------------------

_atext = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_%+-",
    min_size=1,
    max_size=12,
)
_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_address = st.builds(
    lambda parts, labels, tld: ".".join(parts) + "@" + ".".join(labels) + "." + tld,
    st.lists(_atext, min_size=1, max_size=3),
    st.lists(_label, min_size=1, max_size=3),
    st.sampled_from(["org", "COM", "io", "Kz", "test", "local", "uz", "xn--p1ai"]),
)


@given(address=_address)
@hsettings(max_examples=400, deadline=None)
def test_fast_path_agrees_with_email_validator(address: str) -> None:
    try:
        expected = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    fast = _fast(address)
    if fast is not None:  # the fast path only ever accepts what email-validator accepts
        assert expected is not None and fast == (expected, expected.lower())
    try:
        assert normalise(address) == (expected, expected.lower())  # type: ignore[union-attr]
    except AddressError:
        assert expected is None


@given(st.text(max_size=40))
@hsettings(max_examples=300, deadline=None)
def test_normalise_never_crashes_and_keys_are_lowercase(raw: str) -> None:
    try:
        stored, key = normalise(raw)
    except AddressError:
        return
    assert key == stored.lower() and "@" in stored and stored == stored.strip()


_name = st.text(
    alphabet=st.characters(
        blacklist_categories=["Cs", "Cc"], blacklist_characters="\r\n\x85\u2028\u2029"
    ),
    max_size=30,
).map(str.strip)
_person = st.fixed_dictionaries(
    {
        "name": _name,
        "interests": st.lists(
            st.sampled_from(["Kazakhstan", "Uzbekistan", "Regional", "energy", "society"]),
            unique=True,
        ),
        "status": st.sampled_from(["active", "unconfirmed", "unsubscribed", "bounced"]),
        "city": _name,
    }
)


@given(people=st.lists(_person, max_size=12))
@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_csv_round_trip_keeps_every_field(
    people: list[dict[str, object]],
    vocabulary: Vocabulary,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import csv
    import io

    tmp = tmp_path_factory.mktemp("rt")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["email", "name", "interests", "status", "city"])
    for i, p in enumerate(people):
        writer.writerow(
            [f"p{i}@example.org", p["name"], "|".join(p["interests"]), p["status"], p["city"]]
        )  # type: ignore[arg-type]
    first_file = tmp / "first.csv"
    first_file.write_text(buffer.getvalue(), encoding="utf-8")
    exports = []
    for n in range(2):
        db = Database(f"sqlite:///{tmp / f'db{n}.sqlite'}")
        report = import_csv(db, first_file if n == 0 else tmp / "export0.csv", "weekly", vocabulary)
        assert report.rejected == 0 and report.added == len(people)
        out = io.StringIO()
        with db.connect() as conn:
            audience.export(conn, "weekly", out)
            for i, p in enumerate(people):
                sub = audience.get(conn, f"p{i}@example.org")
                assert (sub.name, sub.status) == (p["name"], p["status"])
                assert sorted(sub.interests.split(";")) == sorted(p["interests"] or [""])  # type: ignore[type-var]
                assert sub.attributes == ({"city": p["city"]} if p["city"] else {})
        db.dispose()
        (tmp / f"export{n}.csv").write_text(out.getvalue(), encoding="utf-8")
        exports.append(out.getvalue())
    assert exports[0] == exports[1]
