"""One picture banked in a fresh folder and a matcher over it: the set-up of the matching tests that ask
what a single banked (often smooth) picture matches and what it refuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image

from monitor.bank.matcher import BankMatcher
from monitor.bank.store import add_images, load_bank
from monitor.models import BankMatch
from monitor.settings import Settings
from tests.support.renders import smooth_picture
from tests.support.viral_edits import jpeg


def matcher_of(folder: Path, cluster: str, picture: Image.Image, quality: int = 92) -> BankMatcher:
    """Bank `picture` (as a JPEG of `quality`) under `cluster` in `folder`/bank; a matcher with the default
    match distance over that bank."""
    path = folder / f"{cluster}.jpg"
    path.write_bytes(jpeg(picture, quality))
    add_images(folder / "bank", cluster, [path])
    return BankMatcher(load_bank(folder / "bank"), Settings().match_distance)


def found(matcher: BankMatcher, data: bytes) -> BankMatch | None:
    """The bank match of a file's bytes, or None."""
    return matcher.match_bytes(data)[1]


def draw(tag: str) -> Callable[[str, int], Image.Image]:
    """`render(kind, index)` of the matching benchmark's eval draw `tag` ("final23": render `index` of
    `kind` as that draw made it; 0 and 1 banked, 2 and on its look-alikes)."""

    def render(kind: str, index: int) -> Image.Image:
        return smooth_picture(kind, f"eval{tag}{index}")

    return render


RENDER_KINDS = ("gradient-subject", "pastel-hills", "blurred-background", "soft-sky")


def banked_renders(folder: Path, render: Callable[[str, int], Image.Image]) -> BankMatcher:
    """A bank of a draw's banked renders (`render(kind, index)`, 0 and 1 of every kind), as the benchmark
    banks them: with one picture alone the local stage pairs a copy with it that, among several, it pairs
    with another."""
    for kind in RENDER_KINDS:
        for index in (0, 1):
            path = folder / f"{kind}-{index}.jpg"
            path.write_bytes(jpeg(render(kind, index), 92))
            add_images(folder / "bank", f"{kind}-{index}", [path])
    return BankMatcher(load_bank(folder / "bank"), Settings().match_distance)
