"""Tests for monitor.settings: defaults, then MONITOR_* environment variables, then flags; bad values give a
SettingsError with one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor.settings import Settings, SettingsError, env_name, load_settings


def test_defaults_without_environment() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.threshold == 1000
    assert settings.window_seconds == 3600
    assert settings.level_factor == 10
    assert settings.bank is None
    assert settings.broker == "kafka://localhost:9092"


def test_env_names_follow_the_contract() -> None:
    assert env_name("threshold") == "MONITOR_THRESHOLD"
    assert env_name("window_seconds") == "MONITOR_WINDOW_SECONDS"
    assert env_name("bank") == "MONITOR_BANK"


def test_environment_configures_every_kind_of_setting(tmp_path: Path) -> None:
    env = {
        "MONITOR_THRESHOLD": "50",
        "MONITOR_WINDOW_SECONDS": "600",
        "MONITOR_BANK": str(tmp_path / "bank"),
        "MONITOR_BROKER": "kafka://kafka-1:9092",
        "MONITOR_NARRATIVE_THRESHOLD": "0.7",
        "MONITOR_FETCH_TIMEOUT_SECONDS": "2.5",
        "MONITOR_ALLOW_PRIVATE_ADDRESSES": "yes",
        "MONITOR_DATA_DIR": str(tmp_path / "data"),
        "UNRELATED": "ignored",
        "MONITOR_NOT_A_SETTING": "ignored too",
    }
    settings = load_settings(environ=env)
    assert settings.threshold == 50
    assert settings.window_seconds == 600
    assert settings.bank == tmp_path / "bank"
    assert settings.broker == "kafka://kafka-1:9092"
    assert settings.narrative_threshold == pytest.approx(0.7)
    assert settings.fetch_timeout_seconds == pytest.approx(2.5)
    assert settings.allow_private_addresses is True
    assert settings.data_dir == tmp_path / "data"
    assert isinstance(settings.threshold, int)
    assert isinstance(settings.bank, Path)


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_THRESHOLD", "77")
    monkeypatch.setenv("MONITOR_WINDOW_SECONDS", "120")
    settings = load_settings()
    assert (settings.threshold, settings.window_seconds) == (77, 120)


def test_flags_override_the_environment() -> None:
    env = {"MONITOR_THRESHOLD": "50", "MONITOR_WINDOW_SECONDS": "600", "MONITOR_BANK": "/srv/bank"}
    settings = load_settings({"threshold": 5, "bank": "/tmp/other-bank", "window_seconds": None}, environ=env)
    assert settings.threshold == 5
    assert settings.bank == Path("/tmp/other-bank")
    assert settings.window_seconds == 600  # a flag that was not given leaves the environment's value


def test_flag_values_given_as_text_are_converted() -> None:
    flags = {"threshold": "25", "narrative_threshold": "0.5", "allow_private_addresses": "off"}
    settings = load_settings(flags, environ={"MONITOR_ALLOW_PRIVATE_ADDRESSES": "true"})
    assert settings.threshold == 25
    assert settings.narrative_threshold == pytest.approx(0.5)
    assert settings.allow_private_addresses is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("on", True), ("TRUE", True), ("0", False), ("no", False), ("", False)],
)
def test_boolean_words(text: str, expected: bool) -> None:
    settings = load_settings(environ={"MONITOR_ALLOW_PRIVATE_ADDRESSES": text})
    assert settings.allow_private_addresses is expected


def test_bank_path_expands_home_and_empty_means_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings(environ={"MONITOR_BANK": "~/bank"}).bank == tmp_path / "bank"
    assert load_settings(environ={"MONITOR_BANK": ""}).bank is None


def _error(overrides: dict[str, Any] | None = None, **env: str) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(overrides, environ=env)
    message = str(info.value)
    assert message and "\n" not in message, f"not one clear line: {message!r}"
    return message


@pytest.mark.parametrize("value", ["abc", "", "1.5", "10k", "1e3"])
def test_a_non_integer_threshold_in_the_environment_names_the_variable(value: str) -> None:
    message = _error(MONITOR_THRESHOLD=value)
    assert "MONITOR_THRESHOLD" in message
    assert repr(value) in message


def test_a_bad_flag_names_the_flag() -> None:
    message = _error({"window_seconds": "an hour"})
    assert "--window-seconds" in message
    assert "an hour" in message


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MONITOR_THRESHOLD": "0"}, "threshold"),
        ({"MONITOR_THRESHOLD": "-5"}, "threshold"),
        ({"MONITOR_WINDOW_SECONDS": "0"}, "window_seconds"),
        ({"MONITOR_LEVEL_FACTOR": "1"}, "level_factor"),
        ({"MONITOR_MATCH_DISTANCE": "65"}, "match_distance"),
        ({"MONITOR_CLUSTER_DISTANCE": "-1"}, "cluster_distance"),
        ({"MONITOR_NARRATIVE_THRESHOLD": "1.5"}, "narrative_threshold"),
        ({"MONITOR_NARRATIVE_THRESHOLD": "nan"}, "narrative_threshold"),
        ({"MONITOR_NARRATIVE_THRESHOLD": "high"}, "MONITOR_NARRATIVE_THRESHOLD"),
        ({"MONITOR_ALLOW_PRIVATE_ADDRESSES": "maybe"}, "MONITOR_ALLOW_PRIVATE_ADDRESSES"),
        ({"MONITOR_PARTITIONS": "0"}, "partitions"),
    ],
)
def test_out_of_range_values_are_refused_with_the_setting_named(env: dict[str, str], words: str) -> None:
    assert words in _error(**env)


def test_a_bad_value_from_a_flag_is_refused_even_if_the_environment_is_fine() -> None:
    assert "threshold" in _error({"threshold": 0}, MONITOR_THRESHOLD="10")


def test_a_flag_fixes_a_bad_environment_value() -> None:
    # The environment is read first, but the flag's value is the one used.
    assert load_settings({"threshold": 10}, environ={"MONITOR_THRESHOLD": "0"}).threshold == 10


def test_settings_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="threshold"):
        Settings(threshold=0)


def test_replace_validates_too() -> None:
    settings = Settings()
    assert settings.replace(threshold=7).threshold == 7
    with pytest.raises(SettingsError):
        settings.replace(level_factor=0)
