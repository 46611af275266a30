"""A write-back buffer over the tracker's Faust table: one changelog record per key per sightings batch.

Every assignment to a Faust table produces a changelog record. The tracker updates the same few keys over
and over within a batch (a viral cluster's `cl:` meta and its current share bucket, once per post), so
writing through would send several records per post. The buffer keeps a batch's writes and deletes in a
dict and hands the table only the last value of each key when the batch is done.

Reads see the buffer first, so the tracker cannot tell the difference. Nothing is lost that was not lost
before: the table's own changelog is written asynchronously too, and a worker that dies mid-batch reads
the batch again (the posts it had counted are not in the table, so they are counted again, once).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

_DELETED = object()
_MISSING = object()


class WriteBuffer(MutableMapping[str, Any]):
    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self._pending: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        value = self._pending.get(key, _MISSING)
        if value is _MISSING:
            return self.table[key]
        if value is _DELETED:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._pending[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._pending[key] = _DELETED

    def __contains__(self, key: object) -> bool:
        if key in self._pending:
            return self._pending[key] is not _DELETED
        return key in self.table

    def __iter__(self) -> Iterator[str]:
        for key in self.table:
            if key not in self._pending:
                yield key
        for key, value in self._pending.items():
            if value is not _DELETED:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> int:
        """Write the batch's final values to the table; returns how many keys changed."""
        pending, self._pending = self._pending, {}
        for key, value in pending.items():
            if value is _DELETED:
                self.table.pop(key, None)
            else:
                self.table[key] = value
        return len(pending)

    def discard(self) -> None:
        """Forget unflushed writes (the batch failed and will be read again)."""
        self._pending.clear()
