"""The bank's narrative-embedding cache: a start with the cache embeds nothing and decides exactly as one
without it; an edited narrative is embedded again alone; a damaged or foreign cache file is rebuilt. And
the per-post stage embeds no caption that cannot count (a text-only post)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from monitor.analysis.analyzer import Analyzer
from monitor.bank.matcher import BankMatcher
from monitor.bank.store import (
    Bank,
    NarrativeExample,
    add_narrative,
    load_bank,
    read_vectors,
    text_key,
    vectors_path,
    write_vectors,
)
from monitor.models import NarrativeMatch, Post
from monitor.narratives import matcher as matcher_module
from monitor.narratives.matcher import NarrativeMatcher, derive
from tests.support.word_encoder import BACKGROUND, WordEncoder

NARRATIVES = {
    "pope-puffer": ["Pope Francis wears a white puffer coat", "Pope Francis in a huge white puffer jacket"],
    "trump-arrest": ["Donald Trump arrested by police in New York", "Police drag Donald Trump away"],
    "eiffel-fire": ["The Eiffel Tower is on fire in Paris", "Fire destroys the Eiffel Tower in Paris"],
}
CAPTIONS = [
    "Pope Francis in a white puffer coat",
    "Donald Trump arrested in New York by the police",
    "Eiffel Tower on fire tonight in Paris",
    "Trump speaks at a rally",
    "my cat on the sofa again",
    "Le pape François porte une doudoune blanche",
]


def bank_dir(tmp_path: Path, narratives: dict[str, list[str]] = NARRATIVES) -> Path:
    directory = tmp_path / "bank"
    for narrative_id, texts in narratives.items():
        add_narrative(directory, narrative_id, texts)
    return directory


def build(
    directory: Path | None, examples: Sequence[NarrativeExample]
) -> tuple[NarrativeMatcher, WordEncoder]:
    encoder = WordEncoder()  # a fresh one: nothing remembered from an earlier matcher
    return NarrativeMatcher(encoder, examples, 0.3, background=BACKGROUND, cache_dir=directory), encoder


def test_a_cached_start_embeds_no_bank_text_and_decides_like_an_uncached_one(tmp_path: Path) -> None:
    directory = bank_dir(tmp_path)
    examples = load_bank(directory).narratives
    uncached, plain_encoder = build(None, examples)
    first, first_encoder = build(directory, examples)
    assert vectors_path(directory, WordEncoder.cache_key).is_file()
    assert len(first_encoder.encoded) == len(plain_encoder.encoded) > len(examples)

    cached, cached_encoder = build(directory, examples)
    assert cached_encoder.encoded == []
    decisions = uncached.match_many(CAPTIONS)
    assert cached.match_many(CAPTIONS) == first.match_many(CAPTIONS) == decisions
    assert any(d is not None for d in decisions) and any(d is None for d in decisions)
    assert cached.score_matrix(CAPTIONS).tolist() == uncached.score_matrix(CAPTIONS).tolist()


def test_editing_one_narrative_embeds_only_its_texts_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = bank_dir(tmp_path)
    build(directory, load_bank(directory).narratives)
    derived: list[list[str]] = []
    monkeypatch.setattr(matcher_module, "derive", lambda texts: derived.append(list(texts)) or derive(texts))
    edited = {
        **NARRATIVES,
        "eiffel-fire": ["The Eiffel Tower burns in Paris", *NARRATIVES["eiffel-fire"][1:]],
    }
    examples = [NarrativeExample(n, t) for n, texts in edited.items() for t in texts]

    _, encoder = build(directory, examples)
    assert derived == [edited["eiffel-fire"]]  # decoys and subjects of the others come from the cache
    assert encoder.encoded  # the edited narrative's example and decoys
    assert all("Eiffel" in text or "someone" in text.lower() for text in encoder.encoded)
    assert not any("Pope" in text or "Trump" in text for text in encoder.encoded)

    _, again = build(directory, examples)
    assert again.encoded == []  # and the cache now holds the edit
    assert derived == [edited["eiffel-fire"]]


def test_a_truncated_cache_file_is_ignored_and_rebuilt(tmp_path: Path) -> None:
    directory = bank_dir(tmp_path)
    examples = load_bank(directory).narratives
    reference, first = build(directory, examples)
    path = vectors_path(directory, WordEncoder.cache_key)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert read_vectors(directory, WordEncoder.cache_key) == {}
    texts = directory / "embeddings" / "texts.json"
    texts.write_bytes(texts.read_bytes()[:100])

    rebuilt, encoder = build(directory, examples)
    assert sorted(encoder.encoded) == sorted(first.encoded)
    assert len(read_vectors(directory, WordEncoder.cache_key)) == len(first.encoded)
    assert rebuilt.match_many(CAPTIONS) == reference.match_many(CAPTIONS)
    _, after = build(directory, examples)
    assert after.encoded == []


def test_a_cache_file_of_another_model_or_of_garbage_is_not_read(tmp_path: Path) -> None:
    directory = tmp_path / "bank"
    vector = np.ones(4, np.float32) / 2
    assert write_vectors(directory, "model-a@1", {text_key("a caption"): vector})
    assert read_vectors(directory, "model-a@1")[text_key("a caption")].tolist() == vector.tolist()
    foreign = vectors_path(directory, "model-b@1")
    foreign.write_bytes(vectors_path(directory, "model-a@1").read_bytes())  # copied under another name
    assert read_vectors(directory, "model-b@1") == {}
    foreign.write_bytes(b"not an npz file")
    assert read_vectors(directory, "model-b@1") == {}


def test_an_encoder_without_a_cache_key_gets_no_vector_file(tmp_path: Path) -> None:
    class Unnamed(WordEncoder):
        cache_key = ""

    directory = bank_dir(tmp_path)
    NarrativeMatcher(
        Unnamed(), load_bank(directory).narratives, 0.3, background=BACKGROUND, cache_dir=directory
    )
    assert list((directory / "embeddings").glob("*.npz")) == []  # only the model-free texts.json


class SpyMatcher:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def match_many(self, texts: Sequence[str]) -> list[NarrativeMatch | None]:
        self.seen.extend(texts)
        return [NarrativeMatch("pope-puffer", 0.9) for _ in texts]


def test_only_posts_that_can_join_a_cluster_have_their_caption_matched() -> None:
    spy = SpyMatcher()
    narratives: object = spy
    analyzer = Analyzer(BankMatcher(Bank(), 10), narratives)  # type: ignore[arg-type]
    posts = [
        Post("text-only", "a", 0.0, text="Pope in a puffer coat (text only)"),
        Post("reshare", "a", 0.0, text="Pope in a puffer coat (reshare)", reshare_of="original"),
    ]
    analyzed = analyzer.analyze(posts, [[], []])
    assert spy.seen == ["Pope in a puffer coat (reshare)"]
    assert [a.narrative for a in analyzed] == [None, NarrativeMatch("pope-puffer", 0.9)]
