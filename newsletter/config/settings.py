"""Settings: one pydantic-settings class, loaded once at the CLI edge.

Precedence, highest first: environment variables ``NEWSLETTER_<SECTION>__<KEY>``, then a ``.env``
file beside the config file, then ``newsletter.toml``, then the defaults below. Relative paths are
resolved against the directory that holds the config file (the *workspace*).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from newsletter.compose.options import FetchLimits, IssueConfig
from newsletter.compose.render import RenderOptions
from newsletter.config.sections import (
    BouncesSettings,
    BuildSettings,
    DatabaseSettings,
    DKIMSettings,
    IssueSettings,
    PathsSettings,
    PreviewSettings,
    RatesSettings,
    RelaySettings,
    SchedulerSettings,
    ScheduleSettings,
    SecuritySettings,
    SenderSettings,
    SMTPSettings,
    SourcesSettings,
    TopicsSettings,
    WebSettings,
)
from newsletter.core.interests import Vocabulary
from newsletter.storage.db import resolve_url


class Settings(BaseSettings):
    """All settings. Sections map to ``[section]`` tables in ``newsletter.toml``."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSLETTER_",
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
        frozen=True,
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
    bounces: BouncesSettings = Field(default_factory=BouncesSettings)
    schedules: list[ScheduleSettings] = Field(default_factory=list)
    relays: list[RelaySettings] = Field(default_factory=list)
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
        relay_names = [relay.name for relay in self.relays]
        if len(set(relay_names)) != len(relay_names):
            raise ValueError("two relays have the same name")
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
        return resolve_url(self.database.url, self._workspace)

    # -- the small typed options that the lower layers take ------------------------------------
    def vocabulary(self) -> Vocabulary:
        """The interest vocabulary: the countries, Regional and the topics."""
        return Vocabulary(
            tuple(self.issue.countries), self.issue.regional_label, tuple(self.topics.vocabulary)
        )

    def render_options(self) -> RenderOptions:
        return RenderOptions(
            templates_dir=self.templates_dir,
            tagline=self.issue.tagline,
            full_text=self.issue.full_text,
            web_url=self.issue.web_url,
            language=self.issue.language,
            text_width=self.build.max_text_line,
            rates_quote=self.rates.quote,
            organisation=self.sender.organisation,
            postal_address=self.sender.postal_address,
        )

    def issue_config(self) -> IssueConfig:
        """What composing and building an issue need, every location resolved."""
        i, rates = self.issue, self.rates
        return IssueConfig(
            issues_dir=self.issues_dir,
            render=self.render_options(),
            rates_history=self.path(rates.history_file),
            title=i.title,
            timezone=i.timezone,
            tz=i.tz,
            window_days=i.window_days,
            summary_chars=i.summary_chars,
            countries=tuple(i.countries),
            regional=i.regional_label,
            topics=tuple(self.topics.vocabulary),
            topic_aliases=dict(self.topics.aliases),
            feeds=tuple(self.location(f) for f in self.sources.feeds),
            markdown=tuple(self.location(m) for m in self.sources.markdown),
            fetch=FetchLimits(
                timeout=self.sources.timeout,
                max_bytes=self.sources.max_bytes,
                allow_private=self.sources.allow_private,
            ),
            rates_source=self.location(rates.source) if rates.source else "",
            rates_base=rates.base,
            rates_currencies=tuple(rates.currencies),
            max_html_kb=self.build.max_html_kb,
            max_text_line=self.build.max_text_line,
            strict=self.build.strict,
        )
