"""The sections of the settings: one pydantic model per ``[table]`` of ``newsletter.toml``."""

from __future__ import annotations

import re
from datetime import date, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

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
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    timeout: float = Field(default=20.0, gt=0, le=300, description="seconds for a whole fetch")
    max_bytes: int = Field(
        default=10_000_000, ge=1024, description="largest feed, as received and as decompressed"
    )
    allow_private: bool = Field(
        default=False, description="follow redirects to loopback, private or link-local addresses"
    )


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
    quote: Literal["per_currency", "per_base"] = Field(
        default="per_base",
        description="per_base: 1 USD = 515.46 KZT; per_currency: KZT/USD = 0.00194",
    )

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

    url: str = "sqlite:///newsletter.storage.db"
    import_batch_size: int = Field(default=5000, ge=1, le=100_000)

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError(
                "must start with sqlite:// or postgresql:// (e.g. sqlite:///newsletter.storage.db)"
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
    organisation: str = Field(default="", max_length=200, description="who sends, in the footer")
    postal_address: str = Field(
        default="",
        max_length=500,
        description="the sender's postal address, in every footer (CAN-SPAM)",
    )

    @field_validator("from_address", "reply_to", "unsubscribe_mailto")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value

    @field_validator("organisation", "postal_address")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 32 and c != "\n" for c in value):
            raise ValueError("only printable characters (and line breaks) are allowed")
        return value.strip()

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
    stop_grace: float = Field(default=20.0, ge=0, le=600)
    sender_timeout: float = Field(
        default=5.0, ge=1, le=600, description="a sender silent this long is taken for dead"
    )
    warmup_start: int = Field(default=0, ge=0, description="messages on the first warm-up day")
    warmup_factor: float = Field(default=1.5, ge=1.0, le=10.0)
    warmup_since: date | None = None

    @model_validator(mode="after")
    def _warmup(self) -> SMTPSettings:
        if self.warmup_start and self.warmup_since is None:
            raise ValueError(
                "smtp.warmup_start needs smtp.warmup_since, the first day (YYYY-MM-DD)"
            )
        return self

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
    public_lists: list[str] = Field(
        default_factory=list,
        description="lists anyone may join on the preferences page (subscribe_list always is)",
    )
    confirmation_interval_hours: float = Field(
        default=24, gt=0, le=24 * 30, description="at most one confirmation mail per address"
    )


class DKIMSettings(Section):
    """Optional DKIM signing (rsa-sha256, relaxed/relaxed)."""

    domain: str = ""
    selector: str = ""
    private_key_file: str = ""


class BouncesSettings(Section):
    """Returned mail: bounces, complaints and mailto unsubscribes (see docs/bounces.md)."""

    return_path: str = Field(
        default="", description="envelope sender; set: VERP (bounces+REF@domain) per message"
    )
    soft_limit: int = Field(
        default=3, ge=1, le=100, description="soft bounces in a row (no delivery between)"
    )
    pause_ratio: float = Field(
        default=0.05, gt=0, le=1, description="permanent failures among the recent messages"
    )
    pause_window: int = Field(default=1000, ge=50, le=1_000_000)
    imap_host: str = Field(default="", description="an IMAP mailbox of returns (bounces fetch)")
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Literal["tls", "starttls"] = "tls"
    imap_username: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_folder: str = "INBOX"
    imap_done_folder: str = "Processed"
    imap_ca_file: str = ""
    imap_timeout: float = Field(default=30.0, gt=0, le=600)
    fetch_every_minutes: int = Field(
        default=0, ge=0, le=1440, description="the scheduler fetches returns this often (0: never)"
    )
    postmark_username: str = Field(default="", description="basic auth of the Postmark webhook")
    postmark_password: SecretStr = SecretStr("")
    sns_topic_arns: list[str] = Field(
        default_factory=list, description="SNS topics whose notifications are taken (empty: any)"
    )
    sns_url_pattern: str = Field(
        default=r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/",
        description="where SNS signing certificates and subscription URLs may come from",
    )

    @field_validator("return_path")
    @classmethod
    def _return_path(cls, value: str) -> str:
        if value and not re.fullmatch(r"[^@\s+]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError(f"{value!r} is not an e-mail address without a '+'")
        return value


class RelaySettings(Section):
    """One of several SMTP relays used together (``[[relays]]``; empty: the ``[smtp]`` one)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str = ""
    password: SecretStr = SecretStr("")
    verify: bool = True
    ca_file: str = ""
    timeout: float = Field(default=30.0, gt=0, le=600)
    concurrency: int = Field(default=4, ge=1, le=200)
    rate_per_second: float = Field(default=0.0, ge=0)
    rate_per_hour: int = Field(default=0, ge=0)
    weight: float = Field(default=1.0, gt=0, le=1000, description="its share of the messages")
