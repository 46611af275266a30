"""One log line per kind of warning per analysed batch, plus a count, instead of one line per image.

The stages log what they skip, image by image (say, `provenance: png: chunk ... runs past the end of the
file`): right for one picture, a flood for a post with 20,000 tiny inline images, where the same warning
came 20,000 times per attempt. While a batch is analysed, the first warning or error of each kind (logger,
level, message template) is logged as it comes; the others of that kind are counted, and `flush`, at the
end of the batch, logs one line with their count and the last of them.

Only records logged by analysis (an analysis process, or the worker's analysis thread) are collapsed: the
worker's own lines (alerts, Slack retries, rebalances) are logged as they come.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Kind:
    more: int
    last: logging.LogRecord


Key = tuple[str, int, str]


class RepeatCollapser(logging.Filter):
    """A handler filter: passes the first record of each kind since the last `flush`, counts the rest."""

    def __init__(self, applies: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__()
        self.applies = applies
        self._kinds: dict[Key, _Kind] = {}
        self._lock = threading.Lock()
        self._decided = threading.local()  # a record passes several handlers: one decision for all

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self._decided, "record", None) is record:
            return bool(self._decided.passes)
        passes = self._decide(record)
        self._decided.record, self._decided.passes = record, passes
        return passes

    def _decide(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno < logging.WARNING
            or getattr(record, "collapsed", False)
            or not self.applies(record)
        ):
            return True
        key = (record.name, record.levelno, str(record.msg))
        with self._lock:
            kind = self._kinds.get(key)
            if kind is None:
                self._kinds[key] = _Kind(0, record)
                return True
            kind.more += 1
            kind.last = record
            return False

    def flush(self) -> None:
        """Log the count of each kind held back since the last flush (with the last such message)."""
        with self._lock:
            kinds, self._kinds = self._kinds, {}
        for (name, level, _), kind in kinds.items():
            if kind.more:
                logging.getLogger(name).log(
                    level,
                    "... and %d more like it in this batch, the last: %s",
                    kind.more,
                    kind.last.getMessage(),
                    extra={"collapsed": True},
                )

    def install(self, logger: logging.Logger | None = None) -> None:
        """On every handler of `logger` (the root by default) that lacks it: handlers may come late."""
        for handler in (logger or logging.getLogger()).handlers:
            if self not in handler.filters:
                handler.addFilter(self)


def everything(record: logging.LogRecord) -> bool:
    return True
