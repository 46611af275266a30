"""Image matching benchmark: recall on viral edits, false matches, hashing cost, bank lookups at scale.

    python -m benchmarks.matching                 # held-out photos (Debian's mate-backgrounds), all parts
    python -m benchmarks.matching --set dev       # the scikit-image photos the thresholds were chosen on
    python -m benchmarks.matching --skip-scale    # without the 10M-hash lookup part (needs ~2 GB, minutes)
    python -m benchmarks.matching --set dev --seeds 1 --negative-seeds 1 --flats 30 --skip-cost --skip-scale
                                                  # a few minutes: while iterating
    python -m benchmarks.matching --tag fresh --list
                                                  # renders, flat pictures, tiles and changes drawn from
                                                  # other seeds; every false match and miss listed

    python -m benchmarks.matching --set dev --tag tune --flats 150 --renders-only --methods ours --skip-cost \
        --skip-scale --list        # the smooth renders' copies and soft negatives only: the weak spot
    python -m benchmarks.matching --tag T --methods ours --kinds phone-screenshot,canvas ...
                                   # the photos' copies and other photos' changes of those kinds only
    python -m benchmarks.matching --tag T --methods ours --shard 0/2 --results r0.jsonl ...   # and 1/2
    cat r0.jsonl r1.jsonl > r.jsonl && python -m benchmarks.matching --tag T --methods ours --results \
        r.jsonl --done-only ...    # the report on both shards (or on a stopped run so far)

`--results` appends each query's verdict and times to a JSON-lines file as it is decided, and a run given
the file of a stopped one (same arguments, same code) decides only the rest; queries are drawn one at a
time, so a run of 12,000 holds one file at a time. `--shard K/N` splits the queries between processes
(they may share one results file: each line is one append). Negatives are decided in a fixed shuffle
after the copies, so a stopped run reports on every copy and a fair sample of the negatives.

`--tag` keeps the photos and draws everything seeded (the banked and look-alike renders, flat pictures,
tiles, the seed of every change) from other seeds: a set nobody has looked at, to report on after rules
were chosen on another tag. `--list` prints each false match with the stage that decided and its distance,
and each missed copy.

Photos: the `--set eval` bank is the nature photographs of Debian's `mate-backgrounds` package (fetched
with `apt-get download` and unpacked with `dpkg -x` into a cache folder); none of them was looked at while
the matcher was built (except that the local stage's move from a brute-force descriptor scan to its LSH
index, with unchanged settings, was checked on a sample of them). Half of them are banked, with smooth
renders (`tests.support.renders`: a soft figure on a gradient, pastel hills, a subject on a blurred
background, a soft sky; eval seeds, none looked at): `--renders` of each kind. Positives are changes of
banked pictures: every viral edit (`tests.support.viral_edits`) and every evasion (`tests.support.evasions`:
PNG/WebP/GIF with junk chunks, EXIF-rotated, alpha, first frame of an animation, inside a larger canvas,
colour profile, sepia, grey and low-contrast), several seeds each; rows marked "(render)" are the smooth
renders'. Negatives come from 57 photos never banked: the other half, scikit-image's bundled photos and
pictures, and the photographs of three more Debian packages fetched the same way (`lomiri-wallpapers-16.04`
and `-20.04`: Ubuntu's wallpaper-contest photos; KDE's `plasma-workspace-wallpapers`, its photos only):
each photo, its changes (every kind, several seeds), tiles cut from it; then flat pictures
(`renders.FLAT_KINDS`: solid colours, gradients, skies, pastel hills, soft figures, blurred backgrounds,
text screenshots, memes on plain backgrounds, logos; `--flats` of each) and look-alike renders (unbanked
renders of the banked kinds, every change of each): over 10,000 in all, enough for 0 false matches to
bound the rate under 0.03% (rule of three: 3/n at 95%). A query counts as found when it is matched to its
own picture's bank cluster, as a false match when a negative is matched to any cluster (a positive matched
to the wrong cluster is counted apart). The `--set dev` set (scikit-image photos, dev-seeded renders and
flats) is where thresholds were chosen.

Methods, side by side:
- `pHash<=10`: imagehash.phash of `Image.open(file)`, nearest banked pHash within 10 bits.
- `PDQ<=31`: the reference PDQ (`pdqhash`) with the eight dihedral hashes of the query and quality >= 50,
  nearest banked hash within 31 bits: how Meta's Hasher-Matcher-Actioner matches.
- `ours`: monitor.bank.matcher.BankMatcher on monitor.ingest.decode + monitor.imaging.hashes, as the
  pipeline runs it.
- `ours-before`: the same without the weak-evidence stages (`weak=False`: every picture of PDQ quality
  under 50 refused, as before issue 14), for the before/after cost and false matches.

Per image: wall-clock and CPU time (median / mean), for copies of banked photos and for never-seen
images apart.

Then: hashing cost of multi-megapixel JPEGs against naive `imagehash.phash(Image.open(f))`, and exact
lookups at distance 31 in banks of 10k, 1M and 10M hashes (multi-index vs numpy brute force): wall-clock
and CPU p50/p99 (the query thread's own time: on a shared 2-core machine the wall-clock tail is mostly
other processes' time slices), bytes per hash, the speed-up over brute force, and how many answers equal
brute force's. Figures are medians; ratios measured in the same run are what to compare.
"""

