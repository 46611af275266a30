"""The narrative benchmark's held-out sets are what its report says they are: a broken or edited set would
make every figure quoted from it wrong without any error."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.narratives import NAMED_DATA, TUNING_DATA, load_dataset

LANGUAGES = {"en", "fr", "es", "de", "it", "pt", "mix"}
SETS = sorted(set(NAMED_DATA.values()))


@pytest.mark.parametrize("path", SETS, ids=lambda p: Path(p).name)
def test_each_held_out_set_is_well_formed(path: Path) -> None:
    data = load_dataset(path)
    assert len(data.narratives) == 12
    assert all(len(examples) >= 2 for examples in data.narratives.values())
    assert all(narrative in data.narratives for narrative, _, _ in data.positives)
    assert {lang for _, lang, _ in data.positives} == LANGUAGES  # every language is measured
    assert {lang for lang, _ in data.negatives} <= LANGUAGES | {"?"}
    positives = [text for _, _, text in data.positives]
    negatives = [text for _, text in data.negatives]
    assert len(set(positives)) == len(positives) == 108
    assert len(set(negatives)) == len(negatives) >= 96
    assert not set(positives) & set(negatives)
    assert all(text.strip() for text in positives + negatives)


def test_held_out_sets_use_new_narratives_and_only_the_newest_may_be_blind() -> None:
    seen: set[str] = set()
    for path in SETS:
        ids = set(load_dataset(path).narratives)
        assert not ids & seen, f"{Path(path).name} repeats narratives of an earlier set"
        seen |= ids
    # A set is blind until it has judged one change; then it tunes the next one (TUNING_DATA). Between a
    # judged set and a newly written one, every named set is tuning data; once the new one is named, it is
    # the only one that is not.
    versions = {name: int(name.rsplit("-v", 1)[1]) for name in NAMED_DATA if "-v" in name}
    newest = max(versions, key=versions.__getitem__)
    blind = {name for name in NAMED_DATA if name not in TUNING_DATA}
    assert blind <= {newest}, f"sets neither blind nor tuning data: {sorted(blind - {newest})}"
