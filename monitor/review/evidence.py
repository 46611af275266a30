"""What a decision acts on: an alert's pictures, their hashes and the captions of its sample posts.

An alert names its cluster and its sample posts, not their pictures. The pictures come from the archive
the alerts were replayed from (`replay --embedded --alerts-out FILE` notes it beside the alerts, in
`FILE.source.json`, since the alert record is fixed by the contract): the sample posts' images, following
reshares to the post that carries them, those given by `path` or `data` (a `url` image is not fetched
here). Whatever else is at hand, the cluster's founding pHash is: the cluster id is made of it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from monitor.imaging.fingerprint import fingerprint
from monitor.ingest.archive import read_archive
from monitor.ingest.decode import DecodeError, DecodeLimits
from monitor.ingest.events import EventLimits
from monitor.ingest.loading import ImageLoader
from monitor.models import Alert, ImageHashes, Post
from monitor.review.decisions import phash_of

SOURCE_SUFFIX = ".source.json"
MAX_RESHARE_HOPS = 20


@dataclass(frozen=True, slots=True)
class Picture:
    """One picture of the cluster, as the archive holds it."""

    name: str
    suffix: str
    data: bytes
    hashes: ImageHashes


@dataclass(frozen=True)
class ClusterEvidence:
    cluster_id: str
    pictures: tuple[Picture, ...] = ()
    captions: tuple[str, ...] = ()
    """The sample posts' captions (their own, or the reshared post's), each once, in sample order."""

    @property
    def hashes(self) -> tuple[ImageHashes, ...]:
        """The pictures' hashes, and the founding pHash (always: it is the cluster's own id)."""
        found = [p.hashes for p in self.pictures]
        founder = phash_of(self.cluster_id)
        if founder is not None and all(h.phash != founder for h in found):
            found.append(ImageHashes(founder))
        return tuple(found)


def source_path(alerts_file: Path) -> Path:
    return alerts_file.with_name(alerts_file.name + SOURCE_SUFFIX)


def write_source(alerts_file: Path, archive: Path) -> None:
    """Note, beside an alerts file, the archive its alerts came from."""
    source_path(alerts_file).write_text(json.dumps({"archive": str(archive.resolve())}) + "\n")


def archive_of(alerts_file: Path) -> Path | None:
    """The archive noted beside an alerts file, or None (an alerts file from elsewhere)."""
    try:
        noted = json.loads(source_path(alerts_file).read_text())
    except (OSError, ValueError):
        return None
    archive = Path(str(noted.get("archive") or "")) if isinstance(noted, dict) else None
    return archive if archive is not None and archive.is_file() else None


def _carrier(posts: dict[str, Post], post: Post) -> Post:
    """The post whose images a post shows: itself, or the one it reshares (transitively)."""
    for _ in range(MAX_RESHARE_HOPS):
        if post.reshare_of is None or post.reshare_of not in posts:
            return post
        post = posts[post.reshare_of]
    return post


def gather(
    alert: Alert,
    archive: Path | None,
    *,
    cluster_distance: int = 10,
    event_limits: EventLimits | None = None,
    decode_limits: DecodeLimits | None = None,
) -> ClusterEvidence:
    """The pictures and captions of an alert's sample posts, read from the archive (None: hashes only)."""
    if archive is None:
        return ClusterEvidence(alert.cluster_id)
    posts = {entry.post.post_id: entry.post for entry in read_archive(archive, event_limits).entries}
    samples = [posts[p] for p in alert.sample_posts if p in posts]
    carriers = list({c.post_id: c for c in (_carrier(posts, p) for p in samples)}.values())
    captions: list[str] = []
    for post in samples:
        for text in (post.text, _carrier(posts, post).text):
            if text.strip() and text not in captions:
                captions.append(text)
    loader = ImageLoader(None, archive.parent)
    loaded = asyncio.run(loader.load_many(carriers))
    founder = phash_of(alert.cluster_id)
    pictures: dict[bytes, Picture] = {}
    for post, images in zip(carriers, loaded, strict=True):
        for number, (ref, image) in enumerate(zip(post.images, images, strict=False)):
            if image.data is None:
                continue
            try:
                hashes = fingerprint(image.data, decode_limits).hashes
            except DecodeError:
                continue
            near = founder is not None and (hashes.phash ^ founder).bit_count() <= cluster_distance
            if near or len(post.images) == 1:  # a one-image post counted for the cluster shows its picture
                suffix = Path(ref.value).suffix if ref.source == "path" else ""
                pictures.setdefault(
                    image.data, Picture(f"{post.post_id}#{number}", suffix, image.data, hashes)
                )
    return ClusterEvidence(alert.cluster_id, tuple(pictures.values()), tuple(captions))
