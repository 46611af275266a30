"""The local-feature stage alone on the realistic stream: CPU per call of ORB, the LSH screen, the search.

    python -m benchmarks.local_stage --work-dir /tmp/bench        # reuses the stream throughput built there
    python -m benchmarks.local_stage --posts 400 --passes 3

The realistic stream of `benchmarks/throughput.py` (`benchmarks/realistic.py`: 300 banked crops of real
photographs, 250,000 banked descriptors with their mirrors) is built or reused, its bank's pictures are
put in a `LocalIndex` as the bank matcher puts them, and every uploaded picture the global hashes do not
match is looked at as the analyser does (the larger decode, the views inside borders). For each view:

- `orb`: `features` (scale to 512 px, ORB detection);
- `screen`: the LSH screen, FLANN's `cv2.flann.Index` (what the stage used before `lsh_screen.py`) and
  `LshScreen` (what it uses), on the same query: their neighbours must be identical, and are counted;
- `match`: the whole search (screen, exact pairing of the shortlist, affine fit), with either screen: the
  verdicts (banked picture and inlier count) must be identical, and are counted.

CPU time of this thread (`time.process_time`, the analysis is one thread), medians and sums per call over
the last of `--passes` passes (the first warms caches), and the one-off build of each screen's tables. The
machines are shared and noisy: compare figures of the same run.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from benchmarks.realistic import build_realistic_cached
from monitor.bank.matcher import BankMatcher, local_image, local_views
from monitor.bank.store import load_bank
from monitor.imaging.fingerprint import fingerprint
from monitor.imaging.local_features import (
    _FAR,
    _LSH,
    _LSH_SEED,
    MIN_KEYPOINTS,
    Features,
    LocalIndex,
    features,
    with_mirror,
)
from monitor.ingest.decode import DecodeError
from monitor.settings import Settings


class FlannIndex(LocalIndex):
    """The local index with the screen it had before `lsh_screen.py`: FLANN's own LSH index."""

    def __init__(self) -> None:
        super().__init__()
        self._flann: cv2.flann.Index | None = None
        self._flann_data = np.zeros((0, 32), np.uint8)

    def build(self) -> None:
        self._assemble()
        cv2.setRNGSeed(_LSH_SEED)
        self._flann_data = np.ascontiguousarray(self._descriptors)
        self._flann = cv2.flann.Index(self._flann_data, _LSH)

    def _screen(self, query: Features) -> tuple[np.ndarray, np.ndarray]:
        if self._flann is None:
            self.build()
        assert self._flann is not None
        indices, distances = self._flann.knnSearch(query.descriptors, 2, params={"checks": 64})
        found = indices >= 0
        rows = np.where(found, indices, 0).astype(np.int64)
        spans = np.where(found, distances, _FAR).astype(np.int64)
        return np.stack([rows[:, 0], spans[:, 0]], axis=1), np.stack([rows[:, 1], spans[:, 1]], axis=1)


def cpu(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    result = call()
    return time.process_time() - start, result


def banked_indexes(bank_dir: Path) -> tuple[LocalIndex, FlannIndex, BankMatcher]:
    bank = load_bank(bank_dir)
    ours, flann = LocalIndex(), FlannIndex()
    for image in bank.images:
        picture = bank.picture(image)
        if picture is not None:
            found = with_mirror(picture)
            ours.add_all(image.cluster, found)
            flann.add_all(image.cluster, found)
    matcher = BankMatcher(bank, Settings.model_fields["match_distance"].default, local=False)
    return ours, flann, matcher


def local_queries(archive: Path, matcher: BankMatcher) -> list[Image.Image]:
    """Every view of every uploaded picture the global hashes leave to the local stage."""
    queries = []
    for line in archive.read_text(encoding="utf-8").splitlines():
        for attached in json.loads(line).get("images", ()):
            data = base64.b64decode(attached["data"])
            try:
                printed = fingerprint(data)
                if matcher.match(printed.hashes) is not None:
                    continue
                views = local_views(local_image(data, printed.image))
            except DecodeError:
                continue
            queries.extend(views)
    return queries


def median_ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f}" if values else "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.local_stage", description=__doc__)
    parser.add_argument("--work-dir", type=Path, help="where the realistic stream is (or is built)")
    parser.add_argument("--posts", type=int, default=400, help="posts of the realistic stream")
    parser.add_argument("--seed", type=int, default=11, help="seed of the realistic stream")
    parser.add_argument("--passes", type=int, default=2, help="passes over the queries; the last is timed")
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="local-stage-"))
    real = build_realistic_cached(work / "realistic", args.posts, args.seed)
    ours, flann, matcher = banked_indexes(real.bank)
    build_ours, _ = cpu(ours._trained)
    build_flann, _ = cpu(flann.build)
    views = local_queries(real.archive, matcher)
    print(
        f"realistic stream: {real.describe()}\n{len(ours)} banked feature sets, "
        f"{len(ours._descriptors)} descriptors; {len(views)} local queries (views)"
    )
    times: dict[str, list[float]] = {}
    same_screen = same_match = 0
    for _ in range(max(1, args.passes)):
        times = {"orb": [], "screen flann": [], "screen ours": [], "match flann": [], "match ours": []}
        same_screen = same_match = 0
        for view in views:
            took, query = cpu(lambda v=view: features(v))
            times["orb"].append(took)
            if len(query) < MIN_KEYPOINTS:
                continue
            took, before = cpu(lambda q=query: flann._screen(q))
            times["screen flann"].append(took)
            took, after = cpu(lambda q=query: ours._screen(q))
            times["screen ours"].append(took)
            same_screen += all(np.array_equal(b, a) for b, a in zip(before, after, strict=True))
            took, found_before = cpu(lambda q=query: flann.match(q))
            times["match flann"].append(took)
            took, found_after = cpu(lambda q=query: ours.match(q))
            times["match ours"].append(took)
            same_match += found_before == found_after
    calls = len(times["screen ours"])  # views with enough keypoints to be searched
    print(f"identical: screens {same_screen}/{calls}, verdicts (picture and inliers) {same_match}/{calls}")
    print(f"table build (once per bank): flann {build_flann:.2f} s, ours {build_ours:.2f} s CPU")
    print(f"{'CPU ms per call':24s} {'median':>8s} {'sum s':>8s}")
    for name, values in times.items():
        print(f"{name:24s} {median_ms(values):>8s} {sum(values):8.2f}")
    for stage in ("screen", "match"):
        before_sum, after_sum = sum(times[f"{stage} flann"]), sum(times[f"{stage} ours"])
        print(f"{stage}: flann / ours = {before_sum / max(after_sum, 1e-9):.2f}x (sums)")
    return 0 if same_screen == calls and same_match == calls else 1


if __name__ == "__main__":
    raise SystemExit(main())
