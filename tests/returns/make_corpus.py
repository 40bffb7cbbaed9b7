"""Writes the corpus of returned mail in tests/returns/corpus/ and its expected verdicts in
tests/returns/expected.json. The shapes follow what each MTA or provider really sends (their
texts, field order and quirks); the Postfix ones in corpus/postfix-real-*.eml were made by a real
Postfix (tests/returns/postfix_returns.sh) and are not written here.

Run: .venv/bin/python tests/returns/make_corpus.py
"""

from __future__ import annotations

import json
from pathlib import Path

from newsletter.core.tokens import Signer
from newsletter.core.verp import make_ref

HERE = Path(__file__).resolve().parent
KEY = b"returns-corpus-key-0123456789abcdef"
SIGNER = Signer(KEY)
ISSUE = "2026-11-16"
DOMAIN = "news.example.org"
# The subscribers of the corpus database, in insertion order (their ids are 1, 2, ...).
SUBSCRIBERS = [
    "aigerim@mail.kz", "bakyt@gmail.com", "dilnoza@yahoo.com", "farrukh@outlook.com",
    "gulnara@corp.example.com", "james@example.co.uk", "lena@web.de", "marat@mail.ru",
    "nodira@yandex.ru", "oliver@hotmail.com", "priya@aol.com", "rustam@icloud.com",
    "sanjar@protonmail.com", "talgat@exim.example.net", "ulan@qmail.example.net",
    "yuki@sendmail.example.jp", "zarina@courier.example.tj", "anna@domino.example.de",
]  # fmt: skip


def sid(email: str) -> int:
    return SUBSCRIBERS.index(email) + 1


def ref(email: str) -> str:
    return make_ref(SIGNER, ISSUE, sid(email))


def verp(email: str) -> str:
    return f"bounces+{ref(email)}@{DOMAIN}"


def message_id(email: str) -> str:
    return f"<{ISSUE}.{sid(email)}.{SIGNER.message_id_tag(ISSUE, sid(email))}@{DOMAIN}>"


def original_headers(email: str, *, ref_header: bool = True, mid: bool = True) -> str:
    lines = [
        f"Return-Path: <{verp(email)}>",
        "From: Central Asia Weekly <weekly@news.example.org>",
        f"To: {email}",
        "Subject: Central Asia Weekly — 16 November 2026",
        "Date: Mon, 16 Nov 2026 06:00:00 +0000",
    ]
    if mid:
        lines.append(f"Message-ID: {message_id(email)}")
    if ref_header:
        lines.append(f"X-Newsletter-Ref: {ref(email)}")
    lines.append(
        "List-Unsubscribe: <https://news.example.org/u/TOKEN>, <mailto:unsubscribe@news.example.org>"
    )
    return "\n".join(lines)


def dsn(
    *,
    email: str,
    status: str,
    diagnostic: str,
    mta: str,
    text: str,
    to: str,
    subject: str = "Undelivered Mail Returned to Sender",
    sender: str = "MAILER-DAEMON@{mta} (Mail Delivery System)",
    action: str = "failed",
    quote: str = "headers",
    ref_header: bool = True,
    mid: bool = True,
    remote: str = "",
    extra: str = "",
) -> str:
    quoted = original_headers(email, ref_header=ref_header, mid=mid)
    if quote == "headers":
        original = f"Content-Type: text/rfc822-headers\n\n{quoted}\n"
    elif quote == "message":
        original = f"Content-Type: message/rfc822\n\n{quoted}\n\nThe issue's text.\n"
    else:
        original = ""
    diag = f"Diagnostic-Code: smtp; {diagnostic}\n" if diagnostic else ""
    rmta = f"Remote-MTA: dns; {remote}\n" if remote else ""
    parts = [
        f"Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n{text}\n",
        "Content-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; {mta}\nArrival-Date: Mon, 16 Nov 2026 06:00:01 +0000\n\n"
        f"Final-Recipient: rfc822; {email}\nOriginal-Recipient: rfc822;{email}\n"
        f"Action: {action}\nStatus: {status}\n{rmta}{diag}",
    ]
    if original:
        parts.append(f"Content-Description: Undelivered Message Headers\n{original}")
    body = "".join(f"--BOUNDARY\n{p}\n" for p in parts) + "--BOUNDARY--\n"
    return (
        f"Return-Path: <>\nDelivered-To: {to}\nFrom: {sender.format(mta=mta)}\n"
        f"To: {to}\nSubject: {subject}\nDate: Mon, 16 Nov 2026 06:00:05 +0000\n"
        f"Message-ID: <dsn.{sid(email)}.{status}@{mta}>\nAuto-Submitted: auto-replied\n{extra}"
        "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;\n"
        '\tboundary="BOUNDARY"\n\nThis is a MIME-encapsulated message.\n\n' + body
    )


