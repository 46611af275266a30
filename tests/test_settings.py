"""Tests for monitor.settings: defaults, then MONITOR_* environment variables, then flags; bad values give a
SettingsError with one clear line."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from monitor.settings import Settings, SettingsError, env_name, explicit_setting, load_settings


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


# --- pydantic-settings: every documented variable, any field type, picklable -----------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def _configuration_table_variables() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `MONITOR_")]
    return {name for row in rows for name in re.findall(r"`(MONITOR_[A-Z0-9_]+)`", row.split("|")[1])}


def test_the_readme_configuration_table_lists_exactly_the_settings() -> None:
    documented = _configuration_table_variables()
    fields = {env_name(name) for name in Settings.model_fields}
    assert documented - fields == set(), "documented but not a setting"
    assert fields - documented == set(), "a setting missing from README.md's configuration table"


def _other_value(field: str) -> tuple[str, Any]:
    """A variable's text that differs from the field's default, and the value it must give."""
    special: dict[str, tuple[str, Any]] = {
        "post_url_template": ("https://mod.example/{post_id}", "https://mod.example/{post_id}"),
        "log_level": ("DEBUG", "debug"),
        "narrative_threshold": ("0.66", 0.66),
        "narrative_screen": ("2.25", 2.25),
        "e5_runtime": ("numpy", "numpy"),
        "embedded_processes": ("3", 3),
    }
    default = getattr(Settings(), field)
    if field in special:
        return special[field]
    if field in ("bank", "c2pa_trust_anchors") or isinstance(default, Path):
        return "/srv/monitor/x", Path("/srv/monitor/x")
    if isinstance(default, bool):
        return str(not default).lower(), not default
    if isinstance(default, float):
        return str(default + 0.25), default + 0.25
    if isinstance(default, int):
        return str(default + 1), default + 1
    return "other", "other"


def test_every_documented_variable_is_read_from_the_environment() -> None:
    for name in sorted(_configuration_table_variables()):
        field = name.removeprefix("MONITOR_").lower()
        text, expected = _other_value(field)
        got = getattr(load_settings(environ={name: text}), field)
        assert got == expected and type(got) is type(expected), (name, got)


class _WithLimit(Settings):
    """A field of a type the old parser did not know: it compared annotations as strings, so an `int |
    None` field would have arrived as the raw text."""

    limit: int | None = None


def test_an_optional_int_field_is_read_as_an_int() -> None:
    settings = _WithLimit.from_environment(environ={"MONITOR_LIMIT": "12"})
    assert settings.limit == 12 and type(settings.limit) is int
    assert _WithLimit.from_environment({"limit": "3"}, environ={"MONITOR_LIMIT": "12"}).limit == 3
    assert _WithLimit.from_environment(environ={"MONITOR_LIMIT": ""}).limit is None
    assert _WithLimit.from_environment(environ={}).limit is None
    with pytest.raises(SettingsError, match=r"MONITOR_LIMIT: cannot read 'twelve' as int \| None"):
        _WithLimit.from_environment(environ={"MONITOR_LIMIT": "twelve"})


def test_only_the_exact_upper_case_names_are_read() -> None:
    assert load_settings(environ={"monitor_threshold": "7", "Monitor_Threshold": "8"}).threshold == 1000


def test_c2pa_trust_anchors_is_a_path_setting(tmp_path: Path) -> None:
    assert Settings().c2pa_trust_anchors is None
    pem = tmp_path / "anchors.pem"
    assert load_settings(environ={"MONITOR_C2PA_TRUST_ANCHORS": str(pem)}).c2pa_trust_anchors == pem
    assert load_settings(environ={"MONITOR_C2PA_TRUST_ANCHORS": " "}).c2pa_trust_anchors is None


@pytest.mark.parametrize("text", ["DEBUG", "info", " Warning ", "error", "critical"])
def test_log_levels_are_words_in_any_case(text: str) -> None:
    assert load_settings(environ={"MONITOR_LOG_LEVEL": text}).log_level == text.strip().lower()


def test_an_unknown_log_level_is_refused_with_the_choices() -> None:
    message = _error(MONITOR_LOG_LEVEL="loud")
    assert message == "MONITOR_LOG_LEVEL: cannot read 'loud' as one of debug, info, warning, error, critical"


def test_several_bad_values_are_named_on_one_line() -> None:
    message = _error({"threshold": "many"}, MONITOR_MATCH_DISTANCE="near")
    assert "--threshold: cannot read 'many' as int" in message
    assert "MONITOR_MATCH_DISTANCE: cannot read 'near' as int" in message


def test_unknown_settings_are_refused() -> None:
    assert _error({"treshold": 5}) == "unknown setting 'treshold'"
    with pytest.raises(SettingsError, match="unknown setting 'treshold'"):
        Settings(treshold=5)  # type: ignore[call-arg]
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings().replace(treshold=5)


def test_constructing_settings_never_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_THRESHOLD", "77")
    assert Settings().threshold == 1000
    assert Settings(window_seconds=60).threshold == 1000
    assert load_settings().threshold == 77


def test_defaults_lie_under_the_environment_and_the_flags() -> None:
    defaults = {"threshold": 3, "window_seconds": 120}
    settings = load_settings({"window_seconds": 90}, {"MONITOR_THRESHOLD": "4"}, defaults=defaults)
    assert (settings.threshold, settings.window_seconds) == (4, 90)
    assert load_settings(environ={}, defaults=defaults).threshold == 3


def test_explicit_setting_reads_one_setting_on_its_own() -> None:
    env = {"MONITOR_LOG_LEVEL": "ERROR", "MONITOR_THRESHOLD": "not a number"}
    assert explicit_setting("log_level", environ=env) == "error"
    assert explicit_setting("log_level", "debug", environ=env) == "debug"  # the flag wins
    assert explicit_setting("log_level", environ={}) is None
    with pytest.raises(SettingsError, match="MONITOR_THRESHOLD"):
        explicit_setting("threshold", environ=env)


def test_settings_survive_pickling_for_the_analysis_processes(tmp_path: Path) -> None:
    settings = load_settings(
        {"bank": tmp_path}, {"MONITOR_LOG_LEVEL": "debug", "MONITOR_NARRATIVE_THRESHOLD": "0.6"}
    )
    copy = pickle.loads(pickle.dumps(settings))
    assert copy == settings and hash(copy) == hash(settings)
    assert copy.bank == tmp_path and copy.log_level == "debug"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.threshold = 5  # type: ignore[misc]
    assert settings.threshold == 1000


def test_the_cli_refuses_a_bad_log_level_in_one_line_with_exit_status_2() -> None:
    env = {**os.environ, "MONITOR_LOG_LEVEL": "loud"}
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "inspect", "nothing.png"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "monitor: error: MONITOR_LOG_LEVEL: cannot read 'loud' as one of "
        "debug, info, warning, error, critical"
    )
