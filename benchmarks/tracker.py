"""Tracker at scale: sightings per second and memory per live cluster at 10k, 100k and 1M live clusters,
with 1, 2 and 4 partitions, against the previous implementation in the same run.

    python -m benchmarks.tracker                 # 10k, 100k, 1M live clusters (~10 minutes, ~2 GB at 1M)
    python -m benchmarks.tracker --quick         # 10k and 100k, fewer sightings (a few minutes)
    python -m benchmarks.tracker --sizes 10000 --sightings 5000 --partitions 1 2
    python -m benchmarks.tracker --baseline HEAD~3   # the "before" from another commit (default: fd81181)
    python -m benchmarks.tracker --sizes 10000 --broker localhost:9092   # plus P trackers on the broker

Every measurement runs in fresh processes, so its memory figure is that process's alone. The state is
bulk-populated: N posts, each a new random picture (random 64-bit pHash and 256-bit PDQ, quality 100),
their records written straight into a plain dict store, spread over the hour before the workload; a
self-check first proves that the bulk writer yields exactly the store that `observe` (and
`observe_assigned`, without representatives) yields for the same posts. The workload is a mix: 30% new
pictures, 30% re-uploads of a live cluster's picture (pHash and PDQ a few bits off, within the cluster
distance), 40% reshares of a live post. Three set-ups:

- `before`: the previous implementation (`--baseline`, extracted with `git archive` to a temporary
  directory and imported from there): one tracker, `observe`, near-duplicate look-ups included;
- `one tracker`: this implementation, the same way (`observe`, look-ups included);
- `P partitions`: the partitioned design (monitor/tracking/partitions.py): clusters assigned upstream,
  each sighting keyed by its cluster id and sent to `partition_of(cluster id, P)`; each partition is
  its own process with its own tracker (`observe_assigned`) over its share of the clusters, all started
  together once every one has loaded. Reported: the total (all sightings over the slowest partition's
  wall time, and over the partitions' summed CPU time) and the slowest partition's own rate.
- `P routed`: partitioned tracking as the worker runs it (monitor/tracking/routing.py): each partition's
  process holds its share of the clusters and of the post index (`i:` records), and handles every
  operation the workload delivers to it (`count`, `post`, `reshare` resolved by the post index and its
  forwards, `share`), each decoded from JSON as the tracking loop decodes it. The slowest partition's
  line gives its operations per second (a post is 2-3 operations).
- `--broker HOST:PORT`: P real `TrackingLoop` processes over a `sightings` topic of P partitions on the
  broker (benchmarks/tracker_broker.py): Kafka reads, transactions, state changelog and forwards
  included; fresh state, N population posts then the workload.

Rates are by wall clock and by the process's CPU time: on a shared machine the CPU figure is the steady
one, and with fewer cores than partitions the wall-clock total cannot grow past the cores. Memory per live
cluster is the process's RSS growth over the bulk population (plus, for `observe`, the cluster index
built from it), divided by the clusters it holds: everything the state costs, store records, keys, post
ids, the index.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from monitor.models import AnalyzedPost, ImageAnalysis, ImageHashes
from monitor.tracking.tracker import ClusterTracker, ViralityPolicy

T0 = 1_750_000_000
CLUSTER_DISTANCE = 10
POLICY = ViralityPolicy(threshold=1000, window_seconds=3600, level_factor=10, retention_seconds=7 * 24 * 3600)
BASELINE = "fd81181"
"""main before issue 17's tracker work (compact list records, one tracker, look-ups in the tracker)."""
ROOT = Path(__file__).resolve().parent.parent


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


def cluster_of(hashes: ImageHashes) -> str:
    return f"c-{hashes.phash:016x}"


def _second(i: int, n: int) -> int:
    """The population spreads over the hour before T0, in order."""
    return T0 - 3600 + (i * 3600) // max(1, n)


def population(n: int, seed: int = 1) -> list[ImageHashes]:
    rng = random.Random(seed)
    return [random_hashes(rng) for _ in range(n)]


def bulk_store(
    pictures: list[ImageHashes], owned: list[bool] | None = None, reps: bool = True
) -> dict[str, Any]:
    """The store `observe` leaves after posts p0, p1, ... each showing one of `pictures` (no reasons, no
    URL), written directly; only the `owned` ones; without `rep:` records for `observe_assigned`."""
    from monitor.tracking import records

    store: dict[str, Any] = {}
    seq = 0
    for i, hashes in enumerate(pictures):
        if owned is not None and not owned[i]:
            continue
        records.write_new_picture(store, f"p{i}", _second(i, len(pictures)), hashes, seq)
        if not reps:
            del store["rep:" + cluster_of(hashes)]
        seq += 1
    return store


