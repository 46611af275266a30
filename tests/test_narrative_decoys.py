"""Narratives about the same people share decoy texts ("Donald Trump today"); the matcher embeds and scores
each distinct decoy text once, and each narrative's decoy z must still be the nearest of its own decoys."""

from __future__ import annotations

import numpy as np

from monitor.bank.store import NarrativeExample
from monitor.narratives.matcher import NarrativeMatcher, derive
from tests.support.word_encoder import BACKGROUND, WordEncoder

#: two narratives about Donald Trump (their name and story decoys overlap) and one about someone else
NARRATIVES = {
    "trump-arrest": ["Donald Trump arrested by police in New York", "Police drag Donald Trump away"],
    "trump-golf": ["Donald Trump cheats at golf in Scotland", "Donald Trump caught cheating at golf"],
    "pope-puffer": ["Pope Francis wears a white puffer coat", "Pope Francis in a huge white puffer jacket"],
}
CAPTIONS = [
    "Donald Trump arrested in New York by the police",
    "Trump plays golf in Scotland",
    "Donald Trump today",
    "Pope Francis in a white puffer coat",
    "my cat on the sofa again",
]
#: decoy kinds in the order of derive()'s fields and of _ViewIndex.decoy_z's first three
KINDS = ("names", "stories", "swaps")


def test_each_narrative_is_penalised_by_its_own_decoys_when_narratives_share_decoy_texts() -> None:
    examples = [NarrativeExample(n, t) for n, texts in NARRATIVES.items() for t in texts]
    encoder = WordEncoder()
    m = NarrativeMatcher(encoder, examples, 0.3, background=BACKGROUND)
    derived = {n: derive(texts) for n, texts in NARRATIVES.items()}
    shared = [t for d in derived.values() for kind in KINDS for t in d[kind]]
    assert len(set(shared)) < len(shared)  # the case at hand: some decoy texts belong to two narratives

    (index,) = m._views
    vectors = encoder.encode(CAPTIONS)
    found = index.decoy_z(vectors)
    calibration = index.calibration
    for kind, z in zip(KINDS, found, strict=False):
        for k, narrative in enumerate(m.narratives):
            own = derived[narrative][kind]
            expected = np.zeros(len(CAPTIONS))
            if own:
                cosines = vectors @ encoder.encode(own).T
                expected = np.maximum(calibration.z(cosines).max(axis=1), 0.0)
            np.testing.assert_allclose(z[:, k], expected, rtol=0, atol=1e-5, err_msg=f"{kind} of {narrative}")
