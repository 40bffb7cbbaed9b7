"""Subscriber tokens: the MAC is HMAC-SHA256 as before, so links already mailed stay valid."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from newsletter.core.tokens import Purpose, Signer
from newsletter.errors import TokenError

KEY = b"a-secret-key-of-the-tests-0123456789"


def test_the_mac_is_rfc_2104_hmac_sha256_of_the_derived_key() -> None:
    signer = Signer(KEY)
    derived = hashlib.sha256(b"newsletter-token-v1" + KEY).digest()
    for label in ("", "x", "mid:2026-11-16:42", "é" * 100):
        expected = hmac.digest(derived, label.encode(), "sha256")
        assert signer.tag(label, 32) == expected.hex()
    assert signer.message_id_tag("2026-11-16", 42) == (
        hmac.digest(derived, b"mid:2026-11-16:42", "sha256")[:10].hex()
    )


def test_a_token_made_with_the_standard_library_hmac_is_read() -> None:
    derived = hashlib.sha256(b"newsletter-token-v1" + KEY).digest()
    payload = (1).to_bytes(1, "big") + (12345).to_bytes(8, "big") + (0).to_bytes(4, "big")
    tag = hmac.digest(derived, payload, "sha256")[:16]
    token = base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode()
    signer = Signer(KEY)
    assert signer.make(Purpose.SUBSCRIBER, 12345) == token
    assert signer.read(token, Purpose.SUBSCRIBER) == 12345
    with pytest.raises(TokenError):
        Signer(KEY + b"!").read(token, Purpose.SUBSCRIBER)
