"""Webhooks of sending services over a real uvicorn server: Amazon SES notifications through
SNS (signatures verified with a certificate served by a local HTTP server standing in for SNS)
and Postmark (basic auth). Each acts once; a forged or odd call changes nothing."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from newsletter.audience.importer import import_csv
from newsletter.config import Settings, with_changes
from newsletter.core.tokens import Signer
from newsletter.delivery.transports import MaildirTransport
from newsletter.storage.db import Database, subscribers
from newsletter.web.app import create_app
from tests.conftest import REPO, serve
from tests.test_fetch import Server, body

TOPIC = "arn:aws:sns:eu-central-1:123456789012:newsletter-returns"


def _key_and_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


KEY, CERT = _key_and_certificate()


def _signed(
    fields: dict[str, Any], version: str = "1", key: rsa.RSAPrivateKey = KEY
) -> dict[str, Any]:
    """Sign as SNS does (its documented canonical form, written out here on purpose)."""
    if fields["Type"] == "Notification":
        order = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        order = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{k}\n{fields[k]}\n" for k in order if k in fields).encode()
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text, padding.PKCS1v15(), digest)
    return {
        **fields,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
    }


class Site:
    def __init__(self, client: httpx.Client, db: Database, sns: Server) -> None:
        self.client, self.db, self.sns = client, db, sns

    def status(self, address: str) -> str:
        with self.db.connect() as conn:
            return str(
                conn.execute(
                    select(subscribers.c.status).where(subscribers.c.email == address)
                ).scalar_one()
            )

    def notify(self, event: dict[str, Any], message_id: str, version: str = "1") -> httpx.Response:
        fields = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": TOPIC,
            "Message": json.dumps(event),
            "Timestamp": "2026-11-16T06:01:00.000Z",
            "SigningCertURL": f"{self.sns.url}/SimpleNotificationService-test.pem",
        }
        return self.client.post("/webhooks/ses", content=json.dumps(_signed(fields, version)))


@pytest.fixture
def site(settings: Settings, db: Database, tmp_path: Path) -> Iterator[Site]:
    sns = Server()
    sns.routes["/SimpleNotificationService-test.pem"] = body(CERT)
    sns.routes["/confirm"] = body(b"<ConfirmSubscriptionResponse/>")
    settings = with_changes(
        settings,
        sender={"base_url": "https://news.example.org"},
        bounces={
            "sns_url_pattern": f"^{re.escape(sns.url)}/",
            "sns_topic_arns": [TOPIC],
            "postmark_username": "postmark",
            "postmark_password": "hook-s3cret",
        },
    )
    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    app = create_app(
        settings, db, Signer(b"webhook-test-key-0123456789ab"), MaildirTransport(tmp_path / "o")
    )
    try:
        with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield Site(client, db, sns)
    finally:
        sns.close()


def _bounce(address: str, bounce_type: str, subtype: str, diagnostic: str) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [
                {"emailAddress": address, "action": "failed", "diagnosticCode": diagnostic}
            ],
        },
        "mail": {
            "messageId": "0100018c-ses-id",
            "commonHeaders": {"subject": "Central Asia Weekly"},
        },
    }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ses_notifications_through_sns_are_verified_and_applied_once(site: Site) -> None:
    hard = _bounce("aigerim@example.org", "Permanent", "General", "smtp; 550 5.1.1 user unknown")
    assert site.notify(hard, "sns-1").json()["results"] == ["hard"]
    assert site.status("aigerim@example.org") == "bounced"
    assert site.notify(hard, "sns-1").json()["results"] == ["repeat"]  # SNS retries a delivery
    full = _bounce(
        "dilnoza@example.org", "Transient", "MailboxFull", "smtp; 552 5.2.2 Mailbox full"
    )
    assert site.notify(full, "sns-2", version="2").json()["results"] == ["soft"]
    assert site.status("dilnoza@example.org") == "active"
    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "bakyt@example.org"}],
            "complaintFeedbackType": "abuse",
        },
        "mail": {"messageId": "0100018c-ses-id-2"},
    }
    assert site.notify(complaint, "sns-3").json()["results"] == ["complaint"]
    assert site.status("bakyt@example.org") == "complained"
    assert site.sns.hits.count("/SimpleNotificationService-test.pem") == 1  # kept once fetched


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_forged_or_foreign_sns_calls_change_nothing(site: Site) -> None:
    event = _bounce("lena@example.org", "Permanent", "General", "smtp; 550 5.1.1 user unknown")
    fields = {
        "Type": "Notification",
        "MessageId": "sns-forged",
        "TopicArn": TOPIC,
        "Message": json.dumps(event),
        "Timestamp": "2026-11-16T06:01:00.000Z",
        "SigningCertURL": f"{site.sns.url}/SimpleNotificationService-test.pem",
    }
    tampered = {**_signed(fields), "Message": json.dumps({**event, "x": 1})}
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for call, code, words in [
        (tampered, 403, "does not verify"),
        (_signed(fields, key=other_key), 403, "does not verify"),
        ({**_signed(fields), "SigningCertURL": "http://evil.example/cert.pem"}, 403, "outside SNS"),
        (
            {**_signed(fields), "SigningCertURL": f"http://x@{site.sns.url[7:]}/c.pem"},
            403,
            "outside SNS",
        ),
        ({**_signed(fields), "TopicArn": "arn:aws:sns:us-east-1:999:other"}, 400, "topic"),
        ({**_signed(fields), "SignatureVersion": "9"}, 400, "SignatureVersion"),
    ]:
        response = site.client.post("/webhooks/ses", content=json.dumps(call))
        assert response.status_code == code and words in response.text, (
            response.status_code,
            response.text,
        )
    assert site.client.post("/webhooks/ses", content=b"not json").status_code == 400
    assert site.client.post("/webhooks/ses", content=b"x" * 300_000).status_code == 413
    assert site.status("lena@example.org") == "active"
    assert all(hit == "/SimpleNotificationService-test.pem" for hit in site.sns.hits)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_sns_subscription_is_confirmed_at_snss_own_url_only(site: Site) -> None:
    fields = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "sns-sub",
        "Token": "tok",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe...",
        "SubscribeURL": f"{site.sns.url}/confirm?Action=ConfirmSubscription&Token=tok",
        "Timestamp": "2026-11-16T06:00:00.000Z",
        "SigningCertURL": f"{site.sns.url}/SimpleNotificationService-test.pem",
    }
    confirmed = site.client.post("/webhooks/ses", content=json.dumps(_signed(fields)))
    assert confirmed.status_code == 200 and confirmed.json()["confirmed"] is True
    assert "/confirm?Action=ConfirmSubscription&Token=tok" in site.sns.hits
    elsewhere = {**fields, "SubscribeURL": "http://169.254.169.254/latest/meta-data/"}
    refused = site.client.post("/webhooks/ses", content=json.dumps(_signed(elsewhere)))
    assert refused.status_code == 400 and "outside SNS" in refused.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_postmark_webhook_takes_bounces_and_complaints_with_basic_auth(site: Site) -> None:
    auth = ("postmark", "hook-s3cret")
    hard = {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Email": "farrukh@example.org",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    }
    assert site.client.post("/webhooks/postmark", json=hard, auth=auth).json()["results"] == [
        "hard"
    ]
    assert site.status("farrukh@example.org") == "bounced"
    assert site.client.post("/webhooks/postmark", json=hard, auth=auth).json()["results"] == [
        "repeat"
    ]
    spam = {
        "RecordType": "SpamComplaint",
        "ID": 42,
        "Type": "SpamComplaint",
        "Email": "gulnara@example.org",
    }
    assert site.client.post("/webhooks/postmark", json=spam, auth=auth).json()["results"] == [
        "complaint"
    ]
    assert site.status("gulnara@example.org") == "complained"
    blocked = {
        "RecordType": "Bounce",
        "ID": 43,
        "Type": "Blocked",
        "Email": "james@example.org",
        "Details": "blocked by spamhaus",
    }
    assert site.client.post("/webhooks/postmark", json=blocked, auth=auth).json()["results"] == [
        "sender"
    ]
    assert site.status("james@example.org") == "active"
    for wrong in (None, ("postmark", "nope"), ("other", "hook-s3cret")):
        response = site.client.post(
            "/webhooks/postmark", json={**hard, "ID": 7, "Email": "lena@example.org"}, auth=wrong
        )
        assert response.status_code == 401 and "www-authenticate" in response.headers
    assert site.client.post("/webhooks/postmark", content=b"[1,2", auth=auth).status_code == 400
    assert site.status("lena@example.org") == "active"
    assert site.client.get("/webhooks/postmark").status_code == 405