def check_bulk(n: int = 300) -> None:
    pictures = population(n, seed=7)
    observed: dict[str, Any] = {}
    tracker = ClusterTracker(observed, POLICY, CLUSTER_DISTANCE)
    assigned: dict[str, Any] = {}
    counting = ClusterTracker(assigned, POLICY, CLUSTER_DISTANCE)
    for i, hashes in enumerate(pictures):
        tracker.observe(post(f"p{i}", _second(i, n), hashes))
        counting.observe_assigned(post(f"p{i}", _second(i, n), hashes), [cluster_of(hashes)])
    for got, reps in ((observed, True), (assigned, False)):
        bulk = bulk_store(pictures, reps=reps)
        if bulk != got:
            differ = sorted(k for k in set(bulk) | set(got) if bulk.get(k) != got.get(k))[:5]
            raise SystemExit(f"bulk population differs from the tracker's state: {differ}")


def mix(count: int, pictures: list[ImageHashes], seed: int) -> list[tuple[AnalyzedPost, str]]:
    """The workload, each sighting with the cluster it is keyed by (what analysis assigns upstream)."""
    rng = random.Random(seed)
    n = len(pictures)
    sightings = []
    for i in range(count):
        second = T0 + i // 50
        roll = rng.random()
        if roll < 0.3:
            hashes = random_hashes(rng)
            sightings.append((post(f"n{i}", second, hashes), cluster_of(hashes)))
        elif roll < 0.6:
            j = rng.randrange(n)
            sightings.append((post(f"u{i}", second, near(pictures[j], rng)), cluster_of(pictures[j])))
        else:
            j = rng.randrange(n)
            sightings.append((post(f"r{i}", second, None, reshare_of=f"p{j}"), cluster_of(pictures[j])))
    return sightings


def measure_one(n: int, sightings: int) -> dict[str, Any]:
    """One tracker doing its own look-ups (`observe`), in this process; runs on either implementation."""
    pictures = population(n)
    before = _rss()
    store: MutableMapping[str, Any] = bulk_store(pictures)
    tracker = ClusterTracker(store, POLICY, CLUSTER_DISTANCE)
    started = time.perf_counter()
    live = len(tracker.clusters)  # builds the index from the store, as a restarted worker does
    load_s = time.perf_counter() - started
    per_cluster = (_rss() - before) / n
    tracker.observe(post("warm-up", T0, None, reshare_of="p0"))  # the first expiry pass, apart
    posts = [item for item, _ in mix(sightings, pictures, 12)]
    wall, cpu = time.perf_counter(), time.process_time()
    for item in posts:
        tracker.observe(item)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"live": live, "bytes": per_cluster, "load_s": load_s, "n": len(posts), "wall": wall, "cpu": cpu}


def measure_partition(n: int, sightings: int, partitions: int, index: int) -> dict[str, Any]:
    """One partition's tracker (`observe_assigned`) over its share; waits for the word to start."""
    from monitor.tracking.partitions import partition_of

    pictures = population(n)
    owned = [partition_of(cluster_of(hashes), partitions) == index for hashes in pictures]
    mine = [
        (item, [key] if item.images else [])  # a reshare counts for its parent's clusters, found there
        for item, key in mix(sightings, pictures, 12)
        if partition_of(key, partitions) == index
    ]
    before = _rss()
    store = bulk_store(pictures, owned, reps=False)
    per_cluster = (_rss() - before) / max(1, sum(owned))
    tracker = ClusterTracker(store, POLICY, CLUSTER_DISTANCE)
    tracker.observe_assigned(post("warm-up", T0, None, reshare_of=f"p{owned.index(True)}"), [])
    print("ready", flush=True)
    sys.stdin.readline()
    wall, cpu = time.perf_counter(), time.process_time()
    for item, clusters in mine:
        tracker.observe_assigned(item, clusters)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"live": sum(owned), "bytes": per_cluster, "n": len(mine), "wall": wall, "cpu": cpu}


def routed_ops(sightings: list[tuple[AnalyzedPost, str]], partitions: int) -> list[tuple[str, bytes]]:
    """Every operation partitioned tracking delivers for the workload (monitor/tracking/routing.py), as
    (routing key, JSON): analysis's (`count` and `post` per post, `reshare` to the parent's index) and the
    index partitions' forwards for each reshare (`share` to the cluster, `post` for the reshare)."""
    from monitor.tracking.routing import post_ops, resolution_ops

    ops: list[tuple[str, bytes]] = []
    for item, key in sightings:
        if item.reshare_of is None:
            found = post_ops(item, [key], partitions)
        else:
            found = post_ops(item, [], partitions)
            found += resolution_ops(item.post_id, int(item.created_at), None, [key], partitions)
        ops += [(route, json.dumps(op).encode()) for route, op in found]
    return ops


