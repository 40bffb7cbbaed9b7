"""The docs keep up with the code: every command and every setting is documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from pydantic import BaseModel

from newsletter.cli import app
from newsletter.config import Settings
from tests.conftest import REPO

DOCS = "\n".join(
    p.read_text(encoding="utf-8")
    for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
)


def _commands(group: Any, prefix: str = "newsletter") -> Iterator[tuple[str, Any]]:
    if hasattr(group, "commands"):  # a group of commands
        for name, command in group.commands.items():
            yield f"{prefix} {name}", command
            yield from _commands(command, f"{prefix} {name}")


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_there_are_commands() -> None:
    assert {"newsletter build", "newsletter preview", "newsletter config"} <= {
        n for n, _ in COMMANDS
    }


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_is_documented(name: str, command: Any) -> None:
    assert f"`{name}" in DOCS or f"{name} " in DOCS, f"{name} is missing from README.md and docs/"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_help_with_an_example(name: str, command: Any) -> None:
    if hasattr(command, "commands"):
        assert command.help
        return
    assert command.help and "Example" in command.help, f"{name} --help has no example"


def _keys(model: type[BaseModel]) -> Iterator[tuple[str, str]]:
    for section, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            for key in sub.model_fields:
                yield section, key


@pytest.mark.parametrize(("section", "key"), list(_keys(Settings)))
def test_every_setting_is_in_the_configuration_reference(section: str, key: str) -> None:
    reference = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert f"## `[{section}]`" in reference
    assert f"| `{key}` |" in reference, f"{section}.{key} is missing from docs/configuration.md"
