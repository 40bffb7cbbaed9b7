"""Subscribers and lists in a real database (SQLite file, and PostgreSQL where it runs)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter import audience
from newsletter.audience.importer import import_csv
from newsletter.core.interests import Vocabulary
from newsletter.errors import AddressError, AudienceError, DatabaseError
from newsletter.storage.db import Database, events, subscribers


def test_empty_database_is_migrated_on_first_use(db: Database) -> None:
    from newsletter.storage.db import SCHEMA_HEAD
    from newsletter.storage.migrate import current_revision, head_revision

    with db.connect() as conn:
        assert current_revision(conn) == head_revision() == SCHEMA_HEAD  # the constant is current
        assert conn.execute(select(func.count()).select_from(subscribers)).scalar() == 0


def test_a_database_behind_the_code_asks_for_db_upgrade(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE subscribers (id INTEGER PRIMARY KEY)")
    with pytest.raises(DatabaseError, match="run 'newsletter db upgrade'"):
        Database(f"sqlite:///{path}").connect()


def test_add_normalises_and_compares_case_insensitively(
    db: Database, vocabulary: Vocabulary
) -> None:
    with db.connect() as conn, conn.begin():
        sub, outcome = audience.add(
            conn,
            "Ana.Lee@Example.ORG",
            "weekly",
            vocabulary,
            name="Ana",
            interests=["kazakhstan", "ENERGY"],
        )
        assert outcome == "added" and sub.email == "Ana.Lee@example.org"
        assert sub.interests == "Kazakhstan;energy" and sub.lists == ["weekly"]
        again, outcome = audience.add(conn, "ana.lee@example.org", "monthly", vocabulary)
        assert outcome == "updated" and again.lists == ["monthly", "weekly"]
        assert conn.execute(select(func.count()).select_from(subscribers)).scalar() == 1


def test_unknown_interest_and_bad_address_are_refused(db: Database, vocabulary: Vocabulary) -> None:
    with db.connect() as conn, conn.begin():
        with pytest.raises(AudienceError, match="unknown interest 'Mongolia'"):
            audience.add(conn, "a@example.org", "weekly", vocabulary, interests=["Mongolia"])
        with pytest.raises(AddressError, match="bad address"):
            audience.add(conn, "not-an-address", "weekly", vocabulary)


def test_unsubscribed_address_is_not_resurrected_by_add(
    db: Database, vocabulary: Vocabulary
) -> None:
    with db.connect() as conn, conn.begin():
        audience.add(conn, "gone@example.org", "weekly", vocabulary)
        audience.unsubscribe(conn, "GONE@example.org")
        with pytest.raises(AudienceError, match="is unsubscribed: it stays that way"):
            audience.add(conn, "gone@example.org", "weekly", vocabulary)
        assert audience.get(conn, "gone@example.org").status == "unsubscribed"
        kinds = [r.kind for r in conn.execute(select(events.c.kind).order_by(events.c.id))]
        assert "cli.unsubscribe" in kinds


def test_unsubscribe_is_idempotent_and_keeps_the_first_date(
    db: Database, vocabulary: Vocabulary
) -> None:
    with db.connect() as conn, conn.begin():
        audience.add(conn, "x@example.org", "weekly", vocabulary)
        first = audience.unsubscribe(conn, "x@example.org").unsubscribed_at
        assert audience.unsubscribe(conn, "x@example.org").unsubscribed_at == first


def test_remove_takes_off_a_list_but_keeps_the_suppression(
    db: Database, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    with db.connect() as conn, conn.begin():
        audience.add(conn, "r@example.org", "weekly", vocabulary)
        audience.unsubscribe(conn, "r@example.org")
        assert audience.remove(conn, "r@example.org", "weekly") == ["weekly"]
        assert audience.get(conn, "r@example.org").lists == []
    csv_file = tmp_path / "again.csv"
    csv_file.write_text("email,status\nr@example.org,active\n")
    report = import_csv(db, csv_file, "weekly", vocabulary)
    assert report.kept == 1 and report.added == 0
    with db.connect() as conn:
        assert audience.get(conn, "r@example.org").status == "unsubscribed"


def test_query_filters_by_list_status_and_interest(db: Database, vocabulary: Vocabulary) -> None:
    with db.connect() as conn, conn.begin():
        audience.add(conn, "a@example.org", "weekly", vocabulary, interests=["energy"])
        audience.add(conn, "b@example.org", "weekly", vocabulary, interests=["Kazakhstan"])
        audience.add(conn, "c@example.org", "other", vocabulary, interests=["energy"])
        audience.unsubscribe(conn, "b@example.org")
        emails = lambda **kw: [s.email for s in audience.query(conn, vocabulary=vocabulary, **kw)]  # noqa: E731
        assert emails(list_name="weekly") == ["a@example.org", "b@example.org"]
        assert emails(interest="energy") == ["a@example.org", "c@example.org"]
        assert emails(list_name="weekly", status="active") == ["a@example.org"]
        with pytest.raises(AudienceError, match="no list named 'nope'"):
            emails(list_name="nope")
        counts = dict(audience.list_counts(conn))
        assert counts["weekly"]["active"] == 1 and counts["weekly"]["unsubscribed"] == 1


def test_export_reimports_to_the_same_state(
    db: Database, vocabulary: Vocabulary, tmp_path: Path, db_url: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "email,name,interests,status,city,source\n"
        'a@example.org,"Lee, Ana",Kazakhstan;energy,active,Almaty,fair\n'
        "b@example.org,Bo,,unsubscribed,,\n"
        'c@example.org,"Cé ""Q"" Ü",Regional,unconfirmed,Osh,\n'
    )
    import_csv(db, source, "weekly", vocabulary)
    first = io.StringIO()
    with db.connect() as conn:
        audience.export(conn, "weekly", first)
    second_db = Database(f"sqlite:///{tmp_path / 'second.db'}")
    exported = tmp_path / "exported.csv"
    exported.write_text(first.getvalue())
    import_csv(second_db, exported, "weekly", vocabulary)
    second = io.StringIO()
    with second_db.connect() as conn:
        audience.export(conn, "weekly", second)
        assert audience.get(conn, "b@example.org").status == "unsubscribed"
    second_db.dispose()
    assert first.getvalue() == second.getvalue()
    assert first.getvalue().splitlines()[0] == "email,name,interests,status,city,source"
