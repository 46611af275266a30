"""EXPERIMENT (issue 13): a learned stance gate behind the narrative matcher, measured leave one set out.

    python -m benchmarks.stance_gate_experiment --cache /tmp/stance-cache

The shipped matcher (EmbeddingGemma, its shipped weights and stance lead) flags a caption; a linear
classifier (L2 logistic regression) on the caption's EmbeddingGemma vector says whether the caption asserts
the claim (label 1: a positive of the set) or only talks about it (label 0: an on-topic negative: a debunk,
a question, same-event news). A flagged caption whose probability is under a cut is refused.

Everything is leave one set out over the tuning sets (benchmarks.narratives_tune.TUNING_SETS): for the set
left out, the classifier is fitted on the others, and its cut is chosen on the others' out-of-fold
probabilities (each training set scored by a classifier fitted on the remaining training sets), so the cut
never sees an in-sample probability nor the set it is judged on. The blind set (heldout-v13) is not read.

Features (each tried alone):
  query      the caption's query-side vector (what the matcher compares with the bank)
  sts        the caption's plain (STS, no prompt) EmbeddingGemma vector
  query-rel  query vector minus the document vector of the nearest example of the narrative it matched
  sts-rel    STS vector minus the STS vector of that narrative's nearest example (by STS)
  sts+rel    sts and sts-rel side by side

Cuts (chosen on the training folds' out-of-fold probabilities):
  keep99     the highest cut that refuses at most 1% of the training positives the matcher gets right
  budget     the cut with the highest training recall whose training flags are at most --flag-budget
  joint      the matcher's threshold and the cut chosen together: highest training recall, no wrong, flags at
             most --flag-budget (THRESHOLDS x cuts)
Baselines: the shipped matcher at its shipped threshold (0.74), and the matcher with the stance lead and
threshold that `benchmarks.narratives_tune --stance-only` picks leave one set out at --flag-budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmarks.narratives import load_dataset
from benchmarks.narratives_tune import (
    MARGIN,
    OFF,
    SHIPPED,
    STANCE_LEADS,
    THRESHOLDS,
    TUNING_SETS,
    Counts,
    DiskCachedEncoder,
    Rows,
    Weights,
    cached_encoder,
    counts_at,
    dataset_path,
    parts_of,
    pick,
    rows_of,
)
from monitor.narratives.encoders import _single
from monitor.narratives.matcher import MODEL_THRESHOLDS, NarrativeMatcher, derived_texts
from monitor.narratives.text import caption_parts

FEATURES = ("query", "sts", "query-rel", "sts-rel", "sts+rel")
CUTS = ("keep99", "budget", "joint")
SHIPPED_THRESHOLD = MODEL_THRESHOLDS["embeddinggemma"]
CUT_GRID = tuple(x / 100 for x in range(0, 100))


@dataclass(frozen=True)
class SetData:
    """One tuning set: the matcher's rows (shipped weights) and, per caption, its feature vectors."""

    name: str
    rows: Rows
    features: dict[str, np.ndarray]

    @property
    def labels(self) -> np.ndarray:
        return (self.rows.truth >= 0).astype(int)


