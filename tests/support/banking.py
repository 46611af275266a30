"""One picture banked in a fresh folder and a matcher over it: the set-up of the matching tests that ask
what a single banked (often smooth) picture matches and what it refuses."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from monitor.bank.matcher import BankMatcher
from monitor.bank.store import add_images, load_bank
from monitor.settings import Settings
from tests.support.viral_edits import jpeg


def matcher_of(folder: Path, cluster: str, picture: Image.Image, quality: int = 92) -> BankMatcher:
    """Bank `picture` (as a JPEG of `quality`) under `cluster` in `folder`/bank; a matcher with the default
    match distance over that bank."""
    path = folder / f"{cluster}.jpg"
    path.write_bytes(jpeg(picture, quality))
    add_images(folder / "bank", cluster, [path])
    return BankMatcher(load_bank(folder / "bank"), Settings().match_distance)
