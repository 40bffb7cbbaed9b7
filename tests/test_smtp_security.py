"""TLS (STARTTLS and implicit) with a test CA, certificate verification, and AUTH."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.delivery.smtp import SMTPConfig, SMTPTransport
from newsletter.errors import TransportError
from tests.conftest import RecordingHandler, SMTPServer, start_smtp, stop_smtp

trustme = pytest.importorskip("trustme")

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def _authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"news",
        b"s3cret",
    )
    return AuthResult(success=ok, handled=False)


def _serve(**kwargs: object) -> Iterator[SMTPServer]:
    controller, server = start_smtp(RecordingHandler(), **kwargs)
    try:
        yield server
    finally:
        stop_smtp(controller)


@pytest.fixture
def starttls_server(ca: trustme.CA) -> Iterator[SMTPServer]:
    yield from _serve(
        tls_context=_server_context(ca),
        require_starttls=True,
        authenticator=_authenticator,
        auth_required=True,
    )


@pytest.fixture
def implicit_tls_server(ca: trustme.CA) -> Iterator[SMTPServer]:
    yield from _serve(ssl_context=_server_context(ca))


def _send(config: SMTPConfig) -> object:
    async def go() -> object:
        transport = SMTPTransport(config)
        await transport.open()
        try:
            return await transport.send("a@example.org", "b@example.org", MESSAGE)
        finally:
            await transport.close()

    return asyncio.run(go())


def test_starttls_with_auth_and_the_test_ca(starttls_server: SMTPServer, ca_file: str) -> None:
    delivery = _send(
        SMTPConfig("127.0.0.1", starttls_server.port, "starttls", "news", "s3cret", ca_file=ca_file)
    )
    assert delivery.state == "sent"  # type: ignore[attr-defined]
    assert len(starttls_server.handler.messages) == 1


def test_certificates_are_verified_by_default(starttls_server: SMTPServer) -> None:
    with pytest.raises(TransportError, match=r"(?i)certificate|tls"):
        _send(SMTPConfig("127.0.0.1", starttls_server.port, "starttls", "news", "s3cret"))
    assert starttls_server.handler.messages == []


def test_wrong_password_is_fatal_and_names_the_user(
    starttls_server: SMTPServer, ca_file: str
) -> None:
    with pytest.raises(TransportError, match="refused the login of 'news'"):
        _send(
            SMTPConfig(
                "127.0.0.1", starttls_server.port, "starttls", "news", "wrong", ca_file=ca_file
            )
        )


def test_implicit_tls(implicit_tls_server: SMTPServer, ca_file: str) -> None:
    delivery = _send(SMTPConfig("127.0.0.1", implicit_tls_server.port, "tls", ca_file=ca_file))
    assert delivery.state == "sent"  # type: ignore[attr-defined]


def test_password_is_never_in_the_error(starttls_server: SMTPServer, ca_file: str) -> None:
    with pytest.raises(TransportError) as info:
        _send(
            SMTPConfig(
                "127.0.0.1",
                starttls_server.port,
                "starttls",
                "news",
                "wrong-pass-xyz",
                ca_file=ca_file,
            )
        )
    assert "wrong-pass-xyz" not in str(info.value)