def plain(*, sender: str, to: str, subject: str, body: str, headers: str = "", mid: str) -> str:
    return (
        f"Return-Path: <>\nDelivered-To: {to}\nFrom: {sender}\nTo: {to}\nSubject: {subject}\n"
        f"Date: Mon, 16 Nov 2026 06:10:00 +0000\nMessage-ID: <{mid}>\n{headers}"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n" + body
    )


SAMPLES: list[tuple[str, str, str, str | None]] = []  # (name, raw, kind, subscriber email)


def add(name: str, raw: str, kind: str, email: str | None) -> None:
    SAMPLES.append((name, raw, kind, email))


def exchange_like() -> None:
    # Exchange / Office 365 NDRs: DSNs with their own texts and status codes.
    for email, status, diag, kind in [
        (
            "farrukh@outlook.com",
            "5.1.10",
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
            "hard",
        ),
        (
            "gulnara@corp.example.com",
            "5.4.1",
            "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [BN8NAM11FT003.eop-nam11.prod.protection.outlook.com]",
            "hard",
        ),
        (
            "oliver@hotmail.com",
            "5.7.1",
            "550 5.7.1 Unfortunately, messages from [203.0.113.9] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).",
            "sender",
        ),
        (
            "farrukh@outlook.com",
            "5.2.2",
            "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
            "soft",
        ),
        (
            "gulnara@corp.example.com",
            "5.7.509",
            "550 5.7.509 Access denied, sending domain news.example.org does not pass DMARC verification and has a DMARC policy of reject.",
            "sender",
        ),
    ]:
        text = (
            "Delivery has failed to these recipients or groups:\n\n"
            f"{email}\nYour message couldn't be delivered.\n\n"
            "Diagnostic information for administrators:\n\n"
            f"Generating server: BN8PR12MB3377.namprd12.prod.outlook.com\n{email}\n{diag}"
        )
        add(
            f"exchange-{status}-{email.split('@')[0]}",
            dsn(
                email=email,
                status=status,
                diagnostic=diag,
                mta="BN8PR12MB3377.namprd12.prod.outlook.com",
                text=text,
                to=verp(email),
                subject="Undeliverable: Central Asia Weekly — 16 November 2026",
                sender="postmaster@outlook.com",
                quote="message",
            ),
            kind,
            email,
        )


def gmail() -> None:
    for email, status, diag, kind in [
        (
            "bakyt@gmail.com",
            "5.1.1",
            "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser a1-20020a05 - gsmtp",
            "hard",
        ),
        (
            "bakyt@gmail.com",
            "5.2.1",
            "550-5.2.1 The email account that you tried to reach is disabled. https://support.google.com/mail/?p=DisabledUser z5si - gsmtp",
            "hard",
        ),
        (
            "bakyt@gmail.com",
            "4.2.2",
            "452-4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
            "soft",
        ),
        (
            "bakyt@gmail.com",
            "5.7.26",
            "550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM. - gsmtp",
            "sender",
        ),
        (
            "bakyt@gmail.com",
            "4.7.28",
            "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. - gsmtp",
            "sender",
        ),
    ]:
        text = (
            (
                "** Address not found **\n\n"
                if status == "5.1.1"
                else "** Message not delivered **\n\n"
            )
            + f"Your message wasn't delivered to {email}.\n\nThe response from the remote server was:\n{diag}\n"
        )
        action = "failed"
        add(
            f"gmail-{status}",
            dsn(
                email=email,
                status=status,
                diagnostic=diag,
                mta="googlemail.com",
                text=text,
                to=f"bounces@{DOMAIN}",
                subject="Delivery Status Notification (Failure)",
                sender="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
                action=action,
                quote="message",
                remote="gmail-smtp-in.l.google.com.",
            ),
            kind,
            email,
        )


