"""A realistic stream for the throughput benchmark, and the start-up measurement of banks of many narratives.

    python -m benchmarks.realistic startup --narratives 1000      # first start vs cached start

The stream (`build_realistic`), seeded, every part generated here or from photos fetched once:

- pictures: real photographs (Debian's mate-backgrounds, lomiri and plasma wallpapers, scikit-image's
  photos: the loaders of benchmarks/matching.py), each new picture a distinct crop of one (half to nine
  tenths of it, sometimes mirrored, colour nudged), resized to 1080 px on the long side, JPEG quality 80:
  what a social platform serves;
- posts: 20% text-only, 40% reshares (of earlier posts, popular ones more often), 40% uploads, of which two
  in five a picture never seen before and the rest re-uploads of edited copies (tests/support/viral_edits:
  every kind, quality 70-90) of an earlier upload or, one time in four, of a banked picture;
- captions: every one unique, short and noisy (emoji, hashtags, mentions, links), in six languages, one in
  ten on-topic (a new wording of a banked narrative, sometimes framed in another language);
- bank: `bank_hashes` random PDQ hashes imported like a ThreatExchange hash list, a few hundred banked
  pictures (crops of the same photos, added with `monitor bank add`'s code), and `narratives` generated
  narratives (a person, an event and a place) with 3-5 example captions each.

Images are inline base64, so the same archive feeds the in-process pipeline and a Kafka worker.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageEnhance, ImageOps

from monitor.bank.store import EMBEDDINGS_DIR, add_images, add_narrative, import_pdq
from monitor.bank.threatexchange import PdqEntry
from tests.support.viral_edits import EDITS, apply_edit

SOCIAL_SIDE = 1080
JPEG_QUALITY = 80
MAX_IMAGE_BYTES = 600_000
"""An edited copy larger than this is saved again at quality 80: an event must fit a Kafka message (1 MB)."""

# --- narratives ---------------------------------------------------------------------------------------

PEOPLE = (
    "Emmanuel Macron", "Olaf Scholz", "Joe Biden", "Donald Trump", "Kamala Harris", "Rishi Sunak",
    "Keir Starmer", "Giorgia Meloni", "Pedro Sanchez", "Justin Trudeau", "Narendra Modi", "Lula da Silva",
    "Javier Milei", "Volodymyr Zelensky", "Vladimir Putin", "Xi Jinping", "Recep Erdogan",
    "Ursula von der Leyen",
    "Pope Francis", "King Charles", "Taylor Swift", "Elon Musk", "Bill Gates", "Mark Zuckerberg",
    "Greta Thunberg", "Cristiano Ronaldo", "Lionel Messi", "Kylian Mbappe", "Serena Williams", "Beyonce",
    "Oprah Winfrey", "Tom Hanks", "Angela Merkel", "Barack Obama", "Jacinda Ardern", "Boris Johnson",
    "Marine Le Pen", "Viktor Orban", "Andrzej Duda", "Claudia Sheinbaum", "Gustavo Petro", "Cyril Ramaphosa",
    "Jeff Bezos", "Warren Buffett", "Shakira", "Rihanna", "Leonardo DiCaprio", "Novak Djokovic",
    "Rafael Nadal", "LeBron James", "Anthony Fauci", "Prince Harry", "Meghan Markle", "Kim Jong Un",
    "Benjamin Netanyahu", "Mohammed bin Salman", "Yoon Suk Yeol", "Fumio Kishida", "Anthony Albanese",
    "Mette Frederiksen",
)  # fmt: skip
EVENTS = (
    ("arrested by police", "was arrested by officers", "taken into custody by police"),
    (
        "hospitalised after a collapse",
        "rushed to hospital after collapsing",
        "collapsed and was hospitalised",
    ),
    ("caught smuggling gold", "was caught with smuggled gold bars", "stopped at customs with gold bars"),
    ("seen wearing a prison uniform", "photographed in a prison jumpsuit", "pictured in an orange jumpsuit"),
    ("banned from entering the country", "refused entry at the border", "turned away at passport control"),
    ("fell asleep during the summit", "dozed off at the summit table", "caught sleeping at the summit"),
    ("buys a secret mansion", "bought a hidden luxury mansion", "secretly purchased a huge villa"),
    ("attacked by protesters", "was assaulted by an angry crowd", "mobbed and hit by protesters"),
    ("admits the election was rigged", "confessed the vote was rigged", "says the election was fixed"),
    ("funds a secret laboratory", "financed a hidden biolab", "paid for a secret lab"),
    ("resigns in disgrace", "quit in shame", "stepped down after a scandal"),
    ("caught on camera stealing", "filmed shoplifting", "recorded stealing from a shop"),
    ("dies in a car crash", "killed in a road accident", "died when the car crashed"),
    ("fled the country by night", "escaped abroad in the night", "left the country secretly at night"),
    ("eats insects on live television", "ate bugs live on TV", "tasted crickets on a TV show"),
    ("signs a deal with aliens", "made a pact with extraterrestrials", "agreed a treaty with aliens"),
    ("hides billions offshore", "stashed billions in tax havens", "keeps billions in secret accounts"),
    ("cancelled the national holiday", "abolished the public holiday", "scrapped the national day off"),
    ("bans cash payments", "outlawed paying with cash", "made cash payments illegal"),
    ("poisoned at a dinner", "was poisoned during a banquet", "fell ill from poison at a dinner"),
    ("replaced by a body double", "swapped for a lookalike", "is now played by a double"),
    ("sells the national forests", "sold the country's forests", "auctioned off the national parks"),
    ("caught cheating at cards", "was caught cheating in a casino", "thrown out of a casino for cheating"),
    ("endorses a miracle cure", "promotes a miracle remedy", "backs a fake cure"),
    ("wears a fake medal", "was caught with a fake medal", "pinned a counterfeit medal"),
)
PLACES = (
    "Paris", "Berlin", "Madrid", "Rome", "London", "New York", "Washington", "Toronto", "Mexico City",
    "Sao Paulo", "Buenos Aires", "Lagos", "Nairobi", "Cairo", "Istanbul", "Moscow", "Kyiv", "Warsaw",
    "Budapest", "Vienna", "Geneva", "Brussels", "Amsterdam", "Lisbon", "Athens", "Dubai", "Mumbai",
    "Delhi", "Tokyo", "Seoul", "Beijing", "Sydney", "Davos", "Monaco", "Las Vegas", "Miami",
)  # fmt: skip
FRAMES = (
    "{s} {e} in {p}",
    "BREAKING: {s} {e} in {p}",
    "Reports from {p}: {s} {e}",
    "{s} {e} in {p} and the media stay silent",
    "Unbelievable, {s} {e} yesterday in {p}",
    "Photo proves {s} {e} in {p}",
    "{p} today: {s} {e}",
)
FOREIGN_FRAMES = (
    "ÚLTIMA HORA: {s} {e} en {p}",
    "URGENT : {s} {e} à {p}",
    "EILMELDUNG: {s} {e} in {p}",
    "URGENTE: {s} {e} em {p}",
    "ULTIM'ORA: {s} {e} a {p}",
)


@dataclass(frozen=True)
class Narrative:
    narrative_id: str
    person: str
    event: tuple[str, str, str]
    place: str
    examples: tuple[str, ...]


def generate_narratives(count: int, seed: int) -> list[Narrative]:
    """`count` distinct (person, event, place) narratives, each with 3-5 example captions in English."""
    rng = random.Random(f"narratives:{seed}")
    combos = [(p, e, q) for p in PEOPLE for e in range(len(EVENTS)) for q in PLACES]
    if count > len(combos):
        raise ValueError(f"at most {len(combos)} narratives")
    out = []
    for k, (person, event, place) in enumerate(rng.sample(combos, count)):
        phrases = EVENTS[event]
        frames = rng.sample(FRAMES, rng.randint(3, 5))
        examples = tuple(f.format(s=person, e=phrases[i % 3], p=place) for i, f in enumerate(frames))
        out.append(Narrative(f"n{k:04d}", person, phrases, place, examples))
    return out


def write_narratives(bank: Path, narratives: Sequence[Narrative]) -> None:
    for narrative in narratives:
        add_narrative(bank, narrative.narrative_id, narrative.examples)


# --- captions -----------------------------------------------------------------------------------------

WORDS = {
    "en": "sunset coffee weekend friends beach dinner morning city rain concert puppy garden trip train "
    "music birthday market museum lake mountain bike office pizza football family street night",
    "es": "atardecer café finde amigos playa cena mañana ciudad lluvia concierto perrito jardín viaje "
    "tren música cumpleaños mercado museo lago montaña bici oficina fútbol familia calle noche",
    "fr": "coucher café weekend amis plage dîner matin ville pluie concert chiot jardin voyage train "
    "musique anniversaire marché musée lac montagne vélo bureau foot famille rue nuit",
    "de": "Sonnenuntergang Kaffee Wochenende Freunde Strand Abendessen Morgen Stadt Regen Konzert Welpe "
    "Garten Reise Zug Musik Geburtstag Markt Museum See Berg Fahrrad Büro Fußball Familie Straße Nacht",
    "pt": "pôr-do-sol café fimdesemana amigos praia jantar manhã cidade chuva show cachorrinho jardim "
    "viagem trem música aniversário feira museu lago montanha bicicleta escritório futebol família rua",
    "it": "tramonto caffè weekend amici spiaggia cena mattina città pioggia concerto cucciolo giardino "
    "viaggio treno musica compleanno mercato museo lago montagna bici ufficio calcio famiglia strada",
}
EVERYDAY = {
    "en": ("what a {a} today", "{a} with the {b} again", "finally some {a} and {b}",
           "can't stop thinking about {a}", "best {a} ever"),
    "es": ("qué {a} hoy", "{a} y {b} otra vez", "por fin {a} con {b}", "el mejor {a} del año",
           "{a} en la {b}"),
    "fr": ("quel {a} aujourd'hui", "{a} et {b} encore", "enfin un {a} avec {b}", "le meilleur {a}",
           "{a} sous la {b}"),
    "de": ("was für ein {a} heute", "{a} und {b} schon wieder", "endlich {a} mit {b}", "bester {a} ever",
           "{a} am {b}"),
    "pt": ("que {a} hoje", "{a} e {b} de novo", "finalmente {a} com {b}", "o melhor {a}", "{a} na {b}"),
    "it": ("che {a} oggi", "{a} e {b} di nuovo", "finalmente {a} con {b}", "il miglior {a}", "{a} in {b}"),
}  # fmt: skip
EMOJI = ("😂", "🔥", "❤️", "🙏", "😱", "👀", "✨", "😡", "🤔", "🎉")
LANGUAGES = tuple(WORDS)


class CaptionMaker:
    """Unique, short, noisy captions; `on_topic` of them a new wording of a banked narrative."""

    def __init__(self, narratives: Sequence[Narrative], seed: int, on_topic: float = 0.1) -> None:
        self.narratives = list(narratives)
        self.rng = random.Random(f"captions:{seed}")
        self.on_topic = on_topic
        self.seen: set[str] = set()
        self.topical = 0

    def _noise(self, text: str) -> str:
        rng = self.rng
        extras = []
        if rng.random() < 0.5:
            extras.append(rng.choice(EMOJI) * rng.randint(1, 3))
        if rng.random() < 0.4:
            extras.append("#" + rng.choice(WORDS[rng.choice(LANGUAGES)].split()).replace("-", ""))
        if rng.random() < 0.15:
            extras.append(f"@user{rng.randrange(100_000)}")
        if rng.random() < 0.1:
            extras.append(f"https://t.co/{rng.randrange(36**6):06x}")
        if rng.random() < 0.2:
            text = text.lower() if rng.random() < 0.5 else text.upper()
        return " ".join([text, *extras])

    def _everyday(self) -> str:
        rng = self.rng
        lang = rng.choice(LANGUAGES)
        words = WORDS[lang].split()
        text = rng.choice(EVERYDAY[lang]).format(a=rng.choice(words), b=rng.choice(words))
        return self._noise(text)

    def _topical(self) -> str:
        rng = self.rng
        narrative = rng.choice(self.narratives)
        frames = FOREIGN_FRAMES if rng.random() < 0.3 else FRAMES
        text = rng.choice(frames).format(s=narrative.person, e=rng.choice(narrative.event), p=narrative.place)
        return self._noise(text + rng.choice(("", "!!", "?!", " ...", " wow", " share before they delete")))

    def make(self) -> str:
        topical = bool(self.narratives) and self.rng.random() < self.on_topic
        self.topical += topical
        for _ in range(1000):
            text = self._topical() if topical else self._everyday()
            if text not in self.seen:
                self.seen.add(text)
                return text
            # Same words drawn twice: a number makes it unique, as real captions are.
            self.seen.add(text)
            text = f"{text} {self.rng.randrange(10, 10_000)}"
            if text not in self.seen:
                self.seen.add(text)
                return text
        raise RuntimeError("cannot make a unique caption")


# --- pictures -----------------------------------------------------------------------------------------


def source_photos() -> list[Image.Image]:
    """The real photographs the pictures are cut from, shrunk to 1600 px (fetched once, then cached)."""
    from benchmarks.matching import debian_negative_photos, mate_photos, shrink, skimage_photos

    paths = {**mate_photos(), **debian_negative_photos()}
    photos = [shrink(Image.open(path), 1600) for _, path in sorted(paths.items())]
    photos.extend(image for _, image in sorted(skimage_photos().items()))
    return photos


def social_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    image = image.convert("RGB")
    if max(image.size) != SOCIAL_SIDE:
        scale = SOCIAL_SIDE / max(image.size)
        size = (max(16, round(image.width * scale)), max(16, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def new_picture(photos: Sequence[Image.Image], rng: random.Random) -> Image.Image:
    """A picture nobody has seen: a crop of a real photo (half to nine tenths of each side), sometimes
    mirrored, its colour and brightness nudged, at the social size."""
    photo = rng.choice(photos)
    fx, fy = rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9)
    w, h = round(photo.width * fx), round(photo.height * fy)
    x, y = rng.randrange(photo.width - w + 1), rng.randrange(photo.height - h + 1)
    picture = photo.crop((x, y, x + w, y + h))
    if rng.random() < 0.5:
        picture = ImageOps.mirror(picture)
    picture = ImageEnhance.Color(picture).enhance(rng.uniform(0.7, 1.3))
    picture = ImageEnhance.Brightness(picture).enhance(rng.uniform(0.85, 1.15))
    return Image.open(io.BytesIO(social_jpeg(picture)))


def edited_copy(picture: Image.Image, rng: random.Random) -> bytes:
    data = apply_edit(rng.choice(sorted(EDITS)), picture, rng.randrange(1 << 30))
    if len(data) > MAX_IMAGE_BYTES:
        data = social_jpeg(Image.open(io.BytesIO(data)))
    return data


# --- the stream ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealisticStream:
    archive: Path
    bank: Path
    posts: int
    text_only: int
    reshares: int
    uploads: int
    new_pictures: int
    reuploads: int
    on_topic: int
    narratives: int
    bank_hashes: int
    bank_pictures: int
    archive_bytes: int
    build_seconds: float

    def describe(self) -> str:
        return (
            f"{self.posts} posts: {self.text_only} text-only, {self.reshares} reshares, {self.uploads} "
            f"uploads ({self.new_pictures} new pictures, {self.reuploads} edited re-uploads), "
            f"{self.on_topic} on-topic captions; bank: {self.bank_hashes} imported PDQ hashes + "
            f"{self.bank_pictures} pictures, {self.narratives} narratives; "
            f"archive {self.archive_bytes / 1e6:.0f} MB"
        )


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_bank(
    folder: Path,
    photos: Sequence[Image.Image],
    narratives: Sequence[Narrative],
    hashes: int,
    pictures: int,
    seed: int,
) -> list[Image.Image]:
    """The bank directory; returns the banked pictures (re-uploads of some of them go into the stream)."""
    write_narratives(folder, narratives)  # first: each add reads the bank, cheap while it is small
    rng = random.Random(f"bank:{seed}")
    staging = folder.parent / "bank-staging"
    staging.mkdir(parents=True, exist_ok=True)
    banked = []
    for group in range(0, pictures, 4):  # clusters of four pictures, each one `monitor bank add`
        files = []
        for i in range(group, min(pictures, group + 4)):
            picture = new_picture(photos, rng)
            files.append(staging / f"banked-{i:04d}.jpg")
            files[-1].write_bytes(social_jpeg(picture))
            banked.append(picture)
        add_images(folder, f"known-{group // 4:03d}", files, label="debunked photo")
    import_pdq(
        folder,
        [PdqEntry(rng.getrandbits(256), f"te-{i // 10:04d}", "imported", 100) for i in range(hashes)],
    )
    shutil.rmtree(staging)
    return banked


def build_realistic_cached(
    out_dir: Path,
    posts: int,
    seed: int,
    bank_hashes: int = 10_000,
    bank_pictures: int = 300,
    narratives: int = 200,
) -> RealisticStream:
    """`build_realistic`, or the stream an earlier run built in `out_dir` with the same parameters (and the
    embedding cache its bank has by now)."""
    manifest = out_dir / "manifest.json"
    wanted = {"posts": posts, "seed": seed, "hashes": bank_hashes, "pictures": bank_pictures, "n": narratives}
    try:
        saved = json.loads(manifest.read_text())
        if saved["parameters"] == wanted and Path(saved["stream"]["archive"]).is_file():
            stream = saved["stream"]
            return RealisticStream(
                **{**stream, "archive": Path(stream["archive"]), "bank": Path(stream["bank"])}
            )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    built = build_realistic(out_dir, posts, seed, bank_hashes, bank_pictures, narratives)
    stream = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(built).items()}
    manifest.write_text(json.dumps({"parameters": wanted, "stream": stream}), encoding="utf-8")
    return built


def build_realistic(
    out_dir: Path,
    posts: int,
    seed: int,
    bank_hashes: int = 10_000,
    bank_pictures: int = 300,
    narratives: int = 200,
) -> RealisticStream:
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    bank = out_dir / "bank"
    if bank.exists():
        shutil.rmtree(bank)
    photos = source_photos()
    stories = generate_narratives(narratives, seed)
    banked = build_bank(bank, photos, stories, bank_hashes, bank_pictures, seed)
    rng = random.Random(f"stream:{seed}")
    captions = CaptionMaker(stories, seed)
    base = 1_700_000_000.0
    times = sorted(base + rng.uniform(0, 2 * 3600) for _ in range(posts))
    uploaded: list[tuple[str, Image.Image]] = []  # (post id, picture) of every upload so far
    shareable: list[str] = []  # uploads and reshares, one entry per share (popular posts come back)
    counts = {"text": 0, "reshare": 0, "new": 0, "reupload": 0}
    archive = out_dir / "archive.jsonl"
    with archive.open("w", encoding="utf-8") as out:
        for i, at in enumerate(times):
            post_id = f"r{seed}-{i:06d}"
            caption = captions.make()
            event: dict[str, Any] = {
                "post_id": post_id,
                "platform": "x",
                "author_id": f"u-{rng.randrange(100_000)}",
                "created_at": _time(at),
                "text": caption,
                "lang": None,
            }
            roll = rng.random()
            if roll < 0.2:
                counts["text"] += 1
            elif roll < 0.6 and shareable:
                counts["reshare"] += 1
                event["reshare_of"] = rng.choice(shareable)
                shareable.append(event["reshare_of"])
            else:
                if rng.random() < 0.4 or not uploaded:
                    picture = new_picture(photos, rng)
                    data = social_jpeg(picture)
                    counts["new"] += 1
                else:
                    source = rng.choice(banked) if rng.random() < 0.25 else rng.choice(uploaded)[1]
                    data = edited_copy(source, rng)
                    picture = source
                    counts["reupload"] += 1
                uploaded.append((post_id, picture))
                shareable.append(post_id)
                event["images"] = [{"data": base64.b64encode(data).decode("ascii")}]
            out.write(json.dumps(event, ensure_ascii=False) + "\n")
    return RealisticStream(
        archive=archive,
        bank=bank,
        posts=posts,
        text_only=counts["text"],
        reshares=counts["reshare"],
        uploads=counts["new"] + counts["reupload"],
        new_pictures=counts["new"],
        reuploads=counts["reupload"],
        on_topic=captions.topical,
        narratives=len(stories),
        bank_hashes=bank_hashes,
        bank_pictures=bank_pictures,
        archive_bytes=archive.stat().st_size,
        build_seconds=time.perf_counter() - started,
    )


# --- start-up -----------------------------------------------------------------------------------------

PROBE = """
import json, sys, time
started = time.perf_counter()
from pathlib import Path
from monitor.bank.store import load_bank
from monitor.pipeline import Pipeline
from monitor.settings import load_settings
imported = time.perf_counter()
settings = load_settings({"bank": Path(sys.argv[1])}, environ={})
bank = load_bank(settings.bank)
loaded = time.perf_counter()
pipeline = Pipeline(settings, bank)
built = time.perf_counter()
built_cpu = time.process_time()
# The caption models load on their first use: a worker is ready once one caption has been matched.
matcher = pipeline.analysis.analyzer.narratives
if matcher is not None:
    matcher.match_many(["first caption after the start: is this photo real?"])
