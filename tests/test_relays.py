"""Several relays used together (``[[relays]]``), each a real aiosmtpd server: messages split
by weight, a relay that is down paused while the others carry on, every outcome naming its
relay in the send log; when every relay is down the send pauses (exit 6)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_DATE, RecordingHandler, SMTPServer, start_smtp, stop_smtp

KEY = {"NEWSLETTER_SECURITY__SECRET_KEY": "relays-test-secret-0123456789"}


@pytest.fixture
def two_servers() -> Iterator[tuple[SMTPServer, SMTPServer]]:
    one, first = start_smtp(RecordingHandler())
    two, second = start_smtp(RecordingHandler())
    try:
        yield first, second
    finally:
        stop_smtp(one)
        stop_smtp(two)


def _config(workspace: Path, relays: list[tuple[str, int, float]]) -> None:
    config = workspace / "newsletter.toml"
    text = config.read_text()
    for name, port, weight in relays:
        text += (
            f'\n[[relays]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\n'
            f'security = "none"\nweight = {weight}\ntimeout = 5\n'
        )
    config.write_text(text)


def _readers(cli, workspace: Path, count: int) -> None:  # type: ignore[no-untyped-def]
    assert cli("build", "--date", SAMPLE_DATE).code == 0
    people = workspace / "many.csv"
    people.write_text(
        "email,name,interests\n"
        + "".join(f"reader{i:04d}@example.org,R,Regional\n" for i in range(count))
    )
    assert cli("subscribers", "import", str(people), "--list", "weekly", env=KEY).code == 0


def test_messages_are_split_between_relays_by_weight(
    cli, workspace: Path, two_servers: tuple[SMTPServer, SMTPServer]
) -> None:  # type: ignore[no-untyped-def]
    first, second = two_servers
    _config(workspace, [("alpha", first.port, 1), ("beta", second.port, 3)])
    _readers(cli, workspace, 400)
    sent = cli("send", SAMPLE_DATE, "--list", "weekly", env=KEY)
    assert sent.code == 0, sent.stderr
    a, b = len(first.handler.messages), len(second.handler.messages)
    assert a + b == 400 and 80 <= a <= 120, (a, b)
    received = Counter(r for r, _, _ in first.handler.messages + second.handler.messages)
    assert len(received) == 400 and max(received.values()) == 1
    status = cli("status", SAMPLE_DATE, env=KEY).stdout
    assert f"sent by relay: alpha {a}, beta {b}" in status


def test_a_relay_that_is_down_is_paused_and_the_others_carry_on(
    cli, workspace: Path, two_servers: tuple[SMTPServer, SMTPServer], closed_port: int
) -> None:  # type: ignore[no-untyped-def]
    first, _ = two_servers
    _config(workspace, [("alpha", first.port, 1), ("down", closed_port, 5)])
    _readers(cli, workspace, 200)
    sent = cli("send", SAMPLE_DATE, "--list", "weekly", env=KEY)
    assert sent.code == 0, sent.stderr
    assert len(first.handler.messages) == 200
    assert "alpha 200" in cli("status", SAMPLE_DATE, env=KEY).stdout


def test_when_every_relay_is_down_the_send_pauses(cli, workspace: Path, closed_port: int) -> None:  # type: ignore[no-untyped-def]
    _config(workspace, [("one", closed_port, 1)])
    _readers(cli, workspace, 20)
    sent = cli("send", SAMPLE_DATE, "--list", "weekly", env=KEY)
    assert sent.code == 6 and "paused: every relay is paused (one: " in sent.stderr
