"""DKIM (RFC 6376): rsa-sha256 with relaxed/relaxed canonicalisation. The costly RSA signature
is made by the signing processes (:mod:`newsletter.delivery.signing`)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from newsletter.errors import KeyFileError

CRLF = b"\r\n"
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
)


_WSP = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")
_TRAILING_LINES = re.compile(rb"(\r\n)+$")


def canonical_body(body: bytes) -> bytes:
    """DKIM relaxed body canonicalisation (RFC 6376, 3.4.4)."""
    body = _TRAILING_WSP.sub(b"\r\n", body)
    body = _WSP.sub(b" ", body)
    body = _TRAILING_LINES.sub(b"", body)
    return body + b"\r\n" if body else b""


def canonical_header(name: str, value: str) -> bytes:
    """DKIM relaxed header canonicalisation (RFC 6376, 3.4.2)."""
    unfolded = re.sub(r"\r\n(?=[ \t])", "", value)
    return (name.lower().strip() + ":" + " ".join(unfolded.split())).encode("utf-8")


class DKIMSigner:
    """rsa-sha256, relaxed/relaxed, with the key loaded once by ``cryptography``."""

    def __init__(self, domain: str, selector: str, key_file: Path) -> None:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        try:
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        except OSError as exc:
            raise KeyFileError(f"cannot read the DKIM key: {exc.strerror}", path=key_file) from None
        except (ValueError, TypeError):
            raise KeyFileError("not an unencrypted PEM private key", path=key_file) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyFileError("the DKIM key must be an RSA key (rsa-sha256)", path=key_file)
        self.domain, self.selector = domain, selector
        self._key = key
        self._padding, self._hash = padding.PKCS1v15(), hashes.SHA256()

    def prepare(
        self, headers: list[tuple[str, str]], canon_body: bytes, timestamp: int
    ) -> tuple[str, bytes]:
        """(the DKIM-Signature value without b=, the bytes to sign): cheap, done inline."""
        names = [n for n, _ in headers if n.lower() in SIGNED_HEADERS]
        bh = base64.b64encode(hashlib.sha256(canon_body).digest()).decode()
        value = (
            f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={self.domain}; s={self.selector}; "
            f"t={timestamp}; h={':'.join(n.lower() for n in names)}; bh={bh}; b="
        )
        wanted = {n.lower() for n in names}
        data = b"".join(
            canonical_header(n, v) + CRLF for n, v in headers if n.lower() in wanted
        ) + canonical_header("DKIM-Signature", value)
        return value, data

    def key_pem(self) -> bytes:
        """The private key (PKCS#8 PEM), for the signing processes; never printed."""
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, data: bytes) -> str:
        """The RSA signature (base64): the costly part; cryptography releases the GIL here,
        so the sender runs it in a thread beside the event loop."""
        return base64.b64encode(self._key.sign(data, self._padding, self._hash)).decode()

    def signature(self, headers: list[tuple[str, str]], canon_body: bytes, timestamp: int) -> str:
        value, data = self.prepare(headers, canon_body, timestamp)
        return value + self.sign(data)
