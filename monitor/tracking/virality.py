"""Event-time share counting per cluster, over an injected key-value store.

Shares are counted per second inside one-minute buckets (`b:<cluster>:<minute>` -> the second of its one
share, or [second, count, ...]; earlier versions wrote {"second": count}, which reads the same), so a
window of an hour reads 61 small values and each update writes one; that suits a Faust table, whose
changelog gets one small record per update. Windows are computed from event times only, never from the
wall clock, so an archive yields the same counts whenever it is replayed.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from monitor.tracking.records import BUCKET_SECONDS, bucket_items

__all__ = ["BUCKET_SECONDS", "add_share", "count_window", "shares_per_second", "window_counts"]


def _bucket_key(cluster_id: str, minute: int) -> str:
    return f"b:{cluster_id}:{minute}"


def add_share(store: MutableMapping[str, Any], cluster_id: str, second: int) -> None:
    key = _bucket_key(cluster_id, second // BUCKET_SECONDS)
    stored = store.get(key)
    if stored is None or (not isinstance(stored, int) and not stored):
        store[key] = second  # one share: the second alone
        return
    bucket = [part for pair in bucket_items(stored) for part in pair]
    for i in range(0, len(bucket), 2):
        if bucket[i] == second:
            bucket[i + 1] += 1
            break
    else:
        bucket += [second, 1]
    store[key] = tuple(bucket)


def shares_per_second(
    store: MutableMapping[str, Any], cluster_id: str, first: int, last: int
) -> dict[int, int]:
    """Counts for each second in [first, last] that has shares."""
    counts: dict[int, int] = {}
    for minute in range(first // BUCKET_SECONDS, last // BUCKET_SECONDS + 1):
        for second, count in bucket_items(store.get(_bucket_key(cluster_id, minute))):
            if first <= second <= last:
                counts[second] = counts.get(second, 0) + count
    return counts


def count_window(
    store: MutableMapping[str, Any], cluster_id: str, end: int, window: int, first_seen: int | None = None
) -> int:
    """Shares whose time lies in the window (end - window, end].

    `first_seen` (the cluster's earliest share) spares reading the buckets before it, which are empty:
    most clusters are young, so most windows read one or two buckets rather than 61.
    """
    start = end - window + 1 if first_seen is None else max(end - window + 1, first_seen)
    return sum(shares_per_second(store, cluster_id, start, end).values())


def window_counts(
    store: MutableMapping[str, Any],
    cluster_id: str,
    new_share: int,
    latest: int,
    window: int,
    last_new: int | None = None,
    first_seen: int | None = None,
) -> list[tuple[int, int]]:
    """(window end, shares in window) for every window a new share at `new_share` can have changed.

    In order (the new share is the latest), that is the one window ending at it. A late share also changes
    the windows ending at the later shares within `window` of it, up to `latest`; each is reported so the
    caller can find the first that crosses a level. When several shares arrived at once (a parent post and
    the reshares that waited for it), they span [new_share, last_new].
    """
    if new_share >= latest and (last_new is None or last_new <= new_share):
        return [(new_share, count_window(store, cluster_id, new_share, window, first_seen))]
    last_end = min(max(new_share, last_new or new_share) + window - 1, latest)
    start = new_share - window + 1 if first_seen is None else max(new_share - window + 1, first_seen)
    counts = shares_per_second(store, cluster_id, start, last_end)
    seconds = sorted(counts)
    results: list[tuple[int, int]] = []
    running = 0
    left = 0
    for end in seconds:
        running += counts[end]
        while seconds[left] <= end - window:
            running -= counts[seconds[left]]
            left += 1
        if end >= new_share:
            results.append((end, running))
    return results