ready = time.perf_counter()
print(json.dumps({"imports": imported - started, "bank": loaded - imported, "pipeline": built - loaded,
                  "total": built - started, "cpu": built_cpu, "first_caption": ready - built,
                  "ready": ready - started, "ready_cpu": time.process_time(),
                  "narratives": len({n.narrative_id for n in bank.narratives})}))
"""


def startup_seconds(bank: Path) -> dict[str, float]:
    """A fresh process's time from its first import to a built `Pipeline` (`total`: imports, reading the
    bank, embedding or loading the bank's vectors) and on to its first caption matched (`ready`: the
    caption models load on first use, so this is when a worker can answer its first post; what a worker
    does at start, less joining Kafka)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(bank)], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"start-up probe failed: {result.stderr[-2000:]}")
    values: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return values


def first_and_cached_start(bank: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Start-up without the bank's embedding cache (it is removed first), then with the cache it wrote."""
    shutil.rmtree(bank / EMBEDDINGS_DIR, ignore_errors=True)
    first = startup_seconds(bank)
    cached = startup_seconds(bank)
    return first, cached


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realistic")
    commands = parser.add_subparsers(dest="command", required=True)
    startup = commands.add_parser("startup", help="first start vs cached start of a bank of N narratives")
    startup.add_argument("--narratives", type=int, default=1000)
    startup.add_argument("--seed", type=int, default=5)
    startup.add_argument("--bank", type=Path, help="keep the generated bank here (default: a temporary one)")
    startup.add_argument(
        "--cached-only", action="store_true", help="keep an existing cache: cached starts only"
    )
    startup.add_argument("--repeats", type=int, default=1, help="cached starts to measure")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="monitor-startup-") as tmp:
        bank = args.bank or Path(tmp) / "bank"
        if not (bank / "narratives.jsonl").exists():
            write_narratives(bank, generate_narratives(args.narratives, args.seed))
        load = os.getloadavg()
        print(f"bank {bank}: {args.narratives} narratives; load average {load[0]:.1f}", flush=True)
        if not args.cached_only:
            shutil.rmtree(bank / EMBEDDINGS_DIR, ignore_errors=True)
            first = startup_seconds(bank)
            print(
                f"first start (no cache): {json.dumps({k: round(v, 2) for k, v in first.items()})}",
                flush=True,
            )
        for _ in range(args.repeats):
            cached = startup_seconds(bank)
            print(f"cached start: {json.dumps({k: round(v, 2) for k, v in cached.items()})}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