from __future__ import annotations

import argparse
import functools
import gc
import io
import json
import logging
import math
import random
import statistics
import subprocess
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
from PIL import Image
from skimage import data as skdata

from monitor.bank.matcher import BankMatcher
from monitor.bank.store import add_images, load_bank
from monitor.imaging.hash_index import PdqIndex, distances, to_words
from monitor.imaging.hashes import compute_hashes
from monitor.imaging.pdq import MATCH_THRESHOLD, MIN_QUALITY
from monitor.ingest.decode import HASH_DRAFT, decode_image
from tests.support.evasions import EVASIONS, apply_evasion
from tests.support.renders import FLAT_KINDS, SMOOTH_KINDS, flat_negative, smooth_picture
from tests.support.viral_edits import EDITS, apply_edit, jpeg

CACHE_ROOT = Path.home() / ".cache" / "misinfo-monitor"
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
SKIMAGE_MORE = (
    "brick",
    "grass",
    "gravel",
    "horse",
    "page",
    "text",
    "logo",
    "colorwheel",
    "stereo_motorcycle",
)
"""More of scikit-image's bundled pictures (textures, scans, a silhouette, a logo): negatives only."""
DEBIAN_NEGATIVES: dict[str, tuple[str, ...]] = {
    # Ubuntu's wallpaper-contest photographs (landscapes, animals, objects, textures).
    "lomiri-wallpapers-16.04": ("usr/share/backgrounds/*.jpg",),
    "lomiri-wallpapers-20.04": (
        "usr/share/backgrounds/Infinite-Sea_by_Aury88.jpg",
        "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
        "usr/share/backgrounds/Painting-Colors_by__herobrine7gamer.jpg",
    ),
    # KDE Plasma's photographs (its drawn wallpapers left out), one size of each.
    "plasma-workspace-wallpapers": tuple(
        f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg"
        for name in (
            "Autumn",
            "BytheWater",
            "ColdRipple",
            "ColorfulCups",
            "DarkestHour",
            "EveningGlow",
            "FallenLeaf",
            "Grey",
            "Kite",
            "OneStandsOut",
            "Path",
            "summer_1am",
        )
    ),
}
"""Photos of other Debian packages, never banked: more negatives (`--set eval`)."""
WORK_SIDE = 1280
"""Photos are shrunk to this longest side before editing: viral copies are rarely larger."""


# --- photos ---------------------------------------------------------------------------------------------


