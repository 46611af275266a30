"""Read post archives (`.jsonl` or `.jsonl.gz`) for replays.

An archive may be in any order of `created_at`; replays sort it by event time (ties keep file order), so
the same archive always gives the same stream. Malformed lines are collected as rejects with their line
number and reason, never raised. A file with no JSON object on any line (empty, or another format: a JSON
array, CSV, an image) is no archive of malformed events but the wrong file: `ArchiveError`, so a replay
of it fails instead of reporting zero posts and exiting 0.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from monitor.ingest.events import EventLimits, MalformedEvent, decode_event
from monitor.models import DeadLetterReason, Post


class ArchiveError(OSError):
    """The archive itself cannot be read (missing, unreadable, not gzip)."""


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    line: int
    post: Post
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    reason: DeadLetterReason
    detail: str
    raw: str


@dataclass(frozen=True)
class Archive:
    path: Path
    entries: tuple[ArchiveEntry, ...]
    rejects: tuple[Reject, ...]


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    if not path.is_file():
        raise ArchiveError(f"archive not found: {path}")
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except (gzip.BadGzipFile, EOFError) as exc:
        raise ArchiveError(f"cannot read {path}: {exc}") from None


#: Reject reasons of a line that is no JSON object at all (monitor.ingest.events.decode_event).
_NOT_OBJECT = frozenset({"invalid json", "not an object"})


def _not_an_archive(path: Path, lines: int, first: str | None) -> ArchiveError:
    if lines == 0:
        return ArchiveError(f"archive is empty: {path} (no post events to replay)")
    if first is None:
        shown = ""
    elif first.isprintable() and "\ufffd" not in first:
        shown = f"; it begins {first!r}"
    else:
        shown = "; it is not text"
    return ArchiveError(
        f"not a post archive: {path}: none of its {lines} lines is a JSON object "
        f"(an archive holds one post event per line, .jsonl or .jsonl.gz{shown})"
    )


def _is_object(line: str) -> bool:
    if not line.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def check_archive(path: Path) -> None:
    """Raise ArchiveError unless some line of the file is a JSON object; reads only up to the first one, so
    a command can check its input before it opens (and truncates) its output files."""
    lines = 0
    first: str | None = None
    for _, line in iter_lines(path):
        if _is_object(line):
            return
        lines += 1
        first = first or line.strip()[:40]
    raise _not_an_archive(path, lines, first)


def read_archive(path: Path, limits: EventLimits | None = None) -> Archive:
    """Parse a whole archive, sorted by event time. Raises ArchiveError for a file with no JSON object."""
    entries: list[ArchiveEntry] = []
    rejects: list[Reject] = []
    for number, line in iter_lines(path):
        try:
            post, raw = decode_event(line, allow_paths=True, limits=limits)
        except MalformedEvent as exc:
            rejects.append(Reject(number, exc.reason, exc.detail, line.rstrip("\n")))
            continue
        entries.append(ArchiveEntry(number, post, raw))
    if not entries and all(r.reason in _NOT_OBJECT for r in rejects):
        raise _not_an_archive(path, len(rejects), rejects[0].raw.strip()[:40] if rejects else None)
    entries.sort(key=lambda e: (e.post.created_at, e.line))
    return Archive(path=path, entries=tuple(entries), rejects=tuple(rejects))
