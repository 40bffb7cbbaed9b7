"""Loading the settings once (file, ``.env``, environment) and showing them with secrets masked."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from newsletter.config.sections import DatabaseSettings
from newsletter.config.settings import Settings
from newsletter.core.redact import mask_url
from newsletter.errors import ConfigError

CONFIG_ENV = "NEWSLETTER_CONFIG"
DEFAULT_CONFIG_NAME = "newsletter.toml"


def find_config(explicit: str | Path | None) -> Path | None:
    """The config file to use: ``--config``, else ``$NEWSLETTER_CONFIG``, else ./newsletter.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    default = Path.cwd() / DEFAULT_CONFIG_NAME
    return default if default.exists() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=path) from None


def _describe(error: Any) -> str:
    parts = [str(part) for part in error["loc"]]
    key = ".".join(parts) or "(root)"
    env_name = "NEWSLETTER_" + "__".join(p.upper() for p in parts)
    origin = f" (from ${env_name})" if env_name in os.environ else ""
    if error["type"] == "extra_forbidden":
        return f"unknown setting {key!r}{origin}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if not parts:  # a check across several settings
        return f"contradictory settings: {msg}"
    return f"setting {key!r}{origin}: {msg}"


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Load the settings once. Raises :class:`ConfigError` with one sentence naming the key.

    ``overrides`` go through the same validation as the file: ``issue={"window_days": 14}``
    merges into ``[issue]``, ``schedules=[...]`` replaces the list.
    """
    path = find_config(config)
    data: dict[str, Any] = _read_toml(path) if path else {}
    workspace = (path.parent if path else Path.cwd()).resolve()
    for section, values in overrides.items():  # a table's keys are merged, a list replaced
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    env_file = workspace / ".env"
    try:
        settings = _build(data, env_file if env_file.is_file() else None)
    except ValidationError as exc:
        errors = exc.errors()
        first = _describe(errors[0])
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ConfigError(
            first + more, key=".".join(map(str, errors[0]["loc"])), path=path
        ) from None
    settings._workspace = workspace
    settings._config_path = path.resolve() if path else None
    return settings


def with_changes(settings: Settings, **sections: Any) -> Settings:
    """A copy of ``settings`` with some values changed, validated like a loaded file.

    ``smtp={"port": 2525}`` merges into ``[smtp]``; ``schedules=[...]`` replaces the list. The
    settings themselves are frozen: this is the only way to change one.
    """
    data = settings.model_dump()
    for section, values in sections.items():
        data[section] = {**data[section], **values} if isinstance(values, dict) else values
    try:
        changed = _build(data, None)
    except ValidationError as exc:
        errors = exc.errors()
        raise ConfigError(
            _describe(errors[0]),
            key=".".join(map(str, errors[0]["loc"])),
            path=settings.config_path,
        ) from None
    changed._workspace = settings.workspace
    changed._config_path = settings.config_path
    return changed


def _build(data: dict[str, Any], env_file: Path | None) -> Settings:
    return Settings(_env_file=env_file, **data)  # type: ignore[call-arg]


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets shown as ``********`` (or empty): secret
    settings, and passwords and keys inside any URL (a database URL, a feed with a key)."""

    def walk(value: Any) -> Any:
        if isinstance(value, DatabaseSettings):
            return {"url": mask_url(value.url), "import_batch_size": value.import_batch_size}
        if isinstance(value, SecretStr):
            return "********" if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {name: walk(getattr(value, name)) for name in type(value).model_fields}
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return [walk(v) for v in value]
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return mask_url(value)  # any URL: a password or key inside it masked
        return value

    return {"config_file": str(settings.config_path or "(none)"), **walk(settings)}
