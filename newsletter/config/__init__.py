"""Settings: one frozen pydantic-settings class, loaded once at the edge (CLI, scheduler, web).

Lower layers never see :class:`Settings`; they take the small typed options it builds
(:meth:`Settings.issue_config`, :meth:`Settings.vocabulary`, the delivery factory's objects).
"""

from newsletter.config.loading import (
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    find_config,
    load_settings,
    masked_dump,
    with_changes,
)
from newsletter.config.sections import (
    DEFAULT_COUNTRIES,
    DEFAULT_TOPICS,
    DKIMSettings,
    ScheduleSettings,
    SenderSettings,
    SMTPSettings,
)
from newsletter.config.settings import Settings

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_NAME",
    "DEFAULT_COUNTRIES",
    "DEFAULT_TOPICS",
    "DKIMSettings",
    "SMTPSettings",
    "ScheduleSettings",
    "SenderSettings",
    "Settings",
    "find_config",
    "load_settings",
    "masked_dump",
    "with_changes",
]