def _nearest_of_top(vectors: np.ndarray, bank: np.ndarray, owners: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Per caption, the bank vector (of the caption's top narrative) nearest to it."""
    sims = vectors @ bank.T
    sims = np.where(owners[None, :] == top[:, None], sims, -np.inf)
    return bank[np.argmax(sims, axis=1)]


def collect(cache: Path) -> tuple[list[SetData], dict[Weights, list[Rows]]]:
    encoder, caches = cached_encoder("embeddinggemma", cache)
    sts = DiskCachedEncoder(_single("embeddinggemma"), "embeddinggemma", cache)
    out: list[SetData] = []
    table: dict[Weights, list[Rows]] = {}
    leads = [lead for lead in STANCE_LEADS if lead != SHIPPED[6]]
    grid: list[Weights] = [SHIPPED] + [(*SHIPPED[:6], lead, SHIPPED[7]) for lead in leads]
    for name in TUNING_SETS:
        data = load_dataset(dataset_path(name))
        matcher = NarrativeMatcher(
            encoder, data.examples, threshold=0.0, margin=MARGIN, retrieval_story_weight=1.0, stance_lead=0.0
        )
        parts = parts_of(matcher, data)
        for weights in grid:
            table.setdefault(weights, []).append(rows_of(parts, weights))
        rows = table[SHIPPED][-1]
        raw = [t for _, _, t in data.positives] + [t for _, t in data.negatives]
        context = [(caption_parts(t) or [t])[0] for t in raw]
        query = encoder.encode(context).astype(np.float64)
        plain = sts.encode(context).astype(np.float64)
        # the matcher's examples (cleaned, with their role rewrites), owner-sorted as its index holds them
        groups: dict[str, list[str]] = {n: [] for n in matcher.narratives}
        for e in data.examples:
            if not e.negative and e.narrative_id in groups:
                groups[e.narrative_id].append(e.text)
        derived = derived_texts(groups, None)
        owned = [
            (k, t)
            for k, n in enumerate(matcher.narratives)
            for t in derived[n]["cleaned"] + derived[n]["roles"]
        ]
        owners = np.array([k for k, _ in owned])
        index = matcher._views[0]
        if len(owners) != len(index.examples):
            raise SystemExit(
                f"{name}: {len(owners)} examples derived, the matcher holds {len(index.examples)}"
            )
        query_rel = query - _nearest_of_top(query, index.examples, owners, rows.top)
        bank = sts.encode([t for _, t in owned]).astype(np.float64)
        sts_rel = plain - _nearest_of_top(plain, bank, owners, rows.top)
        features = {
            "query": query,
            "sts": plain,
            "query-rel": query_rel,
            "sts-rel": sts_rel,
            "sts+rel": np.hstack([plain, sts_rel]),
        }
        out.append(SetData(name, rows, features))
        print(f"  {name}: {len(raw)} captions", file=sys.stderr, flush=True)
    for c in [*caches, sts]:
        c.save()
    return out, table


def fit(sets: Sequence[SetData], feature: str, c: float, near: float) -> LogisticRegression:
    """Fitted on the captions whose matcher score is at least `near` (the ones a gate may have to judge)."""
    x = np.vstack([s.features[feature][s.rows.best >= near] for s in sets])
    y = np.concatenate([s.labels[s.rows.best >= near] for s in sets])
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    model.fit(x, y)
    return model


def gated(rows: Rows, probability: np.ndarray, threshold: float, cut: float) -> Counts:
    """The matcher's counts with captions under the cut refused (best set to -1: no match)."""
    best = np.where(probability >= cut, rows.best, -1.0)
    return counts_at(Rows(rows.top, best, rows.second, rows.truth), threshold)


def choose(items: Sequence[tuple[Rows, np.ndarray]], rule: str, budget: float) -> tuple[float, float]:
    """(threshold, cut) by the rule, on the training folds' out-of-fold probabilities."""
    best = np.concatenate([rows.best for rows, _ in items])
    second = np.concatenate([rows.second for rows, _ in items])
    top = np.concatenate([rows.top for rows, _ in items])
    truth = np.concatenate([rows.truth for rows, _ in items])
    probability = np.concatenate([p for _, p in items])
    positive = truth >= 0
    if rule == "keep99":
        hit = (best >= SHIPPED_THRESHOLD) & (best - second >= MARGIN)
        kept = probability[hit & positive & (top == truth)]
        cut = max((c for c in CUT_GRID if (kept < c).mean() <= 0.01), default=0.0)
        return SHIPPED_THRESHOLD, cut
    thresholds = np.array((SHIPPED_THRESHOLD,) if rule == "budget" else THRESHOLDS)
    # (captions, thresholds): matched at each threshold, before the gate
    hit = (best[:, None] >= thresholds[None, :]) & ((best - second) >= MARGIN)[:, None]
    own = (top == truth)[:, None]
    negatives = int((~positive).sum())
    chosen: tuple[tuple[float, float, float], float, float] | None = None
    for cut in CUT_GRID:
        kept = hit & (probability >= cut)[:, None]
        right = (kept & own & positive[:, None]).sum(axis=0)
        wrong = (kept & ~own & positive[:, None]).sum(axis=0)
        flags = (kept & ~positive[:, None]).sum(axis=0)
        for i in np.flatnonzero((wrong == 0) & (flags <= budget * negatives)):
            key = (float(right[i]), -float(flags[i]), -cut)
            if chosen is None or key > chosen[0]:
                chosen = (key, float(thresholds[i]), cut)
    if chosen is None:
        return SHIPPED_THRESHOLD, 1.0
    return chosen[1], chosen[2]


def experiment(
    sets: Sequence[SetData], feature: str, c: float, near: float, budget: float
) -> dict[str, list[Counts]]:
    """Per cut rule, the counts of each set left out."""
    results: dict[str, list[Counts]] = {rule: [] for rule in CUTS}
    everything = range(len(sets))
    models: dict[frozenset[int], LogisticRegression] = {}

    def without(*left_out: int) -> LogisticRegression:
        """The model fitted on every set but these (the one for sets j and k serves both folds)."""
        key = frozenset(left_out)
        if key not in models:
            models[key] = fit([s for i, s in enumerate(sets) if i not in key], feature, c, near)
        return models[key]

    # out-of-fold probabilities of set j by a model fitted without sets j and k, for every k != j
    for k in everything:
        train = [j for j in everything if j != k]
        items = []
        for j in train:
            model = without(j, k)
            items.append((sets[j].rows, model.predict_proba(sets[j].features[feature])[:, 1]))
        model = without(k)
        probability = model.predict_proba(sets[k].features[feature])[:, 1]
        for rule in CUTS:
            threshold, cut = choose(items, rule, budget)
            counts = gated(sets[k].rows, probability, threshold, cut)
            results[rule].append(counts)
            print(
                f"    {feature:9s} C={c:<5g} near {near:g} {rule:6s} {sets[k].name:11s} "
                f"t {threshold:.3f} cut {cut:.2f}: {counts.line()}",
                flush=True,
            )
    return results


def diagnose(sets: Sequence[SetData], feature: str, c: float, near: float) -> None:
    """Is the stance learnable at all from these vectors? Per set: the flagged negatives (shipped 0.74) and
    the positives it gets right, with the gate fitted on every set (in-sample: an upper bound) and on the
    others only (left out), read at the 10th percentile of the right positives' probabilities."""
    inside = fit(sets, feature, c, near)
    print(f"\nDiagnosis, {feature} C={c:g} near {near:g}: flagged negatives under the 10th percentile of the")
    print("right positives' probability (in-sample fit on every set / fit without the set):")
    for k, s in enumerate(sets):
        hit = (s.rows.best >= SHIPPED_THRESHOLD) & (s.rows.best - s.rows.second >= MARGIN)
        right = hit & (s.rows.truth >= 0) & (s.rows.top == s.rows.truth)
        flagged = hit & (s.rows.truth < 0)
        cells = []
        for model in (inside, fit([x for i, x in enumerate(sets) if i != k], feature, c, near)):
            p = model.predict_proba(s.features[feature])[:, 1]
            cut = np.quantile(p[right], 0.1) if right.any() else 0.0
            cells.append(f"{int((p[flagged] < cut).sum())}/{int(flagged.sum())}")
        print(f"  {s.name:11s} in-sample {cells[0]:>6s}  left out {cells[1]:>6s}")


def total(counts: Sequence[Counts]) -> Counts:
    out = Counts(0, 0, 0, 0, 0)
    for c in counts:
        out = out + c
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/misinfo-monitor/bench-embeddings"))
    parser.add_argument("--flag-budget", type=float, default=0.02)
    parser.add_argument("--features", nargs="+", default=list(FEATURES), choices=FEATURES)
    parser.add_argument("--c", type=float, nargs="+", default=[1.0])
    parser.add_argument(
        "--near", type=float, nargs="+", default=[-1.0], help="fit on captions scored at least this"
    )
    parser.add_argument("--diagnose", action="store_true", help="only the learnability check (first feature)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    sets, table = collect(args.cache)
    print(f"embedded in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    names = [s.name for s in sets]
    if args.diagnose:
        diagnose(sets, args.features[0], args.c[0], args.near[0])
        return 0

    print(f"Baselines (leave one set out; flag budget {args.flag_budget:.1%}):")
    shipped = [counts_at(s.rows, SHIPPED_THRESHOLD) for s in sets]
    tuned = []
    for k in range(len(sets)):
        weights, threshold, _ = pick(table, [j for j in range(len(sets)) if j != k], args.flag_budget)
        tuned.append(counts_at(table[weights][k], threshold))
        lead = "off" if weights[6] == OFF else f"{weights[6]:g}"
        print(f"  tune --stance-only  {names[k]:11s} lead {lead} t {threshold:.3f}: {tuned[-1].line()}")

    summary: list[tuple[str, list[Counts]]] = [("shipped 0.74", shipped), ("tune LOSO", tuned)]
    for feature in args.features:
        for c in args.c:
            for near in args.near:
                results = experiment(sets, feature, c, near, args.flag_budget)
                for rule in CUTS:
                    label = f"{feature} C={c:g} near {near:g} {rule}"
                    summary.append((label, results[rule]))
                    print(f"  {label}: pooled {total(results[rule]).line()}", flush=True)

    print("\nPer set left out: recall% / flagged / wrong")
    print(f"{'variant':34s} " + " ".join(f"{n.replace('heldout-', ''):>12s}" for n in names) + "  pooled")
    for label, counts in summary:
        cells = " ".join(f"{c.right / c.positives:5.1%}/{c.flags:>3d}/{c.wrong}".rjust(12) for c in counts)
        print(f"{label:34s} {cells}  {total(counts).line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
