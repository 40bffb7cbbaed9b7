"""The send log's two hot statements on PostgreSQL, one round trip each.

On SQLite a claim is a SELECT and an ``executemany`` of UPDATEs, and so is a write of outcomes:
the database is in the process and a statement costs microseconds. On PostgreSQL the same
``executemany`` of 200 rows cost 11 ms of a sender's time a claim and 5.6 ms a write (measured
with 20,000 messages to smtp-sink), most of it psycopg's Python work in the database thread,
taken from the event loop through the GIL. Here a claim is one ``UPDATE ... FROM (SELECT ...
FOR UPDATE SKIP LOCKED) RETURNING`` and a write one ``UPDATE ... FROM unnest(arrays)``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

_CLAIM = """
WITH picked AS (
    SELECT l.id FROM send_log l
    WHERE l.issue = %s AND {where} ORDER BY {order} LIMIT %s FOR UPDATE SKIP LOCKED
)
UPDATE send_log l SET state = 'sending', claimed_by = %s, claimed_at = %s, updated_at = %s
FROM picked, subscribers s
WHERE l.id = picked.id AND s.id = l.subscriber_id
RETURNING l.id, l.subscriber_id, s.email, s.name, s.status, s.interests, l.attempts"""

_RECORD = """
UPDATE send_log l SET state = v.state, last_code = v.code, last_reply = v.reply,
    variant = v.variant, relay = v.relay, next_attempt_at = v.retry_at,
    sent_at = COALESCE(v.sent_at, l.sent_at), attempts = l.attempts + v.tried,
    claimed_by = NULL, claimed_at = NULL, updated_at = %s
FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
            %s::timestamptz[], %s::int[], %s::int[])
    AS v(state, code, reply, variant, relay, retry_at, sent_at, tried, id)
WHERE l.id = v.id"""


def claim(
    conn: Connection, where: str, order: str, params: tuple[Any, ...], marks: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """Rows picked by ``where``/``order`` (``params``: issue, the where's own values, limit),
    marked ``sending`` with ``marks`` (owner, claimed_at, updated_at) in the same statement;
    in id order."""
    query = _CLAIM.format(where=where.replace("?", "%s"), order=order)
    rows = conn.exec_driver_sql(query, (*params, *marks)).fetchall()
    return sorted((tuple(r) for r in rows), key=lambda r: int(r[0]))


def record(conn: Connection, stamp: Any, rows: list[tuple[Any, ...]]) -> bool:
    """Write outcome rows (state, code, reply, variant, relay, retry_at, sent_at, tried, id)
    in one statement; False (nothing written) when a row id comes twice, which one UPDATE
    cannot apply in order: the caller writes those one by one."""
    if len({r[-1] for r in rows}) != len(rows):
        return False
    columns = [list(column) for column in zip(*rows, strict=True)]
    conn.exec_driver_sql(_RECORD, (stamp, *columns))
    return True
