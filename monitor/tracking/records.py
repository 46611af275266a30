"""The tracker's records as the store holds them: compact JSON arrays, and the older dicts read back.

The store is a Faust table in workers, so its values must stay plain JSON; but it is also held in memory
for every live cluster, and a JSON object costs a dict and one string per field name, several hundred
bytes per cluster. Records are therefore positional (a cluster's representative, its meta, a share
bucket), held as tuples: a tuple of numbers and strings is 16-24 bytes smaller than the same list, and
Python's garbage collector stops tracking it, so full collections do not walk every live cluster (they
did: at a million clusters they were most of the per-sighting cost). JSON writes them as arrays, and
arrays read back as lists are read the same. Records written by earlier versions (lists, dicts) are read
as they are and rewritten in the compact form the next time they change, so an existing changelog
restores without a migration.

    rep:<cluster>       "<seq> <PDQ quality or -> <pHash hex>:<PDQ hex or empty>[:<region PDQ hex>...]"
    p:<post>            "<cluster>", or ("<cluster>", "<cluster>", ...) for a post counted for several
    cl:<cluster>        (first_seen, latest, level, reasons (JSON objects) or null, image URL or null,
                         second, post, second, post, ...)   (the sample posts, flat)
    b:<cluster>:<min>   second (one share), or (second, count, second, count, ...)

(Most clusters are one picture posted once: the forms are chosen so that such a cluster's records hold
no empty list and no one-entry container.)
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from monitor.models import ImageHashes

BUCKET_SECONDS = 60
"""Shares are kept per second in buckets of a minute: `b:<cluster>:<second // BUCKET_SECONDS>`."""
FIRST_SEEN, LATEST, LEVEL, REASONS, IMAGE_URL, SAMPLES = range(6)
"""Positions in a `cl:` record; the samples run from SAMPLES to its end."""


def cluster_id_of(phash: int) -> str:
    """A cluster is named after its founder's pHash."""
    return f"c-{phash:016x}"


def rep_value(hashes: ImageHashes, seq: int) -> str:
    """One string: a list of its parts would cost a list and an int object more per cluster."""
    pdq = "" if hashes.pdq is None else f"{hashes.pdq:064x}"
    quality = "-" if hashes.pdq is None or hashes.pdq_quality is None else str(hashes.pdq_quality)
    text = ":".join([f"{hashes.phash:016x}", pdq, *(f"{value:064x}" for value in hashes.pdq_regions)])
    return f"{seq} {quality} {text}"


def read_rep(value: Any) -> tuple[int, ImageHashes]:
    """(seq, hashes) of a `rep:` record, compact or as older versions wrote it (hashes' JSON + seq)."""
    if isinstance(value, dict):
        return int(value["seq"]), ImageHashes.from_json(value)
    seq, quality, text = str(value).split(" ")
    phash, pdq, *regions = text.split(":")
    return int(seq), ImageHashes(
        phash=int(phash, 16),
        pdq=int(pdq, 16) if pdq else None,
        pdq_quality=int(quality) if pdq and quality != "-" else None,
        pdq_regions=tuple(int(region, 16) for region in regions),
    )


def clusters_value(cluster_ids: list[str]) -> str | tuple[str, ...]:
    """A `p:` record: the one cluster id itself (most posts show one picture), else the ids; a one-entry
    list costs 64 bytes more per post."""
    return cluster_ids[0] if len(cluster_ids) == 1 else tuple(cluster_ids)


def read_clusters(value: Any) -> list[str]:
    """The cluster ids of a `p:` record, in either form (earlier versions always wrote a list)."""
    return [value] if isinstance(value, str) else list(value)


def new_meta(second: int) -> list[Any]:
    return [second, second, 0, None, None]


def read_meta(value: Any) -> list[Any]:
    """A `cl:` record as a fresh list (safe to change), from either form."""
    if isinstance(value, dict):
        samples = [part for sample in value.get("samples") or [] for part in sample]
        return [
            int(value.get("first_seen", 0)),
            int(value.get("latest", 0)),
            int(value.get("level") or 0),
            list(value.get("reasons") or []) or None,
            value.get("image_url"),
            *samples,
        ]
    return list(value)


def meta_latest_and_level(value: Any) -> tuple[int, int]:
    """A `cl:` record's latest share and level alerted, without copying it."""
    if isinstance(value, dict):
        return int(value.get("latest", 0)), int(value.get("level") or 0)
    return int(value[LATEST]), int(value[LEVEL])


def samples_of(meta: list[Any]) -> list[tuple[int, str]]:
    return [(int(meta[i]), str(meta[i + 1])) for i in range(SAMPLES, len(meta), 2)]


def set_samples(meta: list[Any], samples: list[tuple[int, str]]) -> None:
    del meta[SAMPLES:]
    for second, post_id in samples:
        meta += [second, post_id]


def add_sample(meta: list[Any], second: int, post_id: str, limit: int) -> None:
    """Keep the `limit` earliest (second, post) samples, in order, with `(second, post_id)` among them if
    it is one: `set_samples(sorted(samples + [new])[:limit])`, without reading every sample when the new
    one is the latest (the common case: streams come mostly in order)."""
    count = (len(meta) - SAMPLES) // 2
    if not count or (second, post_id) >= (meta[-2], meta[-1]):
        if count < limit:
            meta += [second, post_id]
        return
    set_samples(meta, sorted([*samples_of(meta), (second, post_id)])[:limit])


def reasons_of(meta: list[Any]) -> list[dict[str, Any]]:
    return list(meta[REASONS] or [])


