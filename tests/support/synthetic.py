"""Deterministic synthetic streams: drawn pictures, re-uploads, reshares, a bank, and an archive.

Used to build the bundled demo sample, the end-to-end tests and the throughput benchmark. Every scenario
says which clusters it built to go viral and be suspected, so a test can check that alerts name exactly
those. Pictures are drawn with Pillow from a seed (no data set needed); re-uploads are mild edits
(resize, crop, re-encode, brightness) that a perceptual hash survives.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageDraw, ImageEnhance, PngImagePlugin

from monitor.bank.store import add_images, add_narrative
from monitor.imaging.hashes import compute_hashes
from monitor.models import format_time

Suspicion = Literal["bank", "narrative", "provenance", "none"]


def hamming(a: int, b: int) -> int:
    """Bits that differ between two hashes."""
    return (a ^ b).bit_count()


SD_PARAMETERS = (
    "a photo of a politician among rubbish bags in Paris, photorealistic\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 768x512, Model hash: 6ce0161689"
)

NARRATIVES: dict[str, tuple[list[str], list[str]]] = {
    # id: (bank examples, captions used in posts: paraphrases of the examples)
    "trump-arrest": (
        ["Donald Trump arrested by police in Manhattan", "Trump taken into custody in New York today"],
        [
            "BREAKING: police arrest Donald Trump in New York",
            "Trump has been arrested in Manhattan this morning",
        ],
    ),
    "pope-puffer": (
        ["Pope Francis wearing a white puffer coat", "The pope in a stylish Balenciaga puffer jacket"],
        ["pope francis spotted in a huge white puffer jacket", "the Pope's new puffer coat is fire"],
    ),
}

NOISE_CAPTIONS = [
    "Lovely sunset over the harbour tonight",
    "My cat refuses to leave the keyboard",
    "Coffee first, then emails",
    "Match day! Come on you reds",
    "New recipe: lemon and thyme roast chicken",
    "Rain again in Manchester",
    "Finished my first marathon today",
    "Look at this view from the train",
    "Garden tomatoes are finally ripe",
    "Concert was amazing last night",
    "Monday motivation: just keep going",
    "Our puppy turned one today",
]


def draw_picture(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A distinct, detailed picture for a seed: a gradient background with random shapes."""
    rng = random.Random(seed)
    width, height = size
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        mix = y / max(1, height - 1)
        draw.line(
            [(0, y), (width, y)], fill=tuple(int(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True))
        )
    for _ in range(14):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(20, width // 2), y0 + rng.randrange(20, height // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.randrange(3)
        if shape == 0:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif shape == 1:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.polygon(
                [(x0, y0), (x1, y0 + rng.randrange(-40, 40)), (x0 + rng.randrange(-40, 40), y1)], fill=colour
            )
    return image


def reupload(image: Image.Image, seed: int) -> bytes:
    """A re-upload of a picture: slightly cropped, resized, brightened or darkened, re-encoded."""
    rng = random.Random(seed)
    width, height = image.size
    crop = rng.uniform(0.0, 0.03)
    box = (int(width * crop), int(height * crop), width - int(width * crop), height - int(height * crop))
    edited = image.crop(box)
    scale = rng.uniform(0.6, 1.2)
    edited = edited.resize((max(32, int(edited.width * scale)), max(32, int(edited.height * scale))))
    edited = ImageEnhance.Brightness(edited).enhance(rng.uniform(0.9, 1.1))
    return jpeg_bytes(edited, quality=rng.randrange(55, 92))


def jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def post_event(post_id: str, created_at: float, text: str, **fields: Any) -> dict[str, Any]:
    """A post event in the contract's shape, with `fields` (images, reshare_of) added."""
    return {
        "post_id": post_id,
        "platform": "x",
        "author_id": f"u-{post_id}",
        "created_at": format_time(created_at),
        "text": text,
        **fields,
    }


def reshare_event(post_id: str, created_at: float, parent: str, text: str = "") -> dict[str, Any]:
    """A post event that reshares `parent` and carries no picture of its own."""
    return post_event(post_id, created_at, text, reshare_of=parent)


def inline_event(post_id: str, created_at: float, data: bytes, text: str = "look at this") -> dict[str, Any]:
    """A post event (the contract's shape) carrying one picture inline as base64, as a worker reads it."""
    return post_event(post_id, created_at, text, images=[{"data": base64.b64encode(data).decode("ascii")}])


def png_with_parameters(image: Image.Image, parameters: str = SD_PARAMETERS) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@dataclass(frozen=True)
class ClusterSpec:
    """One visual cluster of a scenario: how many copies and reshares, over how long, and why suspected."""

    name: str
    uploads: int
    reshares: int
    spread_seconds: int
    suspicion: Suspicion
    narrative: str = "trump-arrest"
    start_offset: int = 0


@dataclass
class Scenario:
    archive: Path
    bank: Path
    viral_suspected: list[str] = field(default_factory=list)
    """Names of the clusters built to raise an alert (level 1) under the scenario's settings."""
    first_posts: dict[str, str] = field(default_factory=dict)
    """Name of each cluster -> the post_id of its first upload, which an alert's sample_posts must show."""
    posts: int = 0
    malformed: int = 0


DEFAULT_SPECS = (
    ClusterSpec("banked-viral", uploads=6, reshares=24, spread_seconds=900, suspicion="bank"),
    ClusterSpec("narrative-viral", uploads=5, reshares=22, spread_seconds=1200, suspicion="narrative"),
    ClusterSpec(
        "provenance-viral",
        uploads=4,
        reshares=26,
        spread_seconds=600,
        suspicion="provenance",
        start_offset=1800,
    ),
    ClusterSpec("unsuspected-viral", uploads=6, reshares=40, spread_seconds=900, suspicion="none"),
    ClusterSpec("banked-slow", uploads=5, reshares=20, spread_seconds=6 * 3600, suspicion="bank"),
)
"""With threshold 20 and a one-hour window, the first three alert; the last two never do."""


def _distinct_pictures(count: int, seed: int, min_distance: int = 24) -> list[Image.Image]:
    pictures: list[Image.Image] = []
    hashes: list[int] = []
    candidate = seed
    while len(pictures) < count:
        picture = draw_picture(candidate)
        candidate += 1
        phash = compute_hashes(picture).phash
        if all(hamming(phash, other) >= min_distance for other in hashes):
            pictures.append(picture)
            hashes.append(phash)
    return pictures


def build_scenario(
    out_dir: Path,
    specs: Sequence[ClusterSpec] = DEFAULT_SPECS,
    *,
    noise_posts: int = 40,
    malformed: int = 3,
    seed: int = 7,
    start: datetime = datetime(2023, 3, 26, 16, 0, tzinfo=UTC),
    inline_images: bool = False,
    shuffle: bool = True,
    broken_images: bool = True,
) -> Scenario:
    """Write `archive.jsonl`, its `images/` and a `bank/` into out_dir; return what should alert."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_dir = out_dir / "images"
    image_dir.mkdir(exist_ok=True)
    bank_dir = out_dir / "bank"
    pictures = _distinct_pictures(len(specs) + noise_posts, seed * 1000)
    base = start.timestamp()
    events: list[dict[str, Any]] = []
    scenario = Scenario(archive=out_dir / "archive.jsonl", bank=bank_dir)
    counter = 0

    def image_ref(name: str, data: bytes) -> dict[str, str]:
        if inline_images:
            return {"data": base64.b64encode(data).decode("ascii")}
        (image_dir / name).write_bytes(data)
        return {"path": f"images/{name}"}

    def new_id() -> str:
        nonlocal counter
        counter += 1
        return f"p-{counter:06d}"

    for number, (spec, picture) in enumerate(zip(specs, pictures, strict=False)):
        if spec.suspicion == "bank":
            original = out_dir / f"bank-source-{spec.name}.jpg"
            original.write_bytes(jpeg_bytes(picture, 95))
            add_images(bank_dir, spec.name, [original], label=f"known fake: {spec.name}")
            original.unlink()
        upload_ids: list[str] = []
        times = sorted(
            base + spec.start_offset + rng.uniform(0, spec.spread_seconds)
            for _ in range(spec.uploads + spec.reshares)
        )
        upload_times, reshare_times = times[: spec.uploads], times[spec.uploads :]
        for i, at in enumerate(upload_times):
            post_id = new_id()
            if i == 0:
                scenario.first_posts[spec.name] = post_id
                data = (
                    png_with_parameters(picture)
                    if spec.suspicion == "provenance"
                    else jpeg_bytes(picture, 90)
                )
                suffix = "png" if spec.suspicion == "provenance" else "jpg"
            else:
                data, suffix = reupload(picture, seed * 7919 + number * 101 + i), "jpg"
            caption = rng.choice(NOISE_CAPTIONS)
            if spec.suspicion == "narrative" and i == 0:
                caption = rng.choice(NARRATIVES[spec.narrative][1])
            upload_ids.append(post_id)
            events.append(
                {
                    "post_id": post_id,
                    "platform": "x",
                    "author_id": f"u-{rng.randrange(10_000)}",
                    "created_at": format_time(at),
                    "text": caption,
                    "lang": "en",
                    "images": [image_ref(f"{spec.name}-{i}.{suffix}", data)],
                    "engagement": {"reposts": rng.randrange(100), "likes": rng.randrange(1000)},
                }
            )
        parents = list(upload_ids)
        for at in reshare_times:
            post_id = new_id()
            events.append(
                {
                    "post_id": post_id,
                    "platform": "x",
                    "author_id": f"u-{rng.randrange(10_000)}",
                    "created_at": format_time(at),
                    "text": "",
                    "reshare_of": rng.choice(parents),
                }
            )
            parents.append(post_id)  # reshares of reshares too
        if spec.suspicion != "none" and spec.spread_seconds <= 3600 and spec.uploads + spec.reshares >= 20:
            scenario.viral_suspected.append(spec.name)
    for i, picture in enumerate(pictures[len(specs) :]):
        at = base + rng.uniform(0, 4 * 3600)
        events.append(
            {
                "post_id": new_id(),
                "platform": "x",
                "author_id": f"u-{rng.randrange(10_000)}",
                "created_at": format_time(at),
                "text": rng.choice(NOISE_CAPTIONS),
                "images": [image_ref(f"noise-{i}.jpg", jpeg_bytes(picture, 80))],
            }
        )
    if broken_images:
        # Bad images leave the rest of their post in play: a garbage file beside a good picture, bad base64.
        events.append(
            {
                "post_id": new_id(),
                "author_id": "u-broken",
                "created_at": format_time(base + 60),
                "text": "two pictures, one of them broken",
                "images": [
                    image_ref("broken.jpg", b"\xff\xd8\xff\xe0 truncated"),
                    image_ref("fine.jpg", jpeg_bytes(pictures[-1])),
                ],
            }
        )
        events.append(
            {
                "post_id": new_id(),
                "author_id": "u-broken",
                "created_at": format_time(base + 61),
                "images": [{"data": "this is not base64!"}],
            }
        )
    for narrative_id, (examples, _) in NARRATIVES.items():
        add_narrative(bank_dir, narrative_id, examples)
    bank_dir.mkdir(parents=True, exist_ok=True)
    if shuffle:
        rng.shuffle(events)
    events.append(dict(events[0]))  # a redelivered event: counted once
    lines = [json.dumps(event) for event in events]
    broken = [
        '{"post_id": "p-broken-1", "author_id": "u-1"',
        '{"author_id": "u-2", "created_at": "2023-03-26T16:00:00Z"}',
        '{"post_id": "p-bad-time", "author_id": "u-3", "created_at": "yesterday"}',
    ]
    for i in range(malformed):
        lines.insert(rng.randrange(len(lines)), broken[i % len(broken)])
    scenario.archive.write_text("\n".join(lines) + "\n", encoding="utf-8")
    scenario.posts = len(events)
    scenario.malformed = malformed
    return scenario


SAMPLE_SETTINGS = {"threshold": 20, "window_seconds": 3600}


def write_sample(out_dir: Path) -> Scenario:
    """The bundled demo sample: `python -m tests.support.synthetic monitor/sample` regenerates it
    identically."""
    import shutil

    for name in ("archive.jsonl", "images", "bank", "manifest.json"):
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    scenario = build_scenario(out_dir)
    manifest = {
        **SAMPLE_SETTINGS,
        "viral_suspected": scenario.viral_suspected,
        "posts": scenario.posts,
        "malformed": scenario.malformed,
        "generated_by": "python -m tests.support.synthetic monitor/sample",
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return scenario


# --- provenance marks as generators write them (tests and benchmarks) ------------------------------------

DIGITAL_SOURCE_TYPE_URI = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def xmp_packet(source_type: str = "trainedAlgorithmicMedia", creator_tool: str = "") -> bytes:
    """XMP with an IPTC DigitalSourceType (and optionally xmp:CreatorTool), as generators write it."""
    tool = f' xmp:CreatorTool="{creator_tool}"' if creator_tool else ""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        f' xmlns:xmp="http://ns.adobe.com/xap/1.0/"{tool}'
        f' Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE_URI}{source_type}"/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def jpeg_with_xmp(image: Image.Image, xmp: bytes, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, xmp=xmp)
    return buffer.getvalue()


def jpeg_with_user_comment(image: Image.Image, text: str = SD_PARAMETERS, quality: int = 90) -> bytes:
    """A JPEG with `text` in EXIF UserComment the way Stable Diffusion WebUI saves its parameters
    (piexif's UNICODE comment: UTF-16 big-endian)."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


@dataclass(frozen=True)
class SigningChain:
    """A C2PA claim signer: its certificate chain (signer first), its private key, the CA's certificate."""

    chain_pem: bytes
    key_pem: bytes
    ca_pem: bytes


def make_signing_chain(name: str = "Test Generator") -> SigningChain:
    """An ES256 CA and a claim-signing certificate it issued, made on the spot: for tests and benchmarks."""
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def subject(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            ]
        )

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(subject(f"{name} CA"))
        .issuer_name(subject(f"{name} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    signer = (
        x509.CertificateBuilder()
        .subject_name(subject(f"{name} signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return SigningChain(
        chain_pem=signer.public_bytes(pem) + ca.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ca_pem=ca.public_bytes(pem),
    )


def sign_c2pa(
    data: bytes,
    mime: str,
    chain: SigningChain,
    source_type: str | None = "trainedAlgorithmicMedia",
    *,
    action: str = "c2pa.created",
    parent: bytes | None = None,
) -> bytes:
    """`data` with an embedded C2PA manifest signed by `chain` (c2pa-python's Builder): one action, with
    `source_type` as its digitalSourceType; `parent`, a file of the same type, becomes its parent ingredient
    (with that file's own manifest, for an edit of a signed image)."""
    import importlib

    c2pa: Any = importlib.import_module("c2pa")
    step: dict[str, Any] = {"action": action}
    if source_type is not None:
        step["digitalSourceType"] = DIGITAL_SOURCE_TYPE_URI + source_type
    steps = [step]
    if parent is not None:  # an edit opens its parent first
        steps.insert(0, {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}})
    manifest = {
        "claim_generator_info": [{"name": "monitor tests", "version": "1"}],
        "assertions": [{"label": "c2pa.actions", "data": {"actions": steps}}],
    }
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain.chain_pem, chain.key_pem, None)
    signed = io.BytesIO()
    builder = c2pa.Builder(json.dumps(manifest), context=context)
    with c2pa.Signer.from_info(info) as signer, builder:
        if parent is not None:
            ingredient = {"title": "parent", "relationship": "parentOf", "label": "parent"}
            builder.add_ingredient(ingredient, mime, io.BytesIO(parent))
        builder.sign(signer, mime, io.BytesIO(data), signed)
    return signed.getvalue()


def distinct_pictures(count: int, seed: int) -> list[Image.Image]:
    """`count` drawn pictures no two of which a perceptual hash confuses (the scenario builder's own)."""
    return _distinct_pictures(count, seed)


if __name__ == "__main__":
    import argparse

    # argparse, so `--help` or a mistyped option is answered, never taken for a folder to write into.
    cli = argparse.ArgumentParser(
        prog="python -m tests.support.synthetic",
        description="Write the bundled demo sample (archive.jsonl, images/, bank/, manifest.json) into a "
        "folder, replacing those four entries there: the same files on every run.",
    )
    cli.add_argument(
        "folder", nargs="?", type=Path, default=Path("monitor/sample"), help="default monitor/sample"
    )
    built = write_sample(cli.parse_args().folder)
    viral = ", ".join(built.viral_suspected)
    print(f"wrote {built.posts} posts to {built.archive}; viral and suspected: {viral}")
