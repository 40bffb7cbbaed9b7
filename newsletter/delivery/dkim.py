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
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "reply-to",
    "mime-version",
    "content-type",
)
PERSONAL = frozenset(("to", "message-id", "list-unsubscribe"))  # differ in every message
# Named once more than they occur (RFC 6376, 8.15): a second From or Subject added on the way
# breaks the signature instead of riding on it.
OVERSIGNED = ("from", "subject")


_WSP = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")
_TRAILING_LINES = re.compile(rb"(\r\n)+$")


def canonical_body(body: bytes) -> bytes:
    """DKIM relaxed body canonicalisation (RFC 6376, 3.4.4)."""
    body = _TRAILING_WSP.sub(b"\r\n", body)
    body = _WSP.sub(b" ", body)
    body = _TRAILING_LINES.sub(b"", body)
    return body + b"\r\n" if body else b""


def canonical_pieces(pieces: list[bytes]) -> list[bytes]:
    """The relaxed canonical form of a body cut into pieces at slots that will hold text
    without white space or line breaks: each piece canonicalised on its own (runs of white space
    and trailing white space never span a slot), the end-of-body rule on the last one only."""
    out = [_WSP.sub(b" ", _TRAILING_WSP.sub(b"\r\n", piece)) for piece in pieces]
    # After a slot the body is not empty: it ends with exactly one CRLF.
    out[-1] = canonical_body(out[-1]) if len(out) == 1 else _TRAILING_LINES.sub(b"", out[-1]) + CRLF
    return out


_HEADER_WSP = re.compile(r"[ \t]+")


def canonical_header(name: str, value: str) -> bytes:
    """DKIM relaxed header canonicalisation (RFC 6376, 3.4.2), to the letter: unfold (drop
    every CRLF), runs of WSP (space and tab only: nothing else is white space here) to one
    space, no WSP at the end of the value or around the colon, the name in lower case."""
    if "\r" in value or "\t" in value or "  " in value:  # folded, or runs of white space
        value = _HEADER_WSP.sub(" ", value.replace("\r\n", ""))
    return (name.lower().rstrip(" \t") + ":" + value.strip(" ")).encode("utf-8")


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
        self._canonical: dict[tuple[str, str], bytes] = {}  # the fields every message shares
        self._padding, self._hash = padding.PKCS1v15(), hashes.SHA256()

    def prepare(
        self, headers: list[tuple[str, str]], body_hash: bytes, timestamp: int
    ) -> tuple[str, bytes]:
        """(the DKIM-Signature value without b=, the bytes to sign): cheap, done inline.
        ``body_hash``: SHA-256 of the canonical body (:func:`canonical_body`)."""
        signed = [(n, v) for n, v in headers if n.lower() in SIGNED_HEADERS]
        names = [n.lower() for n, _ in signed]
        names += [n for n in OVERSIGNED if n in names]  # each occurs once in our messages
        bh = base64.b64encode(body_hash).decode()
        value = (
            f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={self.domain}; s={self.selector}; "
            f"t={timestamp}; h={':'.join(names)}; bh={bh}; b="
        )
        # Every field named in h= once, in order; the extra names select nothing (null).
        data = b"".join(self._canonical_field(n, v) for n, v in signed) + canonical_header(
            "DKIM-Signature", value
        )
        return value, data

    def _canonical_field(self, name: str, value: str) -> bytes:
        """A field's canonical form and CRLF; those every message of a send shares (From,
        Subject, List-Id...) canonicalised once (at most 256 kept)."""
        if name.lower() in PERSONAL:
            return canonical_header(name, value) + CRLF
        known = self._canonical.get((name, value))
        if known is None:
            if len(self._canonical) >= 256:
                self._canonical.clear()
            known = self._canonical[(name, value)] = canonical_header(name, value) + CRLF
        return known

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
        value, data = self.prepare(headers, hashlib.sha256(canon_body).digest(), timestamp)
        return value + self.sign(data)
