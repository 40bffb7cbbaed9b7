"""``newsletter bounces``: read returned mail (bounces, complaints, mailto unsubscribes) and
report on it."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.cli.common import err, handles_errors, out, state
from newsletter.errors import DatabaseError

if TYPE_CHECKING:  # imported where used: every command loads this module
    from newsletter.inbound.service import Tally

bounces_app = typer.Typer(
    help="Returned mail: bounces, complaints and mailto unsubscribes.\n\n"
    "Example: newsletter bounces import ~/Maildir/.bounces",
    no_args_is_help=True,
)
EX_TEMPFAIL = 75  # sendmail's "try again later": an MTA piping a return keeps it and retries


@bounces_app.command("import")
@handles_errors
def import_command(
    ctx: typer.Context,
    path: Annotated[
        str, typer.Argument(help="A Maildir, an mbox file, one .eml, a folder, or - (stdin).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the tally as JSON.")] = False,
) -> None:
    """Read returned mail and act on it: bounced, complained, unsubscribed.

    Reading the same mail again changes nothing. From an MTA, pipe each return:
    a Postfix alias 'bounces: "|newsletter -c /srv/news/newsletter.toml bounces import -"'.
    Example: newsletter bounces import ~/Maildir/.bounces
    """
    from newsletter.inbound.factory import make_mailroom, make_policy
    from newsletter.inbound.mailboxes import messages
    from newsletter.inbound.service import read_returns

    envelope = os.environ.get("ORIGINAL_RECIPIENT") or os.environ.get("RECIPIENT") or ""
    try:
        st = state(ctx)
        room = make_mailroom(st.settings, envelope if path == "-" else "")
        tally = read_returns(st.database, messages(path), room, make_policy(st.settings))
    except DatabaseError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EX_TEMPFAIL if path == "-" else 1) from None
    show_tally(tally, as_json)


@bounces_app.command("fetch")
@handles_errors
def fetch_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tally as JSON.")] = False,
) -> None:
    """Read the IMAP mailbox of returns (bounces.imap_*); move what was read to the
    processed folder (bounces.imap_done_folder).

    Over TLS, the certificate verified; the password is never printed.
    Example: newsletter bounces fetch
    """
    from newsletter.inbound.factory import make_imap_config, make_mailroom, make_policy
    from newsletter.inbound.service import fetch_returns

    st = state(ctx)
    config = make_imap_config(st.settings)
    tally = fetch_returns(st.database, config, make_mailroom(st.settings), make_policy(st.settings))
    show_tally(tally, as_json)


def show_tally(tally: Tally, as_json: bool) -> None:
    for line in tally.problems:
        err.print(line, markup=False)
    if as_json:
        out.print(json.dumps(tally.to_json(), indent=2), markup=False)
        return
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(tally.kinds.items())) or "nothing to act on"
    changes = ", ".join(f"{n} now {s}" for s, n in sorted(tally.changed.items())) or "no change"
    out.print(
        f"read {tally.read} message(s): {kinds}; subscribers: {changes}; "
        f"{tally.repeats} seen before, {tally.unmatched} naming nobody on the list, "
        f"{len(tally.problems)} refused" + (f"; {tally.moved} moved" if tally.moved else ""),
        markup=False,
    )


@bounces_app.command("report")
@handles_errors
def report_command(
    ctx: typer.Context,
    issue: Annotated[str | None, typer.Argument(help="Only this issue (YYYY-MM-DD).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Count returned mail by kind, reason, domain and issue; show the sender alarm.

    Example: newsletter bounces report 2026-11-16
    """
    from newsletter.inbound.service import report

    with state(ctx).database.connect() as conn:
        data = report(conn, issue)
    if as_json:
        out.print(json.dumps(data, indent=2), markup=False)
        return
    out.print(f"returns for {data['issue']}:", markup=False)
    for title, key, columns in (
        ("by kind", "by_kind", ("kind",)),
        ("by reason", "by_reason", ("kind", "reason")),
        ("by domain", "by_domain", ("domain", "kind")),
        ("by issue", "by_issue", ("issue", "kind")),
    ):
        out.print(f"  {title}:", markup=False)
        for row in data[key] or [{"n": 0, **dict.fromkeys(columns, "-")}]:
            out.print(
                f"    {row['n']:>6}  " + "  ".join(str(row[c]) for c in columns), markup=False
            )
    out.print(alarm_line(data["sender_alarm"]), markup=False)


def alarm_line(alarm: dict[str, object] | None) -> str:
    if not alarm:
        return "  sender alarm: none (no refusal aimed at the sender)"
    word = "ALARM" if alarm["alarm"] else "ok"
    share = float(alarm["share"])  # type: ignore[arg-type]
    return (
        f"  sender alarm: {word}: {alarm['refused']} refusal(s) aimed at the sender for "
        f"{alarm['issue']} ({share:.1%} of {alarm['sent']} sent): block lists, spam filters, "
        "policy or DMARC; check the sending IP and the domain's SPF, DKIM and DMARC"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(bounces_app, name="bounces")
