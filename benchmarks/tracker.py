"""Tracker at scale: sightings per second and memory per live cluster at 10k, 100k and 1M live clusters.

    python -m benchmarks.tracker            # 10k, 100k, 1M live clusters (~15 minutes, ~2 GB at 1M)
    python -m benchmarks.tracker --quick    # 10k and 100k, fewer sightings (a few minutes)
    python -m benchmarks.tracker --sizes 10000 --sightings 2000

Each size runs in a fresh subprocess, so its memory figure is that process's alone. The state is
bulk-populated: N posts, each a new random picture (random 64-bit pHash and 256-bit PDQ, quality 100),
their records written straight into a plain dict store, an hour of event time apart from nothing else;
a self-check first proves that the bulk writer yields exactly the store that `ClusterTracker.observe`
yields for the same posts. Then (the first expiry pass, which scans the whole store once at start, is
timed apart) the tracker observes:

- `new`: random new pictures, each founding a cluster (the worst case: every lookup misses);
- `mix`: a realistic mix: 30% new pictures, 30% re-uploads of a live cluster's picture (pHash and PDQ a
  few bits off, within the cluster distance), 40% reshares of a live post.

and last, `forget s`: what an expiry costs the cluster index: a tenth of the clusters forgotten, then the
next sighting (the index rebuilt or reloaded).

Reported per size and workload: sightings/s by wall clock and by the process's CPU time (on a shared
machine the CPU figure is the steadier one), and memory per live cluster: the process's RSS growth over
the bulk population plus the index built from it, divided by N (everything the state costs: store
records, keys, the cluster index).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import MutableMapping
from typing import Any

from monitor.models import AnalyzedPost, ImageAnalysis, ImageHashes
from monitor.tracking.tracker import ClusterTracker, ViralityPolicy

T0 = 1_750_000_000
CLUSTER_DISTANCE = 10
POLICY = ViralityPolicy(threshold=1000, window_seconds=3600, level_factor=10, retention_seconds=7 * 24 * 3600)


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def random_hashes(rng: random.Random) -> ImageHashes:
    return ImageHashes(phash=rng.getrandbits(64), pdq=rng.getrandbits(256), pdq_quality=100)


def near(hashes: ImageHashes, rng: random.Random) -> ImageHashes:
    """A re-upload: a few pHash bits (within the cluster distance) and PDQ bits flipped."""
    phash = hashes.phash
    for bit in rng.sample(range(64), 4):
        phash ^= 1 << bit
    pdq = hashes.pdq or 0
    for bit in rng.sample(range(256), 12):
        pdq ^= 1 << bit
    return ImageHashes(phash=phash, pdq=pdq, pdq_quality=hashes.pdq_quality)


def post(
    post_id: str, second: int, hashes: ImageHashes | None, reshare_of: str | None = None
) -> AnalyzedPost:
    images = (ImageAnalysis(hashes=hashes),) if hashes is not None else ()
    return AnalyzedPost(post_id=post_id, created_at=float(second), reshare_of=reshare_of, images=images)


def _second(i: int, n: int) -> int:
    """The population spreads over the hour before T0, in order."""
    return T0 - 3600 + (i * 3600) // max(1, n)


def population(n: int, seed: int = 1) -> list[tuple[str, int, ImageHashes]]:
    rng = random.Random(seed)
    return [(f"p{i}", _second(i, n), random_hashes(rng)) for i in range(n)]


def bulk_store(rows: list[tuple[str, int, ImageHashes]]) -> dict[str, Any]:
    """The store `observe` leaves after these posts (new pictures, no reasons, no URL), written directly."""
    from monitor.tracking import records

    store: dict[str, Any] = {}
    for seq, (post_id, second, hashes) in enumerate(rows):
        records.write_new_picture(store, post_id, second, hashes, seq)
    return store


def check_bulk(n: int = 300) -> None:
    rows = population(n, seed=7)
    observed: dict[str, Any] = {}
    tracker = ClusterTracker(observed, POLICY, CLUSTER_DISTANCE)
    for post_id, second, hashes in rows:
        tracker.observe(post(post_id, second, hashes))
    bulk = bulk_store(rows)
    if bulk != observed:
        differ = sorted(k for k in set(bulk) | set(observed) if bulk.get(k) != observed.get(k))[:5]
        raise SystemExit(f"bulk population differs from observe's state: {differ}")


def _workload(
    kind: str, count: int, rows: list[tuple[str, int, ImageHashes]], seed: int
) -> list[AnalyzedPost]:
    rng = random.Random(seed)
    posts = []
    for i in range(count):
        second = T0 + i // 50
        roll = rng.random() if kind == "mix" else 0.0
        if roll < 0.3:
            posts.append(post(f"{kind}-n{i}", second, random_hashes(rng)))
        elif roll < 0.6:
            _, _, hashes = rows[rng.randrange(len(rows))]
            posts.append(post(f"{kind}-u{i}", second, near(hashes, rng)))
        else:
            parent, _, _ = rows[rng.randrange(len(rows))]
            posts.append(post(f"{kind}-r{i}", second, None, reshare_of=parent))
    return posts


def _run(tracker: ClusterTracker, posts: list[AnalyzedPost]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for item in posts:
        tracker.observe(item)
    return len(posts) / (time.perf_counter() - wall), len(posts) / max(1e-9, time.process_time() - cpu)


def measure(n: int, sightings: int) -> dict[str, Any]:
    """One size, in this process: populate, load, time the workloads."""
    rows = population(n)
    before = _rss()
    store: MutableMapping[str, Any] = bulk_store(rows)
    tracker = ClusterTracker(store, POLICY, CLUSTER_DISTANCE)
    started = time.perf_counter()
    load_cpu = time.process_time()
    live = len(tracker.clusters)  # builds the index from the store, as a restarted worker does
    load_s, load_cpu = time.perf_counter() - started, time.process_time() - load_cpu
    per_cluster = (_rss() - before) / n
    started = time.perf_counter()
    tracker.observe(post("warm-up", T0, None, reshare_of=rows[0][0]))  # the first expiry pass
    expiry_s = time.perf_counter() - started
    result: dict[str, Any] = {
        "n": n,
        "live": live,
        "bytes_per_cluster": per_cluster,
        "load_s": load_s,
        "load_cpu_s": load_cpu,
        "expiry_s": expiry_s,
    }
    for kind, seed in (("new", 11), ("mix", 12)):
        posts = _workload(kind, sightings, rows, seed)
        wall, cpu = _run(tracker, posts)
        result[kind] = {"wall": wall, "cpu": cpu}
    # What an expiry costs the cluster index: a tenth of the clusters forgotten, then the next lookup.
    gone = {f"c-{hashes.phash:016x}" for _, _, hashes in rows[::10]}
    started = time.perf_counter()
    tracker.clusters.forget(gone)
    tracker.observe(post("after-expiry", T0 + sightings, random_hashes(random.Random(13))))
    result["forget_s"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k and 100k live clusters, fewer sightings")
    parser.add_argument("--sizes", type=int, nargs="*", help="live cluster counts (default 10k 100k 1M)")
    parser.add_argument("--sightings", type=int, help="sightings timed per workload and size")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sightings = args.sightings or (3_000 if args.quick else 20_000)
    if args.one:
        print(json.dumps(measure(args.one, sightings)))
        return
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    check_bulk()
    print("bulk population equals observe's state: ok", flush=True)
    print(
        f"{'live clusters':>13} {'bytes/cluster':>13} {'load s':>7} {'expiry s':>8}"
        f" {'new/s wall':>10} {'new/s CPU':>9} {'mix/s wall':>10} {'mix/s CPU':>9} {'forget s':>8}",
        flush=True,
    )
    for n in sizes:
        command = [sys.executable, "-m", "benchmarks.tracker", "--one", str(n), "--sightings", str(sightings)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{r['live']:>13,} {r['bytes_per_cluster']:>13,.0f} {r['load_s']:>7.1f} {r['expiry_s']:>8.2f}"
            f" {r['new']['wall']:>10,.0f} {r['new']['cpu']:>9,.0f} {r['mix']['wall']:>10,.0f}"
            f" {r['mix']['cpu']:>9,.0f} {r['forget_s']:>8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
