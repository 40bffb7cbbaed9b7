"""Settings: one pydantic-settings class, loaded once at the CLI edge.

Precedence, highest first: environment variables ``NEWSLETTER_<SECTION>__<KEY>``, then a ``.env``
file beside the config file, then ``newsletter.toml``, then the defaults below. Relative paths are
resolved against the directory that holds the config file (the *workspace*).
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from newsletter.errors import ConfigError

CONFIG_ENV = "NEWSLETTER_CONFIG"
DEFAULT_CONFIG_NAME = "newsletter.toml"

DEFAULT_COUNTRIES = ["Kazakhstan", "Kyrgyzstan", "Tajikistan", "Turkmenistan", "Uzbekistan"]
DEFAULT_TOPICS = [
    "economy",
    "energy",
    "politics",
    "security",
    "transport",
    "technology",
    "environment",
    "society",
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssueSettings(Section):
    """What an issue is: its title, calendar, countries and how articles are shown."""

    title: str = "Central Asia Weekly"
    tagline: str = (
        "The week's news from Kazakhstan, Kyrgyzstan, Tajikistan, Turkmenistan and Uzbekistan"
    )
    timezone: str = "Asia/Almaty"
    window_days: int = Field(default=7, ge=1, le=366)
    countries: list[str] = Field(default_factory=lambda: list(DEFAULT_COUNTRIES), min_length=1)
    regional_label: str = "Regional"
    full_text: bool = True
    summary_chars: int = Field(default=320, ge=40, le=5000)
    web_url: str = ""
    language: str = "en"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Asia/Almaty)"
            ) from None
        return value

    @field_validator("countries")
    @classmethod
    def _distinct_countries(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in value:
            if not name.strip():
                raise ValueError("a country name is empty")
            if name.lower() in seen:
                raise ValueError(f"country {name!r} is listed twice")
            seen.add(name.lower())
        return value

    @field_validator("web_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"must be an absolute http(s) URL, not {value!r}")
        return value.rstrip("/")

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone)


class SourcesSettings(Section):
    """Where articles come from: feed files or URLs, and folders of Markdown files."""

    feeds: list[str] = Field(default_factory=list)
    markdown: list[str] = Field(default_factory=list)
    timeout: float = Field(default=20.0, gt=0, le=300)


class TopicsSettings(Section):
    """The topic vocabulary and the aliases that map feed categories onto it."""

    vocabulary: list[str] = Field(default_factory=lambda: list(DEFAULT_TOPICS))
    aliases: dict[str, str] = Field(default_factory=dict)

    @field_validator("vocabulary")
    @classmethod
    def _lowercase(cls, value: list[str]) -> list[str]:
        return [v.strip().lower() for v in value if v.strip()]


class RatesSettings(Section):
    """The currency-rates header."""

    source: str = ""
    base: str = "USD"
    currencies: list[str] = Field(default_factory=lambda: ["KZT", "KGS", "TJS", "TMT", "UZS"])
    history_file: str = "issues/rates-history.json"

    @field_validator("base")
    @classmethod
    def _code(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"{value!r} is not a three-letter ISO 4217 currency code")
        return value

    @field_validator("currencies")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if not re.fullmatch(r"[A-Z]{3}", code):
                raise ValueError(f"{code!r} is not a three-letter ISO 4217 currency code")
        return value


class PathsSettings(Section):
    templates: str = "templates"
    issues: str = "issues"


class BuildSettings(Section):
    max_html_kb: float = Field(default=102.0, gt=0)
    max_text_line: int = Field(default=78, ge=40)
    strict: bool = False


class PreviewSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=0, le=65535)


class DatabaseSettings(Section):
    """Where subscribers and the send log live: SQLite (a file) or PostgreSQL."""

    url: str = "sqlite:///newsletter.db"
    import_batch_size: int = Field(default=5000, ge=1, le=100_000)

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError(
                "must start with sqlite:// or postgresql:// (e.g. sqlite:///newsletter.db)"
            )
        return value


class SecuritySettings(Section):
    """The key that signs subscriber links (unsubscribe, preferences, confirmation)."""

    secret_key: SecretStr = SecretStr("")
    secret_key_file: str = ".newsletter/secret_key"


class SenderSettings(Section):
    """Who the issue comes from and how it is addressed."""

    from_address: str = "weekly@news.example.org"
    from_name: str = "Central Asia Weekly"
    reply_to: str = ""
    subject: str = "{name} — {date}"
    list_id: str = ""
    unsubscribe_mailto: str = ""
    base_url: str = ""

    @field_validator("from_address", "reply_to", "unsubscribe_mailto")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value

    @field_validator("subject", "from_name", "list_id")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("must not contain a line break")
        return value

    @field_validator("subject")
    @classmethod
    def _fields(cls, value: str) -> str:
        try:
            value.format(name="", date="", title="", issue="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"unknown field {exc} (use {{name}}, {{date}}, {{title}}, {{issue}})"
            ) from None
        return value

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[A-Za-z0-9.\-:]+(/[A-Za-z0-9._~/\-]*)?", value):
            raise ValueError(f"must be a plain absolute http(s) URL, not {value!r}")
        return value.rstrip("/")


class SMTPSettings(Section):
    """The SMTP server; with no host, messages go to a local Maildir outbox."""

    host: str = ""
    port: int = Field(default=587, ge=1, le=65535)
    username: str = ""
    password: SecretStr = SecretStr("")
    security: Literal["none", "starttls", "tls"] = "starttls"
    verify: bool = True
    ca_file: str = ""
    timeout: float = Field(default=30.0, gt=0, le=600)
    pipelining: bool = True
    concurrency: int = Field(default=4, ge=1, le=200)
    rate_per_second: float = Field(default=0.0, ge=0)
    rate_per_hour: int = Field(default=0, ge=0)
    retries: int = Field(default=3, ge=1, le=20)
    backoff: float = Field(default=2.0, ge=0, le=3600)
    bounce_limit: int = Field(default=3, ge=1, le=100)
    pause_after_errors: int = Field(default=10, ge=1, le=100000)
    outbox: str = "outbox"


class ScheduleSettings(Section):
    """One ``[[schedules]]`` entry: when to build (and send) an issue, to which lists."""

    name: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.-]+$")
    cron: str = Field(min_length=1)
    lists: list[str] = Field(default_factory=list)
    build_only: bool = False
    skip_if_no_new_articles: bool = True
    notify: str = ""


class SchedulerSettings(Section):
    """How the scheduler treats runs it missed while it was down."""

    misfire_grace_time: int = Field(default=12 * 3600, ge=1)


class WebSettings(Section):
    """``newsletter serve``: the subscriber pages."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    subscribe_list: str = "weekly"
    subscribe_rate: int = Field(default=5, ge=1, description="sign-ups per address and 10 minutes")
    forwarded_allow_ips: str = "127.0.0.1"