def debian_package(package: str) -> Path:
    """The unpacked files of a Debian package: `apt-get download` and `dpkg -x` once into the cache."""
    folder = CACHE_ROOT / package
    root = folder / "x"
    if not root.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        debs = list(folder.glob(f"{package}_*.deb"))
        if not debs:
            download = ["apt-get", "download", package]
            if subprocess.run(download, cwd=folder, capture_output=True).returncode != 0:
                subprocess.run(["apt-get", "update"], check=True, capture_output=True)
                subprocess.run(download, cwd=folder, check=True, capture_output=True)
            debs = list(folder.glob(f"{package}_*.deb"))
        partial = folder / "x.partial"
        subprocess.run(["rm", "-rf", str(partial)], check=True)
        subprocess.run(["dpkg", "-x", str(debs[0]), str(partial)], check=True)
        partial.rename(root)
        debs[0].unlink()  # only the unpacked files are read again
    return root


def mate_photos() -> dict[str, Path]:
    """The photographs of Debian's mate-backgrounds, downloaded and unpacked once into the cache."""
    root = debian_package("mate-backgrounds") / "usr" / "share" / "backgrounds" / "mate"
    files = sorted((root / "nature").glob("*.jpg")) + sorted((root / "abstract").glob("Elephants.jpg"))
    return {f"mate:{p.stem}": p for p in files}


def debian_negative_photos() -> dict[str, Path]:
    """The photographs of DEBIAN_NEGATIVES, by package and file name."""
    out: dict[str, Path] = {}
    for package, patterns in DEBIAN_NEGATIVES.items():
        root = debian_package(package)
        for pattern in patterns:
            found = sorted(root.glob(pattern))
            if not found:
                raise FileNotFoundError(f"{package}: no {pattern}")
            for path in found:
                stem = path.parent.parent.parent.name if path.parent.name == "images" else path.stem
                out[f"{package}:{stem}"] = path
    return out


def shrink(image: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    image = image.convert("RGB")
    if max(image.size) > side:
        scale = side / max(image.size)
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )
    return image


def _skimage(name: str) -> Image.Image:
    array = getattr(skdata, name)()
    if isinstance(array, tuple):  # a stereo pair: its left view
        array = array[0]
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    return shrink(Image.fromarray(array))


def skimage_photos(names: Sequence[str] = SKIMAGE_PHOTOS) -> dict[str, Image.Image]:
    return {f"skimage:{n}": _skimage(n) for n in names}


def tiles(image: Image.Image, rng: random.Random, count: int) -> list[Image.Image]:
    """Pieces cut from a photo (a quarter to a ninth of it): partial pictures that must match nothing."""
    out = []
    for _ in range(count):
        fraction = rng.uniform(0.33, 0.5)
        w, h = round(image.width * fraction), round(image.height * fraction)
        x, y = rng.randrange(image.width - w + 1), rng.randrange(image.height - h + 1)
        out.append(image.crop((x, y, x + w, y + h)))
    return out


@dataclass
class Query:
    name: str
    kind: str
    make: Callable[[], bytes]
    """Draws the query's file: queries are made one at a time as they are matched (12,000 of them held at
    once took gigabytes), and not at all when a resumed run has their results already."""
    truth: str | None
    """The bank cluster it is a copy of, or None for a negative."""

    @property
    def data(self) -> bytes:
        return self.make()


@dataclass
class Dataset:
    bank: dict[str, bytes]
    queries: list[Query]
    others: int
    """How many photos (never banked) the negatives come from."""


