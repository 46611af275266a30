"""The Python API (`monitor.replay`, `monitor.match_image`, `monitor.load_bank`), for scripts and tests.

Settings here start from the documented defaults, not from `MONITOR_*` variables: a test or a script says
what it means, and the same call gives the same alerts on every machine. Everything runs in-process and
synchronously; a caption model, once loaded, is kept for the next call in the same process (loading it is
most of a small replay's time).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from monitor.bank import store
from monitor.bank.store import Bank
from monitor.models import Alert, BankMatch
from monitor.settings import Settings, SettingsError

if TYPE_CHECKING:
    from monitor.narratives.matcher import Encoder

PathLike = str | os.PathLike[str]
T = TypeVar("T")

_encoders: dict[str, Encoder] = {}
_encoders_lock = threading.Lock()


def load_bank(directory: PathLike) -> Bank:
    """A snapshot of a bank directory (`monitor bank add` writes one). Raises BankError if it is missing."""
    return store.load_bank(Path(directory))


def make_settings(settings: Settings | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """`settings` (default: the documented defaults, not the environment) with `overrides` applied, each
    read as its environment variable would be (`threshold=20`, `bank="dir"`); an unknown name or a bad
    value raises SettingsError."""
    changes: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        if name not in Settings.model_fields:
            raise SettingsError(f"unknown setting {name!r}")
        if value is not None:
            changes[name] = value
    return (settings or Settings()).replace(**changes)  # validated (and text read) as the environment is


def _bank_for(bank: Bank | PathLike | None, settings: Settings) -> tuple[Bank, Settings]:
    if isinstance(bank, Bank):
        return bank, settings
    if bank is not None:
        settings = settings.replace(bank=Path(bank))
    return (load_bank(settings.bank) if settings.bank is not None else Bank()), settings


def _encoder(settings: Settings, bank: Bank) -> Encoder | None:
    """The caption model for these settings, loaded once per process; None when the bank has no
    narratives (then no model is needed at all)."""
    if not bank.narratives:
        return None
    from monitor.pipeline import make_encoder

    key = f"{settings.narrative_model}@{settings.e5_runtime}"
    with _encoders_lock:
        if key not in _encoders:
            _encoders[key] = make_encoder(settings)
        return _encoders[key]


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end, also when called from inside a running event loop (an async test):
    then in a thread of its own, since a loop cannot be re-entered."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="monitor-replay")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def replay(
    archive: PathLike,
    *,
    bank: Bank | PathLike | None = None,
    settings: Settings | None = None,
    **overrides: Any,
) -> list[Alert]:
    """The alerts an archive (`.jsonl` or `.jsonl.gz`, contract §1) yields, in the order raised: the same
    pipeline as `monitor replay ARCHIVE --embedded`, in this process, with no Kafka.

    `bank` is a directory or a `Bank` (default: `settings.bank`, else no bank); `overrides` are settings by
    name (`threshold=20, window_seconds=3600`). Malformed lines are skipped, as the CLI's replay does.
    Raises ArchiveError for a missing file or one that is no archive, BankError for a missing bank,
    SettingsError for a bad setting.
    """
    from monitor.ingest.archive import check_archive
    from monitor.runtime.replay import replay_embedded

    resolved = make_settings(settings, overrides)
    loaded, resolved = _bank_for(bank, resolved)
    path = Path(archive)
    check_archive(path)
    summary = _run(
        replay_embedded(path, resolved, bank=loaded, encoder=_encoder(resolved, loaded), progress=None)
    )
    return summary.alerts


def match_image(
    image: bytes | PathLike,
    *,
    bank: Bank | PathLike,
    settings: Settings | None = None,
    **overrides: Any,
) -> BankMatch | None:
    """The banked cluster an image (its bytes or a file) belongs to, as `monitor match` decides it, or None.
    Raises DecodeError for bytes that are no image, OSError for a file that cannot be read."""
    from monitor.bank.matcher import BankMatcher
    from monitor.ingest.decode import DecodeLimits

    resolved = make_settings(settings, overrides)
    loaded, resolved = _bank_for(bank, resolved)
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    matcher = BankMatcher(loaded, resolved.match_distance, local=resolved.local_match)
    limits = DecodeLimits(max_bytes=resolved.fetch_max_bytes, max_pixels=resolved.max_image_pixels)
    return matcher.match_bytes(data, limits)[1]
