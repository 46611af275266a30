"""Image matching benchmark: recall on viral edits, false matches, hashing cost, bank lookups at scale.

    python -m benchmarks.matching                 # held-out photos (Debian's mate-backgrounds), all parts
    python -m benchmarks.matching --set dev       # the scikit-image photos the thresholds were chosen on
    python -m benchmarks.matching --skip-scale    # without the 10M-hash lookup part (needs ~2 GB, minutes)

Photos: the `--set eval` bank is the nature photographs of Debian's `mate-backgrounds` package (fetched
with `apt-get download` and unpacked with `dpkg -x` into a cache folder); none of them was looked at while
the matcher was built. Half of them are banked; positives are edits of banked photos (every kind in
`monitor.viral_edits`, several seeds each); negatives are the other half and scikit-image's photos, their
edits, tiles cut from them, and flat low-detail pictures. A query counts as found when it is matched to
its own photo's bank cluster, as a false match when a negative is matched to any cluster (a positive
matched to the wrong cluster counts as a false match too).

Methods, side by side:
- `pHash<=10`: imagehash.phash of `Image.open(file)`, nearest banked pHash within 10 bits.
- `PDQ<=31`: the reference PDQ (`pdqhash`) with the eight dihedral hashes of the query and quality >= 50,
  nearest banked hash within 31 bits: how Meta's Hasher-Matcher-Actioner matches.
- `ours`: monitor.matching.BankMatcher on monitor.decode + monitor.hashing, as the pipeline runs it.

Then: hashing cost of multi-megapixel JPEGs against naive `imagehash.phash(Image.open(f))`, and exact
lookups at distance 31 in banks of 10k, 1M and 10M hashes (multi-index vs numpy brute force): wall-clock
p50/p99 and the p99 of the query thread's own CPU time (on a shared 2-core machine the wall-clock tail is
mostly other processes' time slices). Figures are medians; ratios measured in the same run are what to
compare.
"""

from __future__ import annotations

import argparse
import gc
import io
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageDraw, ImageFilter
from skimage import data as skdata

from monitor.bank import add_images, load_bank
from monitor.decode import HASH_DRAFT, decode_image
from monitor.hash_index import PdqIndex, distances, to_words
from monitor.hashing import compute_hashes
from monitor.matching import BankMatcher
from monitor.pdq import MATCH_THRESHOLD, MIN_QUALITY
from monitor.viral_edits import EDITS, apply_edit, jpeg

CACHE = Path.home() / ".cache" / "misinfo-monitor" / "mate-backgrounds"
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "moon",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "clock",
    "cell",
)
WORK_SIDE = 1280
"""Photos are shrunk to this longest side before editing: viral copies are rarely larger."""


# --- photos ---------------------------------------------------------------------------------------------


def mate_photos() -> dict[str, Path]:
    """The photographs of Debian's mate-backgrounds, downloaded and unpacked once into CACHE."""
    root = CACHE / "x" / "usr" / "share" / "backgrounds" / "mate"
    if not root.is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        debs = list(CACHE.glob("mate-backgrounds_*.deb"))
        if not debs:
            download = ["apt-get", "download", "mate-backgrounds"]
            if subprocess.run(download, cwd=CACHE, capture_output=True).returncode != 0:
                subprocess.run(["apt-get", "update"], check=True, capture_output=True)
                subprocess.run(download, cwd=CACHE, check=True, capture_output=True)
            debs = list(CACHE.glob("mate-backgrounds_*.deb"))
        subprocess.run(["dpkg", "-x", str(debs[0]), str(CACHE / "x")], check=True)
    files = sorted((root / "nature").glob("*.jpg")) + sorted((root / "abstract").glob("Elephants.jpg"))
    return {f"mate:{p.stem}": p for p in files}


def shrink(image: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    image = image.convert("RGB")
    if max(image.size) > side:
        scale = side / max(image.size)
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )
    return image


def skimage_photos() -> dict[str, Image.Image]:
    return {f"skimage:{n}": shrink(Image.fromarray(getattr(skdata, n)())) for n in SKIMAGE_PHOTOS}


def tiles(image: Image.Image, rng: random.Random, count: int) -> list[Image.Image]:
    """Pieces cut from a photo (a quarter to a ninth of it): partial pictures that must match nothing."""
    out = []
    for _ in range(count):
        fraction = rng.uniform(0.33, 0.5)
        w, h = round(image.width * fraction), round(image.height * fraction)
        x, y = rng.randrange(image.width - w + 1), rng.randrange(image.height - h + 1)
        out.append(image.crop((x, y, x + w, y + h)))
    return out