def build(
    dataset: str,
    seeds: int,
    negative_seeds: int,
    tile_count: int,
    flat_count: int,
    renders: int,
    tag: str = "",
    renders_only: bool = False,
) -> Dataset:
    """Banked photos and smooth renders; their edited and evaded copies; negatives (see the module doc).

    `tag` draws every seeded thing (renders, flat pictures, tiles, each change) from other seeds: the same
    photos, changed differently, with renders and flat pictures never drawn before. `renders_only` keeps
    the smooth renders' copies and the negatives that look like them (every kind of flat picture: logos and
    soft figures were what matched generic renders; look-alike renders): the weak spot, quick to iterate."""
    first = zlib.crc32(tag.encode()) % 1_000_000 if tag else 0
    # the first seed of the changes: 0 for the default set
    if dataset == "eval":
        mate = {n: shrink(Image.open(p)) for n, p in mate_photos().items()}
        names = sorted(mate)
        banked = {n: mate[n] for n in names[::2]}
        others: dict[str, Image.Image] = {
            **{n: mate[n] for n in names[1::2]},
            **skimage_photos(),
            **skimage_photos(SKIMAGE_MORE),
        }
        for name, path in debian_negative_photos().items():
            with Image.open(path) as image:
                others[name] = shrink(image)
    else:
        photos = skimage_photos()
        names = sorted(photos)
        banked = {n: photos[n] for n in names[::2]}
        others = {n: photos[n] for n in names[1::2]}
    smooth = {
        f"render:{kind}-{i}": smooth_picture(kind, f"{dataset}{tag}{i}")
        for kind in SMOOTH_KINDS
        for i in range(renders)
    }
    rng = random.Random(f"{dataset}-negatives{tag}")
    queries: list[Query] = []
    queried = {**smooth} if renders_only else {**banked, **smooth}
    for name, image in queried.items():
        suffix = " (render)" if name.startswith("render:") else ""
        for kind in CHANGES:
            for seed in range(first, first + seeds):
                queries.append(
                    Query(f"{name}/{kind}/{seed}", kind + suffix, _changed(kind, image, seed), name)
                )
    for name, image in {} if renders_only else others.items():
        queries.append(Query(f"{name}/original", "other photo", _jpeg(image, 90), None))
        for kind in CHANGES:
            for seed in range(first, first + negative_seeds):
                queries.append(
                    Query(f"{name}/{kind}/{seed}", "other photo, changed", _changed(kind, image, seed), None)
                )
        for i, tile in enumerate(tiles(image, rng, tile_count)):
            queries.append(Query(f"{name}/tile{i}", "tile of other photo", _jpeg(tile, 85), None))
    for kind in FLAT_KINDS:
        for i in range(flat_count):
            queries.append(
                Query(
                    f"flat:{kind}/{i}",
                    f"flat: {kind}",
                    _flat(kind, f"{dataset}{tag}{i}", rng.randrange(70, 93)),
                    None,
                )
            )
    for kind in SMOOTH_KINDS:
        for i in range(renders, renders + max(1, flat_count // 30)):
            seed_text = f"{dataset}{tag}{i}"
            for change_kind in CHANGES:
                queries.append(
                    Query(
                        f"render:{kind}-{i}/{change_kind}",
                        "look-alike render, changed",
                        _lookalike(kind, seed_text, change_kind, first + i),
                        None,
                    )
                )
    bank = {n: jpeg(i, 92) for n, i in {**banked, **smooth}.items()}
    return Dataset(bank, queries, len(others))


def _changed(kind: str, image: Image.Image, seed: int) -> Callable[[], bytes]:
    return lambda: change(kind, image, seed)


def _jpeg(image: Image.Image, quality: int) -> Callable[[], bytes]:
    return lambda: jpeg(image, quality)


def _flat(kind: str, seed: str, quality: int) -> Callable[[], bytes]:
    return lambda: jpeg(flat_negative(kind, seed), quality)


@functools.lru_cache(maxsize=4)
def _smooth(kind: str, seed: str) -> Image.Image:
    return smooth_picture(kind, seed)


def _lookalike(kind: str, seed: str, change_kind: str, change_seed: int) -> Callable[[], bytes]:
    return lambda: change(change_kind, _smooth(kind, seed), change_seed)


CHANGES = (*EDITS, *EVASIONS)
"""Every viral edit (picture changed, served as JPEG) and every evasion (file or colours changed)."""


def change(kind: str, image: Image.Image, seed: int) -> bytes:
    return apply_edit(kind, image, seed) if kind in EDITS else apply_evasion(kind, image, seed)


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
    last: str = ""
    """How the last query was decided (stage and distance), for the lists of false matches and misses."""


class _CheckLog(logging.Handler):
    """The pixel checks' scores for the last query (`evidence`'s debug lines), shown in the lists."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        source = logging.getLogger("monitor.imaging.evidence")
        source.setLevel(logging.DEBUG)
        source.addHandler(self)
        source.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def ours_method(
    bank: dict[str, bytes], folder: Path, stats: OursStats, weak: bool = True, region: bool = True
) -> Decide:
    if not (folder / "bank").is_dir():
        for name, data in bank.items():
            path = folder / (name.replace(":", "_") + ".jpg")
            path.write_bytes(data)
            add_images(folder / "bank", name.replace(":", "_"), [path])
    matcher = BankMatcher(load_bank(folder / "bank"), 10, weak=weak, region=region)
    weak_lines = [f"  {i.cluster}: {e.explain()}" for i, e in matcher.weak]
    if weak and weak_lines:
        print("banked pictures PDQ alone refuses:\n" + "\n".join(weak_lines))
    clusters = {name.replace(":", "_"): name for name in bank}
    checks = _CheckLog()

    def decide(data: bytes) -> str | None:
        checks.lines.clear()
        _, found = matcher.match_bytes(data)
        if found is None:
            stats.last = ""
            return None
        stats.last = f"{found.hash_kind} {found.distance}" + "".join(f"; {line}" for line in checks.lines)
        stats.stages[found.hash_kind] += 1
        return clusters[found.bank_cluster]

    return decide


# --- recall and false matches ---------------------------------------------------------------------------


@dataclass
class Outcome:
    found: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    false: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    seconds: list[float] = field(default_factory=list)
    hit_seconds: list[float] = field(default_factory=list)
    """Copies of banked photos."""
    unseen_seconds: list[float] = field(default_factory=list)
    """Negatives: images the bank has never seen."""
    cpu: list[float] = field(default_factory=list)
    hit_cpu: list[float] = field(default_factory=list)
    unseen_cpu: list[float] = field(default_factory=list)
    """The same in the process's CPU time (all its threads): what other processes' load leaves alone."""
    false_names: list[str] = field(default_factory=list)
    """Negatives matched (and copies matched to the wrong cluster), with the stage that decided."""
    missed: list[str] = field(default_factory=list)


def run(
    decide: Decide,
    queries: Sequence[Query],
    stats: OursStats | None = None,
    results: Path | None = None,
    method: str = "",
    done_only: bool = False,
) -> Outcome:
    """Every query decided, or, with `results` (a JSON-lines file), the queries it holds taken from it and
    the others decided and appended to it one by one: a run that is stopped goes on where it was.
    `done_only` reports on the queries `results` holds and decides no other."""
    done: dict[str, dict[str, object]] = {}
    if results is not None and results.exists():
        for line in results.read_text().splitlines():
            record = json.loads(line)
            if record.get("method") == method:
                done[str(record["name"])] = record
    sink = results.open("a") if results is not None else None
    out = Outcome()
    try:
        for q in queries:
            record = done.get(q.name)
            if record is None and done_only:
                continue
            if record is None:
                data = q.make()
                start, start_cpu = time.perf_counter(), time.process_time()
                got = decide(data)
                seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
                how = f" ({stats.last})" if stats is not None and got is not None else ""
                record = {"method": method, "name": q.name, "got": got, "how": how, "s": seconds, "cpu": cpu}
                if sink is not None:
                    sink.write(json.dumps(record) + "\n")
                    sink.flush()
            elif stats is not None and record["got"] is not None:
                stats.stages[str(record["how"]).strip(" ()").split(" ")[0]] += 1
            _count(out, q, record)
    finally:
        if sink is not None:
            sink.close()
    return out


def _count(out: Outcome, q: Query, record: dict[str, object]) -> None:
    got = record["got"]
    how = str(record["how"])
    seconds, cpu = float(record["s"]), float(record["cpu"])  # type: ignore[arg-type]
    out.seconds.append(seconds)
    out.cpu.append(cpu)
    (out.unseen_seconds if q.truth is None else out.hit_seconds).append(seconds)
    (out.unseen_cpu if q.truth is None else out.hit_cpu).append(cpu)
    if q.truth is None:
        out.false[q.kind].append(got is not None)
        if got is not None:
            out.false_names.append(f"{q.name} -> {got}{how}")
    else:
        out.found[q.kind].append(got == q.truth)
        out.false["(wrong cluster)"].append(got is not None and got != q.truth)
        if got is not None and got != q.truth:
            out.false_names.append(f"{q.name} -> {got}{how} (wrong cluster)")
        elif got is None:
            out.missed.append(q.name)


def pct(values: Sequence[bool]) -> str:
    return f"{100 * sum(values) / max(1, len(values)):5.1f}%"


def upper_bound(count: int, n: int, confidence: float = 0.95) -> float:
    """Upper end of the one-sided `confidence` interval of a rate seen `count` times in `n` trials:
    the rule of three (3 / n) when none was seen, the exact Clopper-Pearson bound otherwise."""
    if n == 0:
        return 1.0
    if count == 0:
        return 3 / n
    if count >= n:
        return 1.0

    def tail(p: float) -> float:  # P(X <= count) for X ~ Binomial(n, p), in logs: comb(n, k) overflows
        head = math.lgamma(n + 1)
        return sum(
            math.exp(
                head
                - math.lgamma(k + 1)
                - math.lgamma(n - k + 1)
                + k * math.log(p)
                + (n - k) * math.log1p(-p)
            )
            for k in range(count + 1)
        )

    lo, hi = count / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) > 1 - confidence else (lo, mid)
    return hi


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
    cells, rates, bounds, wrong = [], [], [], []
    for m in methods:
        count = sum(x for k in negatives for x in outcomes[m].false[k])
        cells.append(f"{count}/{n}")
        rates.append(f"{100 * count / max(1, n):.3f}%")
        bounds.append(f"{100 * upper_bound(count, n):.3f}%")
        wrong.append(
            f"{sum(outcomes[m].false['(wrong cluster)'])}/{len(outcomes[m].false['(wrong cluster)'])}"
        )
    print(f"\n{'false matches, other images':27s} " + " ".join(f"{c:>12s}" for c in cells))
    print(f"{'  rate':27s} " + " ".join(f"{r:>12s}" for r in rates))
    print(f"{'  95% upper bound':27s} " + " ".join(f"{b:>12s}" for b in bounds))
    print(f"{'copies, wrong cluster':27s} " + " ".join(f"{w:>12s}" for w in wrong))
    print("(95% upper bound: rule of three, 3/n, when there is none; one-sided Clopper-Pearson otherwise)")
    print(f"\n{'ms per image (median/mean)':27s} " + " ".join(f"{m:>12s}" for m in methods))
    for label, attr in (("all", ""), ("bank hits", "hit_"), ("never-seen", "unseen_")):
        for clock, suffix in (("wall", "seconds"), ("cpu", "cpu")):
            cells = []
            for m in methods:
                seconds = getattr(outcomes[m], attr + suffix)
                cells.append(
                    f"{1000 * statistics.median(seconds):5.1f} /{1000 * statistics.fmean(seconds):5.1f}"
                )
            print(f"{'  ' + label + ', ' + clock:27s} " + " ".join(f"{c:>12s}" for c in cells))
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


def brute_nearest(words: np.ndarray, value: int, block: int = 1 << 16) -> tuple[int, int]:
    """The closest row (lowest index on ties) and its distance, by a numpy scan in blocks of 64k rows
    (2x faster than one pass over ten million: the temporaries stay in cache)."""
    query = to_words([value])[0]
    best = (-1, 257)
    for start in range(0, len(words), block):
        d = distances(words[start : start + block], query)
        at = int(np.argmin(d))
        if d[at] < best[1]:
            best = (start + at, int(d[at]))
    return best


def report_scale(sizes: Sequence[int], queries: int, real: Sequence[int], checked: int = 100) -> None:
    print(
        f"\nexact lookups within distance {MATCH_THRESHOLD} (random 256-bit hashes + planted real ones; "
        f"{queries} queries after 50 warm-up ones, gc paused; cpu: the query thread's own time; brute "
        f"force: numpy XOR + popcount over the bank in 64k-row blocks, on {checked} of the queries, after "
        "the index's)"
    )
    print(
        f"{'bank':>10s} {'build s':>7s} {'B/hash':>6s} {'p50 ms':>7s} {'p99 ms':>7s} {'p50 cpu':>7s} "
        f"{'p99 cpu':>7s} {'brute p50':>9s} {'brute cpu':>9s} {'x wall':>7s} {'x cpu':>6s} {'exact':>7s}"
    )
    rng = np.random.default_rng(5)
    for size in sizes:
        words = rng.integers(0, 2**63, size=(size, 4), dtype=np.uint64) * np.uint64(2) + rng.integers(
            0, 2, size=(size, 4), dtype=np.uint64
        )
        planted = to_words(real[: min(len(real), size)])
        words[: len(planted)] = planted
        start = time.perf_counter()
        index = PdqIndex(words)  # tables from BRUTE_FORCE_BELOW (5k) hashes on, a scan below
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
        times, cpu, answers = [], [], []
        for probe in probes:
            start, start_cpu = time.perf_counter(), time.thread_time()
            found = index.nearest(probe, MATCH_THRESHOLD)
            times.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - start_cpu)
            answers.append((found.index, found.distance) if found else None)
        # Brute force after the index's queries: its scans would evict the tables from the caches.
        brute, brute_cpu, agree = [], [], 0
        for probe, answer in zip(probes[:checked], answers, strict=False):
            start, start_cpu = time.perf_counter(), time.thread_time()
            best = brute_nearest(words, probe)
            brute.append(time.perf_counter() - start)
            brute_cpu.append(time.thread_time() - start_cpu)
            agree += (best if best[1] <= MATCH_THRESHOLD else None) == answer
        gc.enable()
        p50, p99 = np.percentile(times, 50) * 1000, np.percentile(times, 99) * 1000
        c50, c99 = np.percentile(cpu, 50) * 1000, np.percentile(cpu, 99) * 1000
        b50, bc50 = statistics.median(brute) * 1000, statistics.median(brute_cpu) * 1000
        print(
            f"{size:>10,d} {build_s:7.1f} {index.memory_bytes / size:6.0f} {p50:7.3f} {p99:7.3f} {c50:7.3f} "
            f"{c99:7.3f} {b50:9.2f} {bc50:9.2f} {b50 / p50:6.0f}x {bc50 / c50:5.0f}x "
            f"{agree:>3d}/{len(brute)}"
        )
        del index, words


def _photo_change_kind(query: Query) -> str | None:
    """The kind of change of a photo's copy or of another photo's change (`name/kind/seed`); None for
    renders, flat pictures, tiles, originals and look-alikes."""
    parts = query.name.split("/")
    if len(parts) != 3 or query.name.startswith(("render:", "flat:")):
        return None
    return parts[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", default="eval", choices=("eval", "dev"))
    parser.add_argument("--seeds", type=int, default=3, help="edits of each kind per banked photo")
    parser.add_argument("--negative-seeds", type=int, default=4, help="edits of each kind per other photo")
    parser.add_argument("--tiles", type=int, default=6, help="tiles cut from each other photo")
    parser.add_argument("--flats", type=int, default=200, help="flat, low-detail pictures of each kind")
    parser.add_argument("--renders", type=int, default=2, help="smooth renders of each kind banked")
    parser.add_argument(
        "--methods",
        default="pHash<=10,PDQ<=31,ours-before,ours",
        help="which methods to run (comma-separated); ours-before: ours without the weak stages; "
        "ours-region: ours without the region searches for smooth pictures (on by default)",
    )
    parser.add_argument(
        "--tag",
        default="",
        help="draw renders, flat pictures, tiles and every change from other seeds (a fresh set to report "
        "on after the rules were chosen on the default seeds)",
    )
    parser.add_argument("--list", action="store_true", help="list false matches (with the stage) and misses")
    parser.add_argument(
        "--renders-only",
        action="store_true",
        help="only the smooth renders' copies and the negatives like them (flat pictures, look-alikes)",
    )
    parser.add_argument(
        "--done-only",
        action="store_true",
        help="with --results: report on the queries the file holds (a stopped run so far), decide no other",
    )
    parser.add_argument(
        "--shard",
        default="",
        help="K/N: only every N-th query from the K-th (0-based), for N processes; their --results files, "
        "concatenated and given to a run without --shard, report on the whole set",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="a JSON-lines file each query's result is appended to; a run given the file of a stopped one "
        "(same arguments, same code) takes the results there and decides only the rest",
    )
    parser.add_argument(
        "--kinds",
        default="",
        help="K1,K2: only the photos' copies and other photos' changes of these kinds of change (no renders, "
        "flat pictures, tiles or look-alikes): a rule that can only touch some kinds, checked on them alone",
    )
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--sizes", default="10000,1000000,10000000")
    parser.add_argument("--scale-queries", type=int, default=1000)
    args = parser.parse_args(argv)

    real: list[int] = []
    if not args.skip_recall:
        import tempfile

        data = build(
            args.set,
            args.seeds,
            args.negative_seeds,
            args.tiles,
            args.flats,
            args.renders,
            args.tag,
            args.renders_only,
        )
        # Positives first, then the negatives in a fixed shuffle: a run stopped part way has every copy and
        # a fair sample of every kind of negative, not the photos' changes alone.
        if args.kinds:
            kinds = set(args.kinds.split(","))
            data.queries = [q for q in data.queries if _photo_change_kind(q) in kinds]
        negatives = [q for q in data.queries if q.truth is None]
        random.Random(14).shuffle(negatives)
        data.queries = [q for q in data.queries if q.truth is not None] + negatives
        if args.shard:
            k, n = (int(x) for x in args.shard.split("/"))
            data.queries = data.queries[k::n]
        positives = sum(q.truth is not None for q in data.queries)
        print(
            f"{args.set} set: {len(data.bank)} banked pictures (photos and smooth renders), "
            f"{positives} changed copies, "
            f"{len(data.queries) - positives} negatives from {data.others} other photos and "
            f"flat and look-alike pictures, {len(CHANGES)} kinds of change"
        )
        stats, before, region_stats = OursStats(), OursStats(), OursStats()
        with tempfile.TemporaryDirectory() as folder:
            methods: dict[str, Callable[[], Decide]] = {
                "pHash<=10": lambda: phash_method(data.bank),
                "PDQ<=31": lambda: pdq_method(data.bank),
                "ours-before": lambda: ours_method(data.bank, Path(folder), before, weak=False),
                "ours": lambda: ours_method(data.bank, Path(folder), stats),
                "ours-region": lambda: ours_method(data.bank, Path(folder), region_stats, region=False),
            }
            chosen = args.methods.split(",")
            tracked = {"ours": stats, "ours-before": before, "ours-region": region_stats}
            outcomes = {
                m: run(methods[m](), data.queries, tracked.get(m), args.results, m, args.done_only)
                for m in methods
                if m in chosen
            }
        report_recall(outcomes, stats)
        if args.list:
            for m, outcome in outcomes.items():
                print(f"\n{m}: false matches ({len(outcome.false_names)})")
                print("\n".join(f"  {line}" for line in outcome.false_names))
                print(f"{m}: copies missed ({len(outcome.missed)})")
                print("\n".join(f"  {line}" for line in outcome.missed))
        for q in [] if args.skip_scale else data.queries[:: max(1, len(data.queries) // 2000)]:
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
