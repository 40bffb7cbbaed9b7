"""Addresses and header text on the wire: IDNA 2008, SMTPUTF8, cleaned and folded headers."""

from __future__ import annotations

import asyncio
import email
import email.policy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.delivery.envelope import LINE, address_header, fold_text, wire_address
from newsletter.delivery.smtp import SMTPConfig, SMTPTransport
from newsletter.errors import MessageError
from tests.conftest import SMTPServer


@pytest.mark.parametrize(
    ("address", "wire", "utf8"),
    [
        ("reader@example.org", "reader@example.org", False),
        ("a@faß.de", "a@xn--fa-hia.de", False),  # IDNA 2008: ß is kept (2003 made it "ss")
        ("b@bücher.example", "b@xn--bcher-kva.example", False),
        ("ünicode@example.org", "ünicode@example.org", True),
        ("ünicode@bücher.example", "ünicode@xn--bcher-kva.example", True),
    ],
)
def test_wire_addresses_use_idna_2008_and_say_when_smtputf8_is_needed(
    address: str, wire: str, utf8: bool
) -> None:
    assert wire_address(address) == (wire, utf8)


@pytest.mark.parametrize(
    "address",
    ["a b@example.org", "a@exa\r\nmple.org", "<a@b.org>", "a@☃.example", "a@-ä.example", "plain"],
)
def test_addresses_that_could_split_a_command_or_fail_idna_are_refused(address: str) -> None:
    with pytest.raises(MessageError):
        wire_address(address)


def test_the_envelope_goes_out_in_a_labels(smtp_server: SMTPServer) -> None:
    async def go() -> str:
        transport = SMTPTransport(SMTPConfig("127.0.0.1", smtp_server.port, "none", timeout=5))
        try:
            delivery = await transport.send("from@example.org", "a@faß.de", b"\r\nhi\r\n")
            return str(delivery.state)
        finally:
            await transport.close()

    assert asyncio.run(go()) == "sent"
    assert [rcpt for rcpt, _, _ in smtp_server.handler.messages] == ["a@xn--fa-hia.de"]


_NAME = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=1500)


@given(name=_NAME)
def test_any_stored_name_makes_a_header_of_short_lines_that_reads_back_cleaned(name: str) -> None:
    header = address_header(name, "reader@example.org")
    line = f"To: {header}"
    assert all(len(part.encode()) <= LINE for part in line.split("\r\n")), line
    assert "\r" not in header.replace("\r\n ", "") and "\n" not in header.replace("\r\n ", "")
    parsed = email.message_from_bytes(
        (line + "\r\n\r\nbody\r\n").encode("utf-8"), policy=email.policy.default
    )
    to = parsed["To"]
    assert to.addresses[0].addr_spec == "reader@example.org"


@given(
    value=st.text(st.characters(codec="ascii", min_codepoint=32, max_codepoint=126), max_size=400)
)
def test_unstructured_values_fold_to_short_lines_and_unfold_to_themselves(value: str) -> None:
    folded = fold_text(value, len("Subject: "))
    first, *rest = folded.split("\r\n")
    assert len("Subject: ") + len(first) <= LINE and all(len(r) <= LINE for r in rest)
    if "=?" not in folded:  # folded at spaces: unfolding gives the value back
        assert folded.replace("\r\n", "") == value