def measure_routed(n: int, sightings: int, partitions: int, index: int) -> dict[str, Any]:
    """One partition of partitioned tracking as the worker runs it: its share of the clusters and of the
    post index (`i:` records), every operation delivered to it decoded from JSON and handled by its
    `PartitionRouter`; what it forwards is built (the cost is its) and dropped: the partition it goes to
    has it in its own input already."""
    from monitor.tracking import records
    from monitor.tracking.partitions import partition_of
    from monitor.tracking.routing import Outcome, PartitionRouter

    pictures = population(n)
    mine = [
        op
        for key, op in routed_ops(mix(sightings, pictures, 12), partitions)
        if partition_of(key, partitions) == index
    ]
    before = _rss()
    store: dict[str, Any] = {}
    owned = 0
    for i, hashes in enumerate(pictures):
        cluster_id, post_id, second = cluster_of(hashes), f"p{i}", _second(i, n)
        if partition_of(cluster_id, partitions) == index:
            records.write_new_picture(store, post_id, second, hashes, 0)
            del store["rep:" + cluster_id], store["p:" + post_id]
            owned += 1
        if partition_of(post_id, partitions) == index:
            store["i:" + post_id] = (second, cluster_id)
    per_cluster = (_rss() - before) / max(1, owned)
    tracker = ClusterTracker(store, POLICY, CLUSTER_DISTANCE, post_index=False)
    router = PartitionRouter(tracker, index, partitions)
    tracker.advance(T0)  # the first expiry pass, apart
    print("ready", flush=True)
    sys.stdin.readline()
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = Outcome()
    for raw in mine:
        router.handle(json.loads(raw), outcome)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"live": owned, "bytes": per_cluster, "n": sightings, "ops": len(mine), "wall": wall, "cpu": cpu}


def measure_index(n: int, lookups: int) -> dict[str, Any]:
    """What each analysis worker pays for the replicated representative index (partitioned design): memory
    per cluster, and images assigned per second, half re-uploads, half never-seen pictures."""
    from monitor.tracking.partitions import RepresentativeIndex

    pictures = population(n)
    before = _rss()
    index = RepresentativeIndex(CLUSTER_DISTANCE)
    started = time.process_time()
    for hashes in pictures:
        index.add(cluster_of(hashes), hashes)
    add_cpu = time.process_time() - started
    per_cluster = (_rss() - before) / n
    rng = random.Random(14)
    queries = [near(rng.choice(pictures), rng) if k % 2 else random_hashes(rng) for k in range(lookups)]
    wall, cpu = time.perf_counter(), time.process_time()
    for hashes in queries:
        index.nearest(hashes)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"bytes": per_cluster, "add_cpu": add_cpu, "n": lookups, "wall": wall, "cpu": cpu}