def bucket_items(value: Any) -> list[tuple[int, int]]:
    """(second, count) pairs of a `b:` record: one second, [s, n, s, n...], or older ({"s": n})."""
    if isinstance(value, int):
        return [(value, 1)]
    if not value:
        return []
    if isinstance(value, dict):
        return [(int(second), int(count)) for second, count in value.items()]
    return [(int(value[i]), int(value[i + 1])) for i in range(0, len(value), 2)]


def write_new_picture(
    store: MutableMapping[str, Any], post_id: str, second: int, hashes: ImageHashes, seq: int
) -> None:
    """The records a post with one never-seen picture (no reasons, no URL) leaves: for bulk loading in
    benchmarks, checked there against what `ClusterTracker.observe` writes."""
    cluster_id = cluster_id_of(hashes.phash)
    store["s:" + post_id] = second
    store["rep:" + cluster_id] = rep_value(hashes, seq)
    store["p:" + post_id] = cluster_id
    store["cl:" + cluster_id] = (second, second, 0, None, None, second, post_id)
    store[f"b:{cluster_id}:{second // BUCKET_SECONDS}"] = second


@dataclass(frozen=True, slots=True)
class ClusterState:
    """Everything the tracker holds about one cluster, as one record: what moves between partitions when
    two clusters merge (monitor/tracking/partitions.py), and a changelog value keyed by cluster id."""

    cluster_id: str
    first_seen: int
    latest: int
    level: int
    """The highest level alerted: never raised again, after a merge either."""
    reasons: tuple[dict[str, Any], ...] = ()
    image_url: str | None = None
    samples: tuple[tuple[int, str], ...] = ()
    shares: tuple[tuple[int, int], ...] = ()
    """(second, shares that second), ascending."""
    dismissed: bool = False


def read_state(store: MutableMapping[str, Any], cluster_id: str) -> ClusterState | None:
    """A cluster's records in the store (`cl:`, its share buckets, `x:`) as one record; None if unknown."""
    stored = store.get("cl:" + cluster_id)
    if stored is None:
        return None
    meta = read_meta(stored)
    shares: list[tuple[int, int]] = []
    for minute in range(int(meta[FIRST_SEEN]) // BUCKET_SECONDS, int(meta[LATEST]) // BUCKET_SECONDS + 1):
        shares.extend(sorted(bucket_items(store.get(f"b:{cluster_id}:{minute}"))))
    return ClusterState(
        cluster_id=cluster_id,
        first_seen=int(meta[FIRST_SEEN]),
        latest=int(meta[LATEST]),
        level=int(meta[LEVEL]),
        reasons=tuple(reasons_of(meta)),
        image_url=meta[IMAGE_URL],
        samples=tuple(samples_of(meta)),
        shares=tuple(shares),
        dismissed=bool(store.get("x:" + cluster_id)),
    )


def drop_state(store: MutableMapping[str, Any], cluster_id: str) -> None:
    """Remove a cluster's records (it merged into another, which now holds its state)."""
    state = read_state(store, cluster_id)
    if state is not None:
        for minute in range(state.first_seen // BUCKET_SECONDS, state.latest // BUCKET_SECONDS + 1):
            store.pop(f"b:{cluster_id}:{minute}", None)
    for prefix in ("cl:", "x:", "rep:"):
        store.pop(prefix + cluster_id, None)


def write_state(store: MutableMapping[str, Any], state: ClusterState) -> None:
    """Write a cluster's records as the tracker writes them (replacing its share buckets)."""
    old = read_state(store, state.cluster_id)
    if old is not None:
        for minute in range(old.first_seen // BUCKET_SECONDS, old.latest // BUCKET_SECONDS + 1):
            store.pop(f"b:{state.cluster_id}:{minute}", None)
    meta: list[Any] = [
        state.first_seen,
        state.latest,
        state.level,
        list(state.reasons) or None,
        state.image_url,
    ]
    set_samples(meta, list(state.samples))
    store["cl:" + state.cluster_id] = tuple(meta)
    buckets: dict[int, list[int]] = {}
    for second, count in state.shares:
        buckets.setdefault(second // BUCKET_SECONDS, []).extend((second, count))
    for minute, flat in buckets.items():
        one = len(flat) == 2 and flat[1] == 1
        store[f"b:{state.cluster_id}:{minute}"] = flat[0] if one else tuple(flat)
    if state.dismissed:
        store["x:" + state.cluster_id] = 1


def encode_state(state: ClusterState) -> bytes:
    """A compact JSON array: [id, first_seen, latest, level, reasons, image URL, [second, post, ...],
    [second, count, ...], dismissed (0/1)]."""
    return json.dumps(
        [
            state.cluster_id,
            state.first_seen,
            state.latest,
            state.level,
            list(state.reasons),
            state.image_url,
            [part for sample in state.samples for part in sample],
            [part for share in state.shares for part in share],
            int(state.dismissed),
        ],
        separators=(",", ":"),
    ).encode()


def decode_state(data: bytes) -> ClusterState:
    """`encode_state`'s inverse; a record that is not one is refused with the reason."""
    try:
        value = json.loads(data)
        cluster_id, first_seen, latest, level, reasons, url, samples, shares, dismissed = value
        return ClusterState(
            cluster_id=str(cluster_id),
            first_seen=int(first_seen),
            latest=int(latest),
            level=int(level),
            reasons=tuple(dict(r) for r in reasons),
            image_url=None if url is None else str(url),
            samples=tuple((int(samples[i]), str(samples[i + 1])) for i in range(0, len(samples), 2)),
            shares=tuple((int(shares[i]), int(shares[i + 1])) for i in range(0, len(shares), 2)),
            dismissed=bool(dismissed),
        )
    except (ValueError, TypeError, IndexError) as error:
        raise ValueError(f"not a cluster state record: {data[:80]!r} ({error})") from error
