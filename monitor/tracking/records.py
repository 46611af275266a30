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

from collections.abc import MutableMapping
from typing import Any

from monitor.models import ImageHashes

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
    store[f"b:{cluster_id}:{second // 60}"] = second