def flat_pictures(count: int, seed: int) -> list[Image.Image]:
    """Low-detail pictures: plain colours, soft gradients, a blurred blob, a logo-like shape on white."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        w, h = rng.choice(((640, 480), (480, 640), (800, 450), (512, 512)))
        colour = tuple(rng.randrange(256) for _ in range(3))
        image = Image.new("RGB", (w, h), colour)
        draw = ImageDraw.Draw(image)
        kind = i % 4
        if kind == 1:
            other = tuple(rng.randrange(256) for _ in range(3))
            for y in range(h):
                t = y / h
                draw.line(
                    [(0, y), (w, y)],
                    fill=tuple(round(a + (b - a) * t) for a, b in zip(colour, other, strict=True)),
                )
        elif kind == 2:
            draw.ellipse(
                (w * 0.3, h * 0.3, w * 0.7, h * 0.7), fill=tuple(rng.randrange(256) for _ in range(3))
            )
            image = image.filter(ImageFilter.GaussianBlur(40))
        elif kind == 3:
            image = Image.new("RGB", (w, h), (255, 255, 255))
            draw = ImageDraw.Draw(image)
            draw.rectangle((w * 0.4, h * 0.4, w * 0.6, h * 0.6), fill=colour)
        out.append(image)
    return out


@dataclass
class Query:
    name: str
    kind: str
    data: bytes
    truth: str | None
    """The bank cluster it is a copy of, or None for a negative."""


@dataclass
class Dataset:
    bank: dict[str, bytes]
    queries: list[Query]


def build(dataset: str, seeds: int, negative_seeds: int) -> Dataset:
    if dataset == "eval":
        mate = {n: shrink(Image.open(p)) for n, p in mate_photos().items()}
        names = sorted(mate)
        banked = {n: mate[n] for n in names[::2]}
        others = {**{n: mate[n] for n in names[1::2]}, **skimage_photos()}
    else:
        photos = skimage_photos()
        names = sorted(photos)
        banked = {n: photos[n] for n in names[::2]}
        others = {n: photos[n] for n in names[1::2]}
    rng = random.Random(f"{dataset}-negatives")
    queries: list[Query] = []
    for name, image in banked.items():
        for kind in EDITS:
            for seed in range(seeds):
                queries.append(Query(f"{name}/{kind}/{seed}", kind, apply_edit(kind, image, seed), name))
    for name, image in others.items():
        queries.append(Query(f"{name}/original", "other photo", jpeg(image, 90), None))
        for kind in EDITS:
            for seed in range(negative_seeds):
                queries.append(
                    Query(f"{name}/{kind}/{seed}", "other photo, edited", apply_edit(kind, image, seed), None)
                )
        for i, tile in enumerate(tiles(image, rng, 4)):
            queries.append(Query(f"{name}/tile{i}", "tile of other photo", jpeg(tile, 85), None))
    for i, picture in enumerate(flat_pictures(40, 11)):
        queries.append(Query(f"flat{i}", "flat picture", jpeg(picture, 85), None))
    return Dataset({n: jpeg(i, 92) for n, i in banked.items()}, queries)


# --- methods --------------------------------------------------------------------------------------------

Decide = Callable[[bytes], str | None]


def _bits(vector: np.ndarray) -> int:
    return int.from_bytes(np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes(), "big")


def phash_method(bank: dict[str, bytes]) -> Decide:
    names = list(bank)
    stored = [imagehash.phash(Image.open(io.BytesIO(bank[n]))) for n in names]

    def decide(data: bytes) -> str | None:
        h = imagehash.phash(Image.open(io.BytesIO(data)))
        best = min(range(len(names)), key=lambda i: h - stored[i])
        return names[best] if h - stored[best] <= 10 else None

    return decide


def pdq_method(bank: dict[str, bytes]) -> Decide:
    names = list(bank)
    stored = []
    for n in names:
        vector, _ = pdqhash.compute(np.asarray(Image.open(io.BytesIO(bank[n])).convert("RGB")))
        stored.append(_bits(vector))

    def decide(data: bytes) -> str | None:
        vectors, quality = pdqhash.compute_dihedral(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        if quality < MIN_QUALITY:
            return None
        best: tuple[int, str] | None = None
        for vector in vectors:
            q = _bits(vector)
            for name, s in zip(names, stored, strict=True):
                d = (q ^ s).bit_count()
                if d <= MATCH_THRESHOLD and (best is None or d < best[0]):
                    best = (d, name)
        return best[1] if best else None

    return decide


@dataclass
class OursStats:
    stages: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def ours_method(bank: dict[str, bytes], folder: Path, stats: OursStats) -> Decide:
    for name, data in bank.items():
        path = folder / (name.replace(":", "_") + ".jpg")
        path.write_bytes(data)
        add_images(folder / "bank", name.replace(":", "_"), [path])
    matcher = BankMatcher(load_bank(folder / "bank"), 10)
    clusters = {name.replace(":", "_"): name for name in bank}

    def decide(data: bytes) -> str | None:
        _, found = matcher.match_bytes(data)
        if found is None:
            return None
        stats.stages[found.hash_kind] += 1
        return clusters[found.bank_cluster]

    return decide


# --- recall and false matches ---------------------------------------------------------------------------


@dataclass
class Outcome:
    found: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    false: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    seconds: list[float] = field(default_factory=list)


def run(decide: Decide, queries: Sequence[Query]) -> Outcome:
    out = Outcome()
    for q in queries:
        start = time.perf_counter()
        got = decide(q.data)
        out.seconds.append(time.perf_counter() - start)
        if q.truth is None:
            out.false[q.kind].append(got is not None)
        else:
            out.found[q.kind].append(got == q.truth)
            out.false["(wrong cluster)"].append(got is not None and got != q.truth)
    return out


def pct(values: Sequence[bool]) -> str:
    return f"{100 * sum(values) / max(1, len(values)):5.1f}%"


def report_recall(outcomes: dict[str, Outcome], stats: OursStats) -> None:
    methods = list(outcomes)
    first = outcomes[methods[0]]
    print(f"\n{'edit kind':22s} {'n':>4s} " + " ".join(f"{m:>12s}" for m in methods))
    for kind in first.found:
        n = len(first.found[kind])
        print(f"{kind:22s} {n:4d} " + " ".join(f"{pct(outcomes[m].found[kind]):>12s}" for m in methods))
    total = sum(len(v) for v in first.found.values())
    print(
        f"{'recall, all edits':22s} {total:4d} "
        + " ".join(f"{pct([x for v in outcomes[m].found.values() for x in v]):>12s}" for m in methods)
    )
    print(f"\n{'false matches':22s} {'n':>4s} " + " ".join(f"{m:>12s}" for m in methods))
    for kind in first.false:
        n = len(first.false[kind])
        print(
            f"{kind:22s} {n:4d} "
            + " ".join(f"{sum(outcomes[m].false[kind]):>5d} {pct(outcomes[m].false[kind])}" for m in methods)
        )
    negatives = [k for k in first.false if k != "(wrong cluster)"]
    n = sum(len(first.false[k]) for k in negatives)
    cells = []
    for m in methods:
        flags = [x for k in negatives for x in outcomes[m].false[k]]
        cells.append(f"{sum(flags):>4d} {100 * sum(flags) / max(1, n):5.2f}%")
    print(f"{'false-match rate':22s} {n:4d} " + " ".join(f"{c:>12s}" for c in cells))
    print(
        f"{'ms per image (median)':27s} "
        + " ".join(f"{1000 * statistics.median(outcomes[m].seconds):12.1f}" for m in methods)
    )
    print(
        f"{'ms per image (mean)':27s} "
        + " ".join(f"{1000 * statistics.fmean(outcomes[m].seconds):12.1f}" for m in methods)
    )
    print("ours, matches decided by: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.stages.items())))


# --- hashing cost ---------------------------------------------------------------------------------------


def report_hash_cost(files: Sequence[Path], repeats: int) -> None:
    print(f"\nhashing multi-megapixel JPEGs ({len(files)} files, median of {repeats} rounds)")
    print(f"{'file':28s} {'pixels':>8s} {'naive phash ms':>15s} {'ours ms':>8s} {'speed-up':>9s}")
    ratios = []
    for path in files:
        data = path.read_bytes()
        naive, ours = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            imagehash.phash(Image.open(path))
            naive.append(time.perf_counter() - start)
            start = time.perf_counter()
            compute_hashes(decode_image(data, grey=True, draft=HASH_DRAFT))
            ours.append(time.perf_counter() - start)
        a, b = statistics.median(naive), statistics.median(ours)
        ratios.append(a / b)
        with Image.open(path) as image:
            pixels = image.width * image.height
        print(f"{path.name:28s} {pixels / 1e6:7.1f}M {1000 * a:15.1f} {1000 * b:8.1f} {a / b:8.1f}x")
    print(
        f"median speed-up {statistics.median(ratios):.1f}x "
        "(ours: decode + pHash, dHash and PDQ of the whole image and its trimmed regions)"
    )


# --- bank lookups at scale ------------------------------------------------------------------------------


def report_scale(sizes: Sequence[int], queries: int, real: Sequence[int]) -> None:
    print(
        f"\nexact lookups within distance {MATCH_THRESHOLD} (random 256-bit hashes + planted real ones; "
        f"{queries} queries after 50 warm-up ones, gc paused; brute force: numpy XOR + popcount)"
    )
    print(
        f"{'bank':>10s} {'build s':>8s} {'bytes/hash':>10s} {'p50 ms':>8s} {'p99 ms':>8s} "
        f"{'p99 cpu ms':>11s} {'brute p50 ms':>12s} {'speed-up':>9s} {'agree':>6s}"
    )
    rng = np.random.default_rng(5)
    for size in sizes:
        words = rng.integers(0, 2**63, size=(size, 4), dtype=np.uint64) * np.uint64(2) + rng.integers(
            0, 2, size=(size, 4), dtype=np.uint64
        )
        planted = to_words(real[: min(len(real), size)])
        words[: len(planted)] = planted
        start = time.perf_counter()
        index = PdqIndex(words)  # tables from 20k hashes on, a scan below
        build_s = time.perf_counter() - start
        pick = random.Random(size)
        probes = []
        for _ in range(queries):
            if pick.random() < 0.5:
                base = pick.choice(list(real))  # a real hash, planted in the bank
            else:
                row = words[pick.randrange(size)]  # a random stored hash
                base = sum(int(row[k]) << (64 * k) for k in range(4))
            for bit in pick.sample(range(256), pick.randrange(0, 40)):
                base ^= 1 << bit
            probes.append(base)
        for probe in probes[:50]:  # warm-up: a serving index has its pages in memory
            index.nearest(probe ^ 1, MATCH_THRESHOLD)
        gc.collect()
        gc.disable()  # a collection of the benchmark's own objects is not the index's latency
        times, cpu, brute, agree = [], [], [], 0
        for i, probe in enumerate(probes):
            start, start_cpu = time.perf_counter(), time.thread_time()
            found = index.nearest(probe, MATCH_THRESHOLD)
            times.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - start_cpu)
            if i < 30:
                start = time.perf_counter()
                d = distances(words, to_words([probe])[0])
                best = int(np.argmin(d))
                brute.append(time.perf_counter() - start)
                expected = (best, int(d[best])) if d[best] <= MATCH_THRESHOLD else None
                agree += expected == ((found.index, found.distance) if found else None)
        gc.enable()
        p50, p99 = np.percentile(times, 50) * 1000, np.percentile(times, 99) * 1000
        cpu99 = np.percentile(cpu, 99) * 1000
        b50 = statistics.median(brute) * 1000
        print(
            f"{size:>10,d} {build_s:8.1f} {index.memory_bytes / size:10.0f} {p50:8.3f} {p99:8.3f} "
            f"{cpu99:11.3f} {b50:12.2f} {b50 / p50:8.0f}x {agree:>3d}/30"
        )
        del index, words


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", default="eval", choices=("eval", "dev"))
    parser.add_argument("--seeds", type=int, default=3, help="edits of each kind per banked photo")
    parser.add_argument("--negative-seeds", type=int, default=5, help="edits of each kind per other photo")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--sizes", default="10000,1000000,10000000")
    parser.add_argument("--scale-queries", type=int, default=1000)
    args = parser.parse_args(argv)

    real: list[int] = []
    if not args.skip_recall:
        import tempfile

        data = build(args.set, args.seeds, args.negative_seeds)
        positives = sum(q.truth is not None for q in data.queries)
        print(
            f"{args.set} set: {len(data.bank)} banked photos, {positives} edited copies of them, "
            f"{len(data.queries) - positives} negatives, {len(EDITS)} edit kinds"
        )
        stats = OursStats()
        with tempfile.TemporaryDirectory() as folder:
            outcomes = {
                "pHash<=10": run(phash_method(data.bank), data.queries),
                "PDQ<=31": run(pdq_method(data.bank), data.queries),
                "ours": run(ours_method(data.bank, Path(folder), stats), data.queries),
            }
        report_recall(outcomes, stats)
        for q in data.queries[:: max(1, len(data.queries) // 2000)]:
            hashes = compute_hashes(decode_image(q.data, grey=True), regions=False)
            if hashes.pdq is not None:
                real.append(hashes.pdq)
    if not args.skip_cost:
        files = sorted(mate_photos().values(), key=lambda p: p.stat().st_size)
        big = [p for p in files if Image.open(p).width * Image.open(p).height >= 2_000_000]
        report_hash_cost(big[:: max(1, len(big) // 6)], repeats=5)
    if not args.skip_scale:
        rng = random.Random(3)
        real = real or [rng.getrandbits(256) for _ in range(1000)]
        report_scale([int(s) for s in args.sizes.split(",")], args.scale_queries, real)
    return 0


if __name__ == "__main__":
    sys.exit(main())