def _worker(tree: Path, script: Path, *args: str) -> subprocess.Popen[str]:
    """This file, run as a script with `tree`'s `monitor` package first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"benchmark worker failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run_partitions(
    script: Path, n: int, sightings: int, partitions: int, flag: str = "--part"
) -> list[dict[str, Any]]:
    """P partition processes, each loaded, then all told to start at once."""
    args = [flag, str(n), "--sightings", str(sightings), "--partitions", str(partitions)]
    workers = [_worker(ROOT, script, *args, "--index", str(i)) for i in range(partitions)]
    for worker in workers:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise SystemExit("a partition worker failed to load")
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    return [_result(worker) for worker in workers]


def _row(label: str, n: int, live: int, per_cluster: float, total: int, wall: float, cpu: float) -> str:
    return (
        f"{n:>10,} {label:>14} {live:>10,} {per_cluster:>9,.0f} {total / wall:>12,.0f} {total / cpu:>12,.0f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k and 100k live clusters, fewer sightings")
    parser.add_argument("--sizes", type=int, nargs="*", help="live cluster counts (default 10k 100k 1M)")
    parser.add_argument("--sightings", type=int, help="sightings per partitioned run (default 40,000)")
    parser.add_argument("--lookups", type=int, help="sightings per one-tracker run (default 5,000)")
    parser.add_argument("--partitions", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--baseline", default=BASELINE, help="git revision measured as 'before'")
    parser.add_argument(
        "--index-sizes",
        type=int,
        nargs="*",
        default=[10_000, 100_000],
        help="sizes at which to measure the replicated representative index (filled one by one: slow)",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rep", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--part", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--routed", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-routed", action="store_true", help="skip the routed rows (operations through PartitionRouter)"
    )
    parser.add_argument(
        "--broker",
        help="also run P `TrackingLoop`s on this broker (host:port), over a sightings topic of P partitions",
    )
    parser.add_argument("--routed-only", action="store_true", help="only the routed (and broker) rows")
    parser.add_argument("--broker-sightings", type=int, default=20_000, help="sightings per broker run")
    args = parser.parse_args(argv)
    sightings = args.sightings or (10_000 if args.quick else 40_000)
    lookups = args.lookups or (2_000 if args.quick else 5_000)
    if args.one:
        print(json.dumps(measure_one(args.one, lookups)))
        return
    if args.rep:
        print(json.dumps(measure_index(args.rep, lookups)))
        return
    if args.part:
        print(json.dumps(measure_partition(args.part, sightings, args.partitions[0], args.index)))
        return
    if args.routed:
        print(json.dumps(measure_routed(args.routed, sightings, args.partitions[0], args.index)))
        return
    if args.sizes is None:
        args.sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    sizes = args.sizes  # `--sizes` alone: none (the replicated index only)
    check_bulk()
    print("bulk population equals the tracker's state: ok", flush=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    with tempfile.TemporaryDirectory() as temp:
        base = Path(temp) / "base"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.baseline, "monitor"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        script = Path(temp) / "tracker_worker.py"  # outside both trees: each imports its own `monitor`
        shutil.copy(__file__, script)
        heads = ("set-up", 14), ("clusters", 10), ("B/cluster", 9), ("sightings/s", 12), ("per CPU s", 12)
        print(f"{'live':>10} " + " ".join(f"{head:>{width}}" for head, width in heads))
        for n in sizes:
            for label, tree in (
                [] if args.routed_only else ((f"before {args.baseline}", base), ("one tracker", ROOT))
            ):
                r = _result(_worker(tree, script, "--one", str(n), "--lookups", str(lookups)))
                print(_row(label[:14], n, r["live"], r["bytes"], r["n"], r["wall"], r["cpu"]), flush=True)
            for partitions in [] if args.routed_only else args.partitions:
                parts = run_partitions(script, n, sightings, partitions)
                total = sum(p["n"] for p in parts)
                wall = max(p["wall"] for p in parts)
                cpu = sum(p["cpu"] for p in parts)
                live = sum(p["live"] for p in parts)
                per_cluster = sum(p["bytes"] * p["live"] for p in parts) / live
                print(_row(f"{partitions} partitions", n, live, per_cluster, total, wall, cpu), flush=True)
                slowest = min(parts, key=lambda p: p["n"] / p["cpu"])
                print(
                    f"{'':>10} {'  slowest one':>14} {slowest['live']:>10,} {slowest['bytes']:>9,.0f}"
                    f" {slowest['n'] / slowest['wall']:>12,.0f} {slowest['n'] / slowest['cpu']:>12,.0f}",
                    flush=True,
                )
            for partitions in [] if args.no_routed else args.partitions:
                parts = run_partitions(script, n, sightings, partitions, "--routed")
                wall = max(p["wall"] for p in parts)
                cpu = sum(p["cpu"] for p in parts)
                live = sum(p["live"] for p in parts)
                per_cluster = sum(p["bytes"] * p["live"] for p in parts) / live
                print(_row(f"{partitions} routed", n, live, per_cluster, sightings, wall, cpu), flush=True)
                slowest = max(parts, key=lambda p: p["cpu"])
                print(
                    f"{'':>10} {'  slowest one':>14} {slowest['live']:>10,} {slowest['bytes']:>9,.0f}"
                    f" {slowest['ops'] / slowest['wall']:>12,.0f} {slowest['ops'] / slowest['cpu']:>12,.0f}"
                    f"  (its {slowest['ops']:,} operations)",
                    flush=True,
                )
    if args.broker:
        from benchmarks.tracker_broker import run_broker

        for partitions in args.partitions:
            print(run_broker(args.broker, partitions, args.broker_sightings), flush=True)

    for n in args.index_sizes:
        r = _result(_worker(ROOT, Path(__file__), "--rep", str(n), "--lookups", str(lookups)))
        print(
            f"replicated index at {n:,} clusters: {r['bytes']:,.0f} bytes per cluster per analysis worker,"
            f" {r['n'] / r['cpu']:,.0f} images assigned per CPU s ({r['n'] / r['wall']:,.0f}/s wall),"
            f" filled at {n / r['add_cpu']:,.0f} representatives per CPU s",
            flush=True,
        )


if __name__ == "__main__":
    main()