def ses_and_others() -> None:
    # Amazon SES forwards bounces as DSNs from its own MTA.
    for email, status, diag, kind in [
        ("priya@aol.com", "5.1.1", "smtp; 550 5.1.1 user unknown", "hard"),
        (
            "rustam@icloud.com",
            "5.3.0",
            "smtp; 550 5.7.1 [CS01] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137",
            "sender",
        ),
        ("sanjar@protonmail.com", "5.0.0", "smtp; 550 5.0.0 Recipient rejected", "soft"),
    ]:
        text = f"An error occurred while trying to deliver the mail to the following recipients:\n{email}\n"
        add(
            f"ses-{status}-{email.split('@')[0]}",
            dsn(
                email=email,
                status=status,
                diagnostic=diag.removeprefix("smtp; "),
                mta="a8-30.smtp-out.amazonses.com",
                text=text,
                to=verp(email),
                subject="Delivery Status Notification (Failure)",
                sender="MAILER-DAEMON@amazonses.com",
                quote="none",
            ),
            kind,
            email,
        )
    # Courier
    email = "zarina@courier.example.tj"
    add(
        "courier-5.1.1",
        dsn(
            email=email,
            status="5.0.0",
            diagnostic="550 User unknown.",
            mta="mail.courier.example.tj",
            text="This is a delivery status notification from mail.courier.example.tj,\nrunning the Courier mail server.\n\n"
            f"The original message was received on Mon, 16 Nov 2026.\n\n<{email}>: 550 User unknown.\n",
            to=verp(email),
            subject="NOTICE: mail delivery status.",
            sender="Courier mail server at mail.courier.example.tj <@>",
        ),
        "hard",
        email,
    )
    # Lotus Domino
    email = "anna@domino.example.de"
    add(
        "domino-no-such-user",
        dsn(
            email=email,
            status="5.0.0",
            diagnostic="",
            mta="notes.domino.example.de",
            text=f"Your message\n\n  Subject: Central Asia Weekly\n\nwas not delivered to:\n\n  {email}\n\nbecause:\n\n  User anna (anna@domino.example.de) not listed in Domino Directory\n",
            to=f"bounces@{DOMAIN}",
            subject="DELIVERY FAILURE: User anna (anna@domino.example.de) not listed in Domino Directory",
            sender="Postmaster@domino.example.de",
            quote="headers",
            ref_header=False,
        ),
        "hard",
        email,
    )