class DKIMSettings(Section):
    """Optional DKIM signing (rsa-sha256, relaxed/relaxed)."""

    domain: str = ""
    selector: str = ""
    private_key_file: str = ""


class Settings(BaseSettings):
    """All settings. Sections map to ``[section]`` tables in ``newsletter.toml``."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSLETTER_",
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    issue: IssueSettings = Field(default_factory=IssueSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    topics: TopicsSettings = Field(default_factory=TopicsSettings)
    rates: RatesSettings = Field(default_factory=RatesSettings)
    paths: PathsSettings = Field(default_factory=PathsSettings)
    build: BuildSettings = Field(default_factory=BuildSettings)
    preview: PreviewSettings = Field(default_factory=PreviewSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    sender: SenderSettings = Field(default_factory=SenderSettings)
    smtp: SMTPSettings = Field(default_factory=SMTPSettings)
    dkim: DKIMSettings = Field(default_factory=DKIMSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    schedules: list[ScheduleSettings] = Field(default_factory=list)
    security: SecuritySettings = Field(default_factory=SecuritySettings)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        smtp, dkim = self.smtp, self.dkim
        if smtp.password.get_secret_value() and not smtp.username:
            raise ValueError("smtp.password is set but smtp.username is empty")
        if (
            smtp.username
            and smtp.security == "none"
            and smtp.host not in ("127.0.0.1", "localhost", "::1")
        ):
            raise ValueError(
                "smtp.username with smtp.security = 'none' would send the password in clear: "
                "use starttls or tls"
            )
        if smtp.security == "tls" and smtp.port == 587:
            raise ValueError(
                "smtp.security = 'tls' (implicit TLS) does not work on port 587: use 465 or starttls"
            )
        if any((dkim.domain, dkim.selector, dkim.private_key_file)) and not all(
            (dkim.domain, dkim.selector, dkim.private_key_file)
        ):
            raise ValueError(
                "DKIM needs all three of dkim.domain, dkim.selector and dkim.private_key_file"
            )
        names = [schedule.name for schedule in self.schedules]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two schedules are named {name!r}")
        for schedule in self.schedules:
            if not schedule.lists and not schedule.build_only:
                raise ValueError(
                    f"schedule {schedule.name!r} sends to no list: set lists or build_only = true"
                )
        sender_domain = self.sender.from_address.rpartition("@")[2].lower()
        if dkim.domain and not (
            sender_domain == dkim.domain.lower()
            or sender_domain.endswith("." + dkim.domain.lower())
        ):
            raise ValueError(
                f"dkim.domain {dkim.domain!r} does not align with sender.from_address "
                f"{self.sender.from_address!r} (DMARC needs the same domain or a parent)"
            )
        return self

    # Not a setting: the folder relative paths are resolved against.
    _workspace: Path = Path(".")
    _config_path: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML values arrive as init kwargs (see load_settings), so they rank below the
        # environment and the .env file.
        return (env_settings, dotenv_settings, init_settings)

    @property
    def workspace(self) -> Path:
        return self._workspace

    @property
    def config_path(self) -> Path | None:
        return self._config_path

    def path(self, value: str | Path) -> Path:
        """Resolve a configured path against the workspace."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self._workspace / p

    def location(self, value: str) -> str:
        """Resolve a source location: URLs stay as they are, paths become absolute."""
        if re.match(r"^https?://", value):
            return value
        return str(self.path(value))

    @property
    def templates_dir(self) -> Path:
        return self.path(self.paths.templates)

    @property
    def issues_dir(self) -> Path:
        return self.path(self.paths.issues)

    @property
    def all_countries(self) -> list[str]:
        return [*self.issue.countries, self.issue.regional_label]

    @property
    def database_url(self) -> str:
        """``database.url`` with a relative SQLite path made absolute against the workspace."""
        from newsletter.db import resolve_url

        return resolve_url(self.database.url, self._workspace)


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
    """Load the settings once. Raises :class:`ConfigError` with one sentence naming the key."""
    path = find_config(config)
    data: dict[str, Any] = _read_toml(path) if path else {}
    workspace = (path.parent if path else Path.cwd()).resolve()
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
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


def _build(data: dict[str, Any], env_file: Path | None) -> Settings:
    return Settings(_env_file=env_file, **data)  # type: ignore[call-arg]


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1********@", url)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets shown as ``********`` (or empty)."""

    def walk(value: Any) -> Any:
        if isinstance(value, DatabaseSettings):
            return {"url": _hide_password(value.url), "import_batch_size": value.import_batch_size}
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
        return value

    return {"config_file": str(settings.config_path or "(none)"), **walk(settings)}


__all__ = [
    "Settings",
    "find_config",
    "load_settings",
    "masked_dump",
]
