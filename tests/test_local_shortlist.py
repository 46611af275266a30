"""The local stage pairs a query exactly with the few banked pictures a coarse screen shortlists: with many
more banked pictures than the shortlist holds, each crop still finds its own picture and nothing else."""

from __future__ import annotations

import io

from PIL import Image

from monitor.imaging.local_features import SHORTLIST, LocalIndex, features, with_mirror
from tests.support.viral_edits import apply_edit
from tests.test_matching_edits import generated_photo

BANKED = tuple(range(1000, 1012))
NEVER_BANKED = (2001, 2002, 2003)


def test_crops_find_their_picture_among_many_more_than_the_shortlist() -> None:
    index = LocalIndex()
    for seed in BANKED:
        index.add_all(f"fake-{seed}", with_mirror(generated_photo(seed)))
    assert len(index) > 4 * SHORTLIST
    for seed in BANKED:
        for edit in ("crop", "mirror"):
            copy = Image.open(io.BytesIO(apply_edit(edit, generated_photo(seed), seed)))
            found = index.match(features(copy))
            assert found is not None and found.key == f"fake-{seed}", (seed, edit, found)
    for seed in NEVER_BANKED:
        assert index.match(features(generated_photo(seed))) is None