def postfix_like() -> None:
    reasons = [
        (
            "aigerim@mail.kz",
            "5.1.1",
            "550 5.1.1 <aigerim@mail.kz>: Recipient address rejected: User unknown in virtual mailbox table",
            "hard",
        ),
        (
            "marat@mail.ru",
            "5.1.1",
            "550 Message was not accepted -- invalid mailbox.  Local mailbox marat@mail.ru is unavailable: user not found",
            "hard",
        ),
        ("nodira@yandex.ru", "5.2.2", "552 5.2.2 Mailbox size limit exceeded", "soft"),
        (
            "lena@web.de",
            "5.7.1",
            "554-gmx.net (mxgmx016) Nemesis ESMTP Service not available 554-No SMTP service 554-Bad DNS PTR resource record. 554 Reject due to policy restrictions.",
            "sender",
        ),
        ("james@example.co.uk", "5.4.4", "", "hard"),
        (
            "aigerim@mail.kz",
            "5.7.1",
            "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org",
            "sender",
        ),
        ("marat@mail.ru", "5.2.1", "550 5.2.1 Mailbox disabled for this recipient", "hard"),
        ("nodira@yandex.ru", "4.4.7", "", "soft"),
        (
            "lena@web.de",
            "5.6.0",
            "554 5.6.0 Message rejected: content filter: suspected spam",
            "sender",
        ),
        (
            "james@example.co.uk",
            "5.1.6",
            "550 5.1.6 Recipient no longer on server: james has moved",
            "hard",
        ),
    ]
    for n, (email, status, diag, kind) in enumerate(reasons):
        text = (
            f"This is the mail system at host mx.{DOMAIN}.\n\nI'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients. It's attached below.\n\n"
            "For further assistance, please send mail to postmaster.\n\n"
            "                   The mail system\n\n"
            + (
                f"<{email}>: host mx.remote[198.51.100.7] said: {diag} (in reply to RCPT TO command)\n"
                if diag
                else f"<{email}>: Host or domain name not found. Name service error for name={email.split('@')[1]} type=MX: Host not found, try again\n"
                if status == "5.4.4"
                else f"<{email}>: delivery temporarily suspended: connect to mx.remote[198.51.100.7]:25: Connection timed out\n"
            )
        )
        idents = ["verp", "header", "mid", "address"]
        ident = idents[n % 4]
        to = verp(email) if ident == "verp" else f"bounces@{DOMAIN}"
        add(
            f"postfix-{status}-{n}-{ident}",
            dsn(
                email=email,
                status=status,
                diagnostic=diag,
                mta=f"mx.{DOMAIN}",
                text=text,
                to=to,
                quote="none" if ident == "address" else "headers",
                ref_header=ident in ("verp", "header"),
                mid=ident != "header",
            ),
            kind,
            email,
        )
    email = "aigerim@mail.kz"
    add(
        "postfix-delayed",
        dsn(
            email=email,
            status="4.4.1",
            diagnostic="",
            mta=f"mx.{DOMAIN}",
            action="delayed",
            subject="Delayed Mail (still being retried)",
            text="This is the mail system at host mx.\n\n####################################################################\n"
            "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n####################################################################\n\n"
            f"Your message could not be delivered for more than 4 hour(s).\nIt will be retried until it is 5 day(s) old.\n\n<{email}>: connect to mx.mail.kz[203.0.113.4]:25: Connection timed out\n",
            to=verp(email),
        ),
        "delayed",
        email,
    )


