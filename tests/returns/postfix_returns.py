"""Writes corpus/NNN-postfix-real-*.eml: delivery status notifications written by a real
Postfix (a private instance, tests/postfix.py), and their verdicts in postfix_expected.json.

Each message goes through Postfix, which relays it to an aiosmtpd server that refuses it with
the reply below; Postfix then writes and delivers the notice to the message's VERP address.
Needs root and Debian's postfix. Run: .venv/bin/python tests/returns/postfix_returns.py
"""

from __future__ import annotations

import json
import smtplib
import sys
from pathlib import Path

from aiosmtpd.controller import Controller

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from newsletter.delivery.localserver import free_port  # noqa: E402
from tests.postfix import Postfix  # noqa: E402
from tests.returns.make_corpus import original_headers, verp  # noqa: E402

CASES = [  # (recipient, the relay's reply, expected kind)
    ("aigerim@mail.kz", "550 5.1.1 <aigerim@mail.kz>: Recipient address rejected: User unknown in virtual mailbox table", "hard"),
    ("nodira@yandex.ru", "552 5.2.2 <nodira@yandex.ru>: Mailbox full", "soft"),
    ("lena@web.de", "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org", "sender"),
    ("bakyt@gmail.com", "550 5.7.26 Unauthenticated email from news.example.org is not accepted due to domain's DMARC policy", "sender"),
    ("marat@mail.ru", "550 5.2.1 The email account that you tried to reach is disabled", "hard"),
    ("james@example.co.uk", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "hard"),
]  # fmt: skip


class Refuser:
    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        for recipient, reply, _ in CASES:
            if address.lower() == recipient:
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"


def main() -> None:
    relay = Controller(Refuser(), hostname="127.0.0.1", port=free_port())
    relay.start()
    postfix = Postfix(relay.port, free_port())
    try:
        for recipient, _, _ in CASES:
            body = original_headers(recipient) + "\n\nThe issue's text.\n"
            with smtplib.SMTP("127.0.0.1", postfix.smtpd_port, timeout=30) as client:
                client.sendmail(verp(recipient), [recipient], body.encode())
        returns = postfix.wait_for_returns(len(CASES))
        corpus = HERE / "corpus"
        for old in corpus.glob("*postfix-real-*.eml"):
            old.unlink()
        expected = {}
        by_recipient = {}
        for path in returns:
            raw = path.read_bytes()
            for recipient, _, kind in CASES:
                if f"Final-Recipient: rfc822; {recipient}".encode() in raw:
                    by_recipient[recipient] = (raw, kind)
        for n, (recipient, _, kind) in enumerate(CASES, start=901):
            raw, kind = by_recipient[recipient]
            name = f"{n}-postfix-real-{kind}-{recipient.split('@')[0]}.eml"
            (corpus / name).write_bytes(raw)
            expected[name] = {"kind": kind, "subscriber": recipient}
        (HERE / "postfix_expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        print(f"{len(expected)} returns written by Postfix")
    finally:
        postfix.stop()
        relay.stop()


if __name__ == "__main__":
    main()
