"""The local index answers from FLANN's LSH index over the banked descriptors, which FLANN reads in place
rather than copying: a bank that grows after a search must be searched over all its pictures, old and new,
and a search after the arrays it was built from were replaced must still find the right picture."""

from __future__ import annotations

import gc
import io

from PIL import Image

from monitor.imaging.local_features import LocalIndex, features, with_mirror
from tests.support.viral_edits import apply_edit
from tests.test_matching_edits import generated_photo


def crop_of(seed: int) -> Image.Image:
    return Image.open(io.BytesIO(apply_edit("crop", generated_photo(seed), seed)))


def test_pictures_banked_after_a_search_are_found_and_earlier_ones_still_are() -> None:
    index = LocalIndex()
    index.add_all("fake-1", with_mirror(generated_photo(1001)))
    first = index.match(features(crop_of(1001)))
    assert first is not None and first.key == "fake-1"
    assert index.match(features(crop_of(1002))) is None
    index.add_all("fake-2", with_mirror(generated_photo(1002)))
    gc.collect()  # the descriptors the first index was built on are garbage now
    for seed, key in ((1001, "fake-1"), (1002, "fake-2")):
        found = index.match(features(crop_of(seed)))
        assert found is not None and found.key == key, (seed, found)


def test_a_prepared_index_finds_what_an_unprepared_one_does_and_pictures_added_after() -> None:
    prepared, lazy = LocalIndex(), LocalIndex()
    prepared.prepare()  # nothing banked yet: nothing to build, and no error
    for index in (prepared, lazy):
        index.add_all("fake-1", with_mirror(generated_photo(1001)))
    prepared.prepare()
    query = features(crop_of(1001))
    found = prepared.match(query)
    assert found is not None and found.key == "fake-1"
    assert found == lazy.match(query)
    prepared.add_all("fake-2", with_mirror(generated_photo(1002)))
    later = prepared.match(features(crop_of(1002)))
    assert later is not None and later.key == "fake-2"