def text_mtas() -> None:
    for email, line, kind in [
        (
            "talgat@exim.example.net",
            "550 5.1.1 <talgat@exim.example.net>: Recipient address rejected: User unknown",
            "hard",
        ),
        ("talgat@exim.example.net", "552 5.2.2 Quota exceeded (mailbox for user is full)", "soft"),
        (
            "talgat@exim.example.net",
            "550 5.7.1 Message rejected as spam by Content Filtering.",
            "sender",
        ),
        ("talgat@exim.example.net", "550 Unrouteable address", "hard"),
    ]:
        body = (
            "This message was created automatically by mail delivery software.\n\n"
            "A message that you sent could not be delivered to one or more of its\n"
            "recipients. This is a permanent error. The following address(es) failed:\n\n"
            f"  {email}\n    host mx.exim.example.net [198.51.100.20]\n"
            f"    SMTP error from remote mail server after RCPT TO:<{email}>:\n    {line}\n\n"
            "------ This is a copy of the message, including all the headers. ------\n\n"
            + original_headers(email)
            + "\n\nThe issue's text.\n"
        )
        add(
            f"exim-{line[:3]}-{kind}",
            plain(
                sender="Mail Delivery System <Mailer-Daemon@exim.example.net>",
                to=verp(email),
                subject="Mail delivery failed: returning message to sender",
                body=body,
                headers=f"X-Failed-Recipients: {email}\nAuto-Submitted: auto-replied\n",
                mid=f"E1exim-{kind}@exim.example.net",
            ),
            kind,
            email,
        )
    email = "talgat@exim.example.net"
    add(
        "exim-delayed",
        plain(
            sender="Mail Delivery System <Mailer-Daemon@exim.example.net>",
            to=verp(email),
            subject="Warning: message 1kXyZa-0001Ab-Cd delayed 24 hours",
            body="This message was created automatically by mail delivery software.\n"
            "A message that you sent has not yet been delivered to one or more of its\n"
            f"recipients after more than 24 hours on the queue on exim.example.net.\n\n  {email}\n"
            "    Delay reason: SMTP error from remote mail server after RCPT TO:<...>:\n    451 4.7.1 Greylisted, please try again later\n\n"
            "No action is required on your part. Delivery attempts will continue for\nsome time, and this warning may be repeated at intervals if the message\nremains undelivered.\n",
            headers="Auto-Submitted: auto-replied\n",
            mid="warn@exim.example.net",
        ),
        "delayed",
        email,
    )
    for n, (email, said, kind) in enumerate(
        [
            (
                "ulan@qmail.example.net",
                "Remote host said: 550 5.1.1 <ulan@qmail.example.net>: Recipient address rejected: User unknown in local recipient table",
                "hard",
            ),
            ("ulan@qmail.example.net", "Sorry, no mailbox here by that name. (#5.1.1)", "hard"),
            (
                "ulan@qmail.example.net",
                "Remote host said: 552 5.2.2 This message is larger than the current system limit or the recipient's mailbox is full",
                "soft",
            ),
            (
                "ulan@qmail.example.net",
                "Sorry, I couldn't find any host named qmail.example.net. (#5.1.2)",
                "hard",
            ),
            (
                "ulan@qmail.example.net",
                "Remote host said: 554 5.7.1 Rejected: IP 203.0.113.9 listed on bl.spamcop.net",
                "sender",
            ),
        ]
    ):
        body = (
            "Hi. This is the qmail-send program at qmail.example.net.\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
            f"<{email}>:\n198.51.100.30 does not like recipient.\n{said}\nGiving up on 198.51.100.30.\n\n"
            "--- Below this line is a copy of the message.\n\n"
            + original_headers(email, ref_header=n % 2 == 0)
            + "\n\nText.\n"
        )
        add(
            f"qmail-{n}-{kind}",
            plain(
                sender="MAILER-DAEMON@qmail.example.net",
                to=f"bounces@{DOMAIN}",
                subject="failure notice",
                body=body,
                mid=f"q{n}@qmail.example.net",
            ),
            kind,
            email,
        )
    for n, (email, reason, kind) in enumerate(
        [
            (
                "yuki@sendmail.example.jp",
                "550 5.1.1 <yuki@sendmail.example.jp>... User unknown",
                "hard",
            ),
            (
                "yuki@sendmail.example.jp",
                "552 5.2.2 <yuki@sendmail.example.jp>... Mailbox full",
                "soft",
            ),
            (
                "yuki@sendmail.example.jp",
                "550 5.7.1 <yuki@sendmail.example.jp>... Mail from 203.0.113.9 refused by blackhole site",
                "sender",
            ),
        ]
    ):
        body = (
            "The original message was received at Mon, 16 Nov 2026 15:00:01 +0900\n"
            "from mail.news.example.org [203.0.113.9]\n\n"
            "   ----- The following addresses had permanent fatal errors -----\n"
            f"<{email}>\n    (reason: {reason})\n\n   ----- Transcript of session follows -----\n"
            f"... while talking to mx.sendmail.example.jp.:\n>>> RCPT To:<{email}>\n<<< {reason}\n"
            f"{reason}\n\n   ----- Original message follows -----\n\n"
            + original_headers(email)
            + "\n\nText.\n"
        )
        add(
            f"sendmail-{n}-{kind}",
            plain(
                sender="Mail Delivery Subsystem <MAILER-DAEMON@sendmail.example.jp>",
                to=verp(email),
                subject="Returned mail: see transcript for details",
                body=body,
                mid=f"s{n}@sendmail.example.jp",
            ),
            kind,
            email,
        )
    for n, (email, said, kind) in enumerate(
        [
            (
                "dilnoza@yahoo.com",
                "554: delivery error: dd This user doesn't have a yahoo.com account (dilnoza@yahoo.com) [0] - mta1163.mail.gq1.yahoo.com",
                "hard",
            ),
            ("dilnoza@yahoo.com", "552 1 Requested mail action aborted, mailbox not found", "hard"),
            (
                "dilnoza@yahoo.com",
                "554 5.7.9 Message not accepted for policy reasons.  See https://senders.yahooinc.com/error-codes",
                "sender",
            ),
            (
                "dilnoza@yahoo.com",
                "552 Mailbox size limit exceeded - mta1234.mail.yahoo.com",
                "soft",
            ),
        ]
    ):
        body = (
            "Sorry, we were unable to deliver your message to the following address.\n\n"
            f"<{email}>:\n{said}\n\n--- Below this line is a copy of the message.\n\n"
            + original_headers(email, ref_header=False)
            + "\n\nText.\n"
        )
        add(
            f"yahoo-{n}-{kind}",
            plain(
                sender="MAILER-DAEMON@yahoo.com",
                to=verp(email),
                subject="Failure Notice",
                body=body,
                mid=f"y{n}@yahoo.com",
            ),
            kind,
            email,
        )


