"""What reading provenance marks costs per image, against decoding and hashing the same image.

    python -m benchmarks.provenance                    # 10 scikit-image photos as JPEG and PNG, 7 repeats
    python -m benchmarks.provenance --repeats 11 --json-out provenance.json

The issue's requirement is "no measurable cost per image when an image has no metadata". The images are
real photographs bundled with scikit-image (`skimage.data`: astronaut, camera, chelsea, coffee, coins,
hubble_deep_field, immunohistochemistry, moon, retina, rocket), re-encoded with Pillow as JPEG (quality 90)
and PNG, which carry no metadata but Pillow's JFIF header. For each one, in the same run and interleaved:

- `read_markers`: `monitor.provenance.markers.read_markers(data)`, what the analysis stage calls on every new
  image, mean of `--inner` calls;
- `decode+hash` (the baseline): `monitor.ingest.decode.decode_image(data)` +
  `monitor.imaging.hashes.compute_hashes`, what the same stage must spend on that image anyway.

Each figure is the median over `--repeats` repeats (2 shared, noisy cores); the ratio is read_markers
over decode+hash of the same image. Rows marked `(marked)` time images that carry a mark (SD parameters
in a PNG, XMP DigitalSourceType and an EXIF UserComment in a JPEG, a C2PA manifest signed with a
certificate made on the spot) to show what metadata costs when it is there: the C2PA row includes the
native reader's validation of the manifest's signature and hashes.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from PIL import Image
from skimage import data as skdata

from monitor.imaging.hashes import compute_hashes
from monitor.ingest.decode import decode_image
from monitor.provenance.markers import read_markers
from tests.support.synthetic import (
    jpeg_with_user_comment,
    jpeg_with_xmp,
    make_signing_chain,
    png_with_parameters,
    sign_c2pa,
    xmp_packet,
)

PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
)


@dataclass
class Row:
    image: str
    fmt: str
    kilobytes: float
    pixels: str
    markers: list[str]
    read_markers_us: float
    decode_hash_ms: float
    ratio_percent: float


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def samples() -> list[tuple[str, str, bytes]]:
    """(name, format, bytes): each photo as JPEG and PNG without metadata, then the marked ones."""
    found: list[tuple[str, str, bytes]] = []
    for name in PHOTOS:
        image = Image.fromarray(getattr(skdata, name)())
        for fmt in ("JPEG", "PNG"):
            found.append((name, fmt.lower(), encode(image, fmt)))
    photo = Image.fromarray(skdata.astronaut())
    found += [
        ("astronaut (marked)", "png SD", png_with_parameters(photo)),
        ("astronaut (marked)", "jpeg XMP", jpeg_with_xmp(photo, xmp_packet())),
        ("astronaut (marked)", "jpeg EXIF", jpeg_with_user_comment(photo)),
        (
            "astronaut (marked)",
            "jpeg C2PA",
            sign_c2pa(encode(photo, "JPEG"), "image/jpeg", make_signing_chain()),
        ),
    ]
    return found


def per_call(function: Callable[[bytes], object], data: bytes, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function(data)
    return (time.perf_counter() - start) / calls


def decode_and_hash(data: bytes) -> object:
    return compute_hashes(decode_image(data))


def run(repeats: int, inner: int) -> list[Row]:
    images = samples()
    for _, _, data in images:  # warm-up: imports, Pillow plug-ins, the C2PA library
        read_markers(data)
        decode_and_hash(data)
    provenance: dict[int, list[float]] = {i: [] for i in range(len(images))}
    baseline: dict[int, list[float]] = {i: [] for i in range(len(images))}
    for _ in range(repeats):
        for i, (_, _, data) in enumerate(images):
            provenance[i].append(per_call(read_markers, data, inner))
            baseline[i].append(per_call(decode_and_hash, data, max(1, inner // 50)))
    rows = []
    for i, (name, fmt, data) in enumerate(images):
        width, height = Image.open(io.BytesIO(data)).size
        prov, base = statistics.median(provenance[i]), statistics.median(baseline[i])
        rows.append(
            Row(
                image=name,
                fmt=fmt,
                kilobytes=round(len(data) / 1024, 1),
                pixels=f"{width}x{height}",
                markers=list(read_markers(data)),
                read_markers_us=round(prov * 1e6, 1),
                decode_hash_ms=round(base * 1e3, 2),
                ratio_percent=round(100 * prov / base, 3),
            )
        )
    return rows


def print_table(rows: list[Row], repeats: int, inner: int) -> None:
    print(f"provenance cost per image, medians of {repeats} repeats ({inner} read_markers calls each)")
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu'}")
    print()
    columns = f"{'image':<22}{'format':<11}{'kB':>8}{'pixels':>11}"
    header = f"{columns}{'read_markers':>14}{'decode+hash':>13}{'ratio':>9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.image:<22}{row.fmt:<11}{row.kilobytes:>8.1f}{row.pixels:>11}"
            f"{row.read_markers_us:>11.1f} us{row.decode_hash_ms:>10.2f} ms{row.ratio_percent:>8.3f}%"
        )
    plain = [row for row in rows if "(marked)" not in row.image]
    print()
    for fmt in ("jpeg", "png"):
        chosen = [row for row in plain if row.fmt == fmt]
        cost = statistics.median(r.read_markers_us for r in chosen)
        print(
            f"no metadata, {fmt}: read_markers median {cost:.1f} us"
            f" = {statistics.median(r.ratio_percent for r in chosen):.3f}% of decode+hash"
            f" (max {max(r.ratio_percent for r in chosen):.3f}%)"
        )
    for row in rows:
        if "(marked)" in row.image:
            print(
                f"marked {row.fmt}: {row.read_markers_us:.1f} us ({row.ratio_percent:.2f}%) -> {row.markers}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--inner", type=int, default=200, help="read_markers calls per measurement")
    parser.add_argument("--json-out", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    rows = run(args.repeats, args.inner)
    print_table(rows, args.repeats, args.inner)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump([asdict(row) for row in rows], handle, indent=2)


if __name__ == "__main__":
    main()
