"""Settings: TOML file, .env file and NEWSLETTER_<SECTION>__<KEY> variables, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError


def test_environment_overrides_dotenv_which_overrides_the_toml_file(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workspace / ".env").write_text(
        "NEWSLETTER_ISSUE__WINDOW_DAYS=10\nNEWSLETTER_ISSUE__TITLE=From dotenv\n"
    )
    monkeypatch.setenv("NEWSLETTER_ISSUE__TITLE", "From env")
    settings = load_settings(workspace / "newsletter.toml")
    assert settings.issue.title == "From env"
    assert settings.issue.window_days == 10
    assert settings.issue.timezone == "Asia/Almaty"  # from the file


def test_relative_paths_resolve_against_the_config_files_folder(workspace: Path) -> None:
    settings = load_settings(workspace / "newsletter.toml")
    assert settings.templates_dir == workspace.resolve() / "templates"
    assert settings.location("sources/feed.xml") == str(workspace.resolve() / "sources/feed.xml")
    assert settings.location("https://x.example.org/feed") == "https://x.example.org/feed"


def test_newsletter_config_variable_selects_the_file(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(workspace / "newsletter.toml"))
    assert load_settings().config_path == (workspace / "newsletter.toml").resolve()


def test_unknown_setting_in_the_file_names_the_key(workspace: Path) -> None:
    cfg = workspace / "newsletter.toml"
    cfg.write_text(cfg.read_text() + "\n[smtpp]\nhost = 'x'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert "unknown setting 'smtpp'" in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_value_from_the_environment_names_key_and_variable(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_ISSUE__WINDOW_DAYS", "seven")
    with pytest.raises(ConfigError) as info:
        load_settings(workspace / "newsletter.toml")
    message = str(info.value)
    assert "'issue.window_days'" in message and "$NEWSLETTER_ISSUE__WINDOW_DAYS" in message


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[issue]\ntimezone = 'Mars/Olympus'\n", "unknown time zone 'Mars/Olympus'"),
        ("[rates]\ncurrencies = ['KZT', 'dollar']\n", "'dollar' is not a three-letter ISO 4217"),
        ("[issue]\ncountries = ['Kazakhstan', 'kazakhstan']\n", "listed twice"),
        ("[issue]\nweb_url = 'news.example.org'\n", "must be an absolute http(s) URL"),
        ("[issue\n", "invalid TOML"),
    ],
)
def test_invalid_values_fail_with_one_sentence(tmp_path: Path, snippet: str, expected: str) -> None:
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text(snippet)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert expected in str(info.value)
    assert str(cfg) in str(info.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_config_command_masks_secrets(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("config", env={"NEWSLETTER_SECURITY__SECRET_KEY": "hunter2-very-secret"})
    assert result.code == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert 'secret_key = "********"' in result.stdout
    assert "[issue]" in result.stdout and 'timezone = "Asia/Almaty"' in result.stdout


def test_config_command_reports_a_bad_setting_on_one_line_with_exit_2(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("config", env={"NEWSLETTER_BUILD__MAX_TEXT_LINE": "10"})
    assert result.code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and "'build.max_text_line'" in result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://:pw-no-user@db.example/news",
            "postgresql+psycopg://:********@db.example/news",
        ),
        (
            "postgresql+psycopg://app:pw-with-user@db.example/news",
            "postgresql+psycopg://app:********@db.example/news",
        ),
        (
            "postgresql+psycopg://app@db.example/news?password=pw-in-query",
            "postgresql+psycopg://app@db.example/news?password=********",
        ),
    ],
)
def test_config_and_db_status_mask_every_password_in_a_database_url(
    cli, url: str, shown: str
) -> None:  # type: ignore[no-untyped-def]
    env = {
        "NEWSLETTER_DATABASE__URL": url,
        "NEWSLETTER_SOURCES__FEEDS": '["https://reader:pw-feed@feeds.example/rss?api_key=pw-key&page=2"]',
    }
    result = cli("config", env=env)
    assert result.code == 0, result.stderr
    assert "pw-" not in result.stdout + result.stderr
    assert shown in result.stdout
    assert "https://reader:********@feeds.example/rss?api_key=********&page=2" in result.stdout
    status = cli("db", "status", env={**env, "PGCONNECT_TIMEOUT": "2"})
    assert status.code != 0 and "pw-" not in status.stdout + status.stderr
    assert len(status.stderr.strip().splitlines()) == 1


def test_a_url_that_is_not_a_database_url_is_named_without_its_password(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("db", "status", env={"NEWSLETTER_DATABASE__URL": "nonsense://:pw-x@@h/?"})
    assert "pw-x" not in result.stdout + result.stderr