def arf() -> None:
    for n, (email, agent, extra) in enumerate(
        [
            ("dilnoza@yahoo.com", "Yahoo!-Mail-Feedback/2.0", ""),
            (
                "oliver@hotmail.com",
                "Microsoft JMRP",
                "X-HmXmrOriginalRecipient: <oliver@hotmail.com>\n",
            ),
            ("priya@aol.com", "AOL SComp", ""),
            ("marat@mail.ru", "Mail.Ru Feedback Loop", f"Original-Rcpt-To: {'marat@mail.ru'}\n"),
            ("lena@web.de", "GMX/WEB.DE FBL", ""),
        ]
    ):
        ident = ["header", "mid", "verp", "address", "header"][n]
        rcpt = f"Original-Rcpt-To: {email}\n" if ident == "address" else ""
        to = verp(email) if ident == "verp" else f"fbl@{DOMAIN}"
        quoted = original_headers(
            email, ref_header=ident in ("header", "verp"), mid=ident != "header"
        )
        if ident == "address":
            quoted = "\n".join(
                line
                for line in quoted.splitlines()
                if not line.startswith(("Message-ID", "Return-Path"))
            )
        raw = (
            f"From: feedback@{email.split('@')[1]}\nTo: {to}\nSubject: FW: Central Asia Weekly\n"
            f"Date: Tue, 17 Nov 2026 09:00:00 +0000\nMessage-ID: <arf{n}@{email.split('@')[1]}>\nMIME-Version: 1.0\n"
            'Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"\n\n'
            "--ARF\nContent-Type: text/plain\n\nThis is an email abuse report for an email message received.\n\n"
            f"--ARF\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: {agent}\nVersion: 1\n{rcpt}{extra}"
            "Arrival-Date: Mon, 16 Nov 2026 06:00:03 +0000\n\n"
            f"--ARF\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n{quoted}\n\nText.\n--ARF--\n"
        )
        add(f"arf-{n}-{ident}", raw, "complaint", email)
    email = "oliver@hotmail.com"
    raw = (
        f"From: feedback@hotmail.com\nTo: fbl@{DOMAIN}\nSubject: not spam\nMessage-ID: <ns@hotmail.com>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"\n\n'
        "--ARF\nContent-Type: text/plain\n\nReport.\n--ARF\nContent-Type: message/feedback-report\n\n"
        "Feedback-Type: not-spam\nUser-Agent: x\nVersion: 1\n\n"
        f"--ARF\nContent-Type: text/rfc822-headers\n\n{original_headers(email)}\n--ARF--\n"
    )
    add("arf-not-spam", raw, "ignored", email)


def autoreplies() -> None:
    for n, (email, subject, headers) in enumerate(
        [
            (
                "lena@web.de",
                "Abwesenheitsnotiz: Central Asia Weekly",
                "Auto-Submitted: auto-replied\n",
            ),
            (
                "james@example.co.uk",
                "Out of Office: Central Asia Weekly — 16 November 2026",
                "X-Auto-Response-Suppress: All\nAuto-Submitted: auto-generated\n",
            ),
            (
                "farrukh@outlook.com",
                "Automatic reply: Central Asia Weekly",
                "X-MS-Exchange-Inbox-Rules-Loop: farrukh@outlook.com\n",
            ),
            (
                "bakyt@gmail.com",
                "Re: Central Asia Weekly",
                "Auto-Submitted: auto-replied\nPrecedence: bulk\n",
            ),
            ("marat@mail.ru", "Vacation reply", "X-Autoreply: yes\n"),
            (
                "gulnara@corp.example.com",
                "I am out of the office until 30 November",
                "Precedence: auto_reply\n",
            ),
        ]
    ):
        add(
            f"autoreply-{n}",
            plain(
                sender=email,
                to=f"weekly@{DOMAIN}",
                subject=subject,
                body="Thank you for your message. I am away and will reply when I return.\n",
                headers=headers,
                mid=f"auto{n}@x",
            ),
            "autoreply",
            email,
        )


def unsubscribes() -> None:
    from newsletter.core.tokens import Purpose

    for n, email in enumerate(["priya@aol.com", "rustam@icloud.com", "sanjar@protonmail.com"]):
        token = SIGNER.make(Purpose.SUBSCRIBER, sid(email))
        subject = f"unsubscribe {token}" if n < 2 else "Please remove me"
        body = "Sent from my phone\n" if n < 2 else f"unsubscribe {token}\n"
        add(
            f"mailto-unsubscribe-{n}",
            plain(
                sender=email, to=f"unsubscribe@{DOMAIN}", subject=subject, body=body, mid=f"u{n}@x"
            ).replace("Return-Path: <>", f"Return-Path: <{email}>"),
            "unsubscribe",
            email,
        )
    forged = "A" * 43
    add(
        "mailto-unsubscribe-forged",
        plain(
            sender="stranger@evil.example",
            to=f"unsubscribe@{DOMAIN}",
            subject=f"unsubscribe {forged}",
            body="x\n",
            mid="uf@x",
        ),
        "ignored",
        None,
    )


def strangers() -> None:
    add(
        "reply-thanks",
        plain(
            sender="yuki@sendmail.example.jp",
            to=f"weekly@{DOMAIN}",
            subject="Re: Central Asia Weekly",
            body="Thanks, great issue!\n",
            mid="r1@x",
        ).replace("Return-Path: <>", "Return-Path: <yuki@sendmail.example.jp>"),
        "ignored",
        None,
    )
    add(
        "spam-to-bounces",
        plain(
            sender="Prize Office <win@lottery.example>",
            to=f"bounces@{DOMAIN}",
            subject="You have won $1,000,000",
            body="Click here.\n",
            mid="spam@x",
        ).replace("Return-Path: <>", "Return-Path: <win@lottery.example>"),
        "ignored",
        None,
    )
    email = "aigerim@mail.kz"
    forged = f"bounces+{sid(email)}.20261116.0123456789abcdef@{DOMAIN}"
    add(
        "forged-verp",
        dsn(
            email=email,
            status="5.1.1",
            diagnostic="550 5.1.1 User unknown",
            mta="mx.evil.example",
            text="forged",
            to=forged,
            quote="none",
        ),
        "ignored",
        None,
    )


def main() -> None:
    for build in (
        exchange_like,
        gmail,
        ses_and_others,
        postfix_like,
        text_mtas,
        arf,
        autoreplies,
        unsubscribes,
        strangers,
    ):
        build()
    folder = HERE / "corpus"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.eml"):
        if "postfix-real" not in old.name:  # those come from postfix_returns.py
            old.unlink()
    expected = {}
    for n, (name, raw, kind, email) in enumerate(SAMPLES, start=1):
        file = f"{n:03d}-{name}.eml"
        (folder / file).write_text(
            raw.replace("\n", "\r\n") if n % 5 == 0 else raw, encoding="utf-8", newline=""
        )
        expected[file] = {"kind": kind, "subscriber": email}
    real = HERE / "postfix_expected.json"
    if real.exists():
        expected.update(json.loads(real.read_text()))
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"{len(SAMPLES)} written, {len(expected)} in expected.json")


if __name__ == "__main__":
    main()
