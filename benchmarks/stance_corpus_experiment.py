"""EXPERIMENT (issue 13): a stance gate trained on a hand-written corpus, judged on the narrative tuning sets.

    HF_HUB_OFFLINE=1 python -m benchmarks.stance_corpus_experiment --cache /tmp/stcorp/cache
    HF_HUB_OFFLINE=1 python -m benchmarks.stance_corpus_experiment --cache /tmp/stcorp/cache \\
        --with-tuning                      # also: corpus + the other tuning sets, leave one set out
    HF_HUB_OFFLINE=1 python -m benchmarks.stance_corpus_experiment --cache /tmp/stcorp/cache --timing

The shipped matcher (EmbeddingGemma, shipped weights, stance lead and debunk cues, threshold 0.74) flags a
caption for a narrative N; the gate reads the caption's vector u and the vector v of N's example nearest to
it and says whether the caption asserts N's claim. A flagged caption whose probability is under the cut is
refused (benchmarks.stance_gate_experiment.gated).

Training data: benchmarks/data/stance-train.json only (68 invented claims, their spreading captions as
label 1, their debunks, honest questions, same-event news and related stories as label 0; each caption is
paired with its own claim's nearest example). None of the tuning sets is seen, so every tuning set is held
out, and the cut is chosen on the corpus alone: on out-of-fold probabilities of a 5-fold cross-validation
grouped by claim (keep99 / keep95 / keep90: the highest cut that refuses at most 1% / 5% / 10% of the
corpus's spreading captions), or on the OTHER tuning sets, leave one set out, with the corpus's model
(LOSO-cut keep99: at most 1% of their right positives refused; budget: their highest recall with flags
<= --flag-budget at 0.74; joint: threshold and cut together; benchmarks.stance_gate_experiment.choose).
`--with-tuning` adds, for each set judged, the other tuning sets' captions (those the matcher scores
>= 0.65; positives only where it picks their own narrative) to the corpus, and chooses the cut the same way
on that pool (folds: the corpus's claims and the training sets).

Spaces: `sts` (EmbeddingGemma without a prompt, both sides; an extra model pass per flagged caption),
`query` (the matcher's own query vector of the caption and document vector of the example: free at run
time), `both` (the two side by side). Features of (u, v): `rel` u - v; `pair` [u*v, |u-v|]; `pair+u`
[u, u*v, |u-v|]; `sts+rel` [u, u-v].
Models: L2 logistic regression (`lr`, class_weight balanced, --c) and a small MLP (`mlp`, 64 hidden units).

Printed: the corpus's cross-validated AUC; per tuning set, the AUC of the gate between the captions the
matcher gets right and the on-topic negatives it flags (threshold 0.74: what a gate has to separate); per
variant and cut rule, recall / flagged / wrong per set and pooled, next to the matcher alone.
`--show heldout-v14 ...`: those sets' flagged negatives and refused positives (first variant, keep99).
`--timing`: CPU cost of the gate per caption (the model's prediction; and an STS pass of one caption).
Only the tuning sets (benchmarks.narratives_tune.TUNING_SETS) are read, never a blind set.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.neural_network import MLPClassifier

from benchmarks.narratives import load_dataset
from benchmarks.narratives_tune import (
    MARGIN,
    Counts,
    DiskCachedEncoder,
    cached_encoder,
    counts_at,
    dataset_path,
)
from benchmarks.stance_gate_experiment import SHIPPED_THRESHOLD, SetData, choose, collect, gated, total
from monitor.narratives.encoders import _single
from monitor.narratives.matcher import derived_texts
from monitor.narratives.text import caption_parts

CORPUS = Path(__file__).parent / "data" / "stance-train.json"
SPACES = ("sts", "query")
CHOICES = (*SPACES, "both")
FEATURES = ("rel", "pair", "pair+u", "sts+rel")
MODELS = ("lr", "mlp")
RULES = {"keep99": 0.01, "keep95": 0.05, "keep90": 0.10}
#: Cut rules read on the OTHER tuning sets (leave one set out; the model stays the corpus's):
#: benchmarks.stance_gate_experiment.choose's keep99, budget and joint.
LOSO_RULES = ("keep99", "budget", "joint")
CUT_GRID = tuple(x / 200 for x in range(0, 200))
NEAR = 0.65


@dataclass(frozen=True)
class Caption:
    claim: str
    label: int  # 1: spreads the claim, 0: on-topic negative
    kind: str  # spread, debunk, question, news, related
    language: str
    text: str


@dataclass(frozen=True)
class Pairs:
    """Captions with, per space, the caption's vector u and its narrative's nearest example's vector v."""

    labels: np.ndarray
    groups: np.ndarray
    u: dict[str, np.ndarray]
    v: dict[str, np.ndarray]

    def take(self, keep: np.ndarray) -> Pairs:
        return Pairs(
            self.labels[keep],
            self.groups[keep],
            {k: x[keep] for k, x in self.u.items()},
            {k: x[keep] for k, x in self.v.items()},
        )


def load_corpus(path: Path = CORPUS) -> tuple[dict[str, list[str]], list[Caption]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    examples = {c["id"]: list(c["examples"]) for c in raw["claims"]}
    captions = [
        Caption(c["id"], 1, "spread", lang, text) for c in raw["claims"] for lang, text in c["spread"]
    ]
    captions += [
        Caption(c["id"], 0, kind, lang, text) for c in raw["claims"] for kind, lang, text in c["negatives"]
    ]
    return examples, captions


def _nearest(u: np.ndarray, bank: np.ndarray) -> np.ndarray:
    return bank[np.argmax(u @ bank.T, axis=1)]


def corpus_pairs(
    examples: dict[str, list[str]], captions: Sequence[Caption], query: object, sts: DiskCachedEncoder
) -> Pairs:
    """Each caption paired with its own claim's bank (cleaned examples and role rewrites, as the matcher
    builds a narrative's examples), nearest example per space."""
    derived = derived_texts(examples, None)
    context = [(caption_parts(c.text) or [c.text])[0] for c in captions]
    u_q = query.encode(context).astype(np.float64)  # type: ignore[attr-defined]
    u_s = sts.encode(context).astype(np.float64)
    documents = query.documents  # type: ignore[attr-defined]
    v_q = np.zeros_like(u_q)
    v_s = np.zeros_like(u_s)
    claims = np.array([c.claim for c in captions])
    banks = {claim: derived[claim]["cleaned"] + derived[claim]["roles"] for claim in examples}
    everything = [t for bank in banks.values() for t in bank]  # one batch per model
    d_all = dict(zip(everything, documents.encode(everything).astype(np.float64), strict=True))
    s_all = dict(zip(everything, sts.encode(everything).astype(np.float64), strict=True))
    for claim, bank in banks.items():
        rows = claims == claim
        v_q[rows] = _nearest(u_q[rows], np.stack([d_all[t] for t in bank]))
        v_s[rows] = _nearest(u_s[rows], np.stack([s_all[t] for t in bank]))
    names = sorted(examples)
    groups = np.array([names.index(c.claim) for c in captions])
    labels = np.array([c.label for c in captions])
    return Pairs(labels, groups, {"sts": u_s, "query": u_q}, {"sts": v_s, "query": v_q})


def set_pairs(s: SetData, group: int, near: float | None) -> Pairs:
    """A tuning set's captions paired with the nearest example of the narrative the matcher ranks first;
    with `near`, only the captions it scores >= near (positives only where it picks their own narrative)."""
    f = s.features
    u = {"sts": f["sts"], "query": f["query"]}
    v = {"sts": f["sts"] - f["sts-rel"], "query": f["query"] - f["query-rel"]}
    pairs = Pairs(s.labels, np.full(len(s.labels), group), u, v)
    if near is None:
        return pairs
    keep = (s.rows.best >= near) & ((s.rows.truth < 0) | (s.rows.top == s.rows.truth))
    return pairs.take(keep)


def featurize(pairs: Pairs, space: str, feature: str) -> np.ndarray:
    if space == "both":
        return np.hstack([featurize(pairs, s, feature) for s in SPACES])
    u, v = pairs.u[space], pairs.v[space]
    if feature == "rel":
        return u - v
    if feature == "pair":
        return np.hstack([u * v, np.abs(u - v)])
    if feature == "pair+u":
        return np.hstack([u, u * v, np.abs(u - v)])
    return np.hstack([u, u - v])


def concat(items: Sequence[Pairs]) -> Pairs:
    return Pairs(
        np.concatenate([p.labels for p in items]),
        np.concatenate([p.groups for p in items]),
        {k: np.vstack([p.u[k] for p in items]) for k in SPACES},
        {k: np.vstack([p.v[k] for p in items]) for k in SPACES},
    )


def make_model(kind: str, c: float) -> ClassifierMixin:
    if kind == "lr":
        return LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    return MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-2, max_iter=400, random_state=0)


def oof(pairs: Pairs, x: np.ndarray, build: Callable[[], ClassifierMixin], folds: int = 5) -> np.ndarray:
    """Out-of-fold probabilities, folds grouped (by claim / by set)."""
    out = np.zeros(len(x))
    for train, test in GroupKFold(n_splits=folds).split(x, pairs.labels, pairs.groups):
        model = build().fit(x[train], pairs.labels[train])
        out[test] = model.predict_proba(x[test])[:, 1]
    return out


def cut_for(probability: np.ndarray, labels: np.ndarray, refuse: float) -> float:
    """The highest cut that refuses at most `refuse` of the positives."""
    kept = probability[labels == 1]
    return max((c for c in CUT_GRID if (kept < c).mean() <= refuse), default=0.0)


def hit_auc(s: SetData, probability: np.ndarray) -> float | None:
    """AUC between the captions the matcher gets right and the negatives it flags (threshold 0.74)."""
    rows = s.rows
    hit = (rows.best >= SHIPPED_THRESHOLD) & (rows.best - rows.second >= MARGIN)
    right = hit & (rows.truth >= 0) & (rows.top == rows.truth)
    flagged = hit & (rows.truth < 0)
    if not right.any() or not flagged.any():
        return None
    keep = right | flagged
    return float(roc_auc_score(right[keep].astype(int), probability[keep]))


def kinds_refused(captions: Sequence[Caption], probability: np.ndarray, cut: float) -> str:
    cells = []
    for kind in ("spread", "debunk", "question", "news", "related"):
        rows = np.array([c.kind == kind for c in captions])
        cells.append(f"{kind} {int((probability[rows] < cut).sum())}/{int(rows.sum())}")
    return "refused on the corpus (out of fold): " + ", ".join(cells)


def show(s: SetData, probability: np.ndarray, cut: float) -> None:
    """The set's flagged negatives (kept or refused) and the right positives the gate refuses."""
    data = load_dataset(dataset_path(s.name))
    raw = [t for _, _, t in data.positives] + [t for _, t in data.negatives]
    rows = s.rows
    hit = (rows.best >= SHIPPED_THRESHOLD) & (rows.best - rows.second >= MARGIN)
    print(f"== {s.name}, cut {cut:.3f}")
    for i in np.flatnonzero(hit):
        positive = rows.truth[i] >= 0
        if positive and (rows.top[i] != rows.truth[i] or probability[i] >= cut):
            continue
        verdict = "kept" if probability[i] >= cut else "REFUSED"
        print(f"  {'positive' if positive else 'negative'} {verdict:7s} p {probability[i]:.2f} {raw[i]}")


def table(names: Sequence[str], summary: Sequence[tuple[str, Sequence[Counts]]]) -> None:
    print("\nPer set: recall% / flagged / wrong (threshold 0.74)")
    print(f"{'variant':40s} " + " ".join(f"{n.replace('heldout-', ''):>12s}" for n in names) + "  pooled")
    for label, counts in summary:
        cells = " ".join(f"{c.right / c.positives:5.1%}/{c.flags:>3d}/{c.wrong}".rjust(12) for c in counts)
        print(f"{label:40s} {cells}  {total(counts).line()}", flush=True)


def timing(pairs: Pairs, space: str, feature: str, kind: str, c: float) -> None:
    """Median CPU seconds per caption: the gate's features and prediction, one caption at a time; and, for
    the sts space, one EmbeddingGemma pass without a prompt (uncached) of a caption."""
    x = featurize(pairs, space, feature)
    model = make_model(kind, c).fit(x, pairs.labels)
    single = pairs.take(np.arange(1))
    samples = []
    for _ in range(300):
        start = time.process_time()
        model.predict_proba(featurize(single, space, feature))
        samples.append(time.process_time() - start)
    print(f"gate {space} {feature} {kind}: {np.median(samples) * 1e3:.3f} ms CPU per caption (median of 300)")
    encoder = _single("embeddinggemma")
    encoder.encode(["warm up"])
    texts = [f"Caption number {i}: the bridge fell into the bay during the storm" for i in range(20)]
    samples = []
    for t in texts:
        start = time.process_time()
        encoder.encode([t])
        samples.append(time.process_time() - start)
    print(
        "one STS pass of a caption (EmbeddingGemma, no prompt): "
        f"{np.median(samples) * 1e3:.1f} ms CPU (median of 20)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/misinfo-monitor/bench-embeddings"))
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=CHOICES)
    parser.add_argument("--features", nargs="+", default=list(FEATURES), choices=FEATURES)
    parser.add_argument("--models", nargs="+", default=["lr"], choices=MODELS)
    parser.add_argument("--c", type=float, nargs="+", default=[1.0])
    parser.add_argument(
        "--flag-budget", type=float, default=0.01, help="flags allowed by the LOSO budget and joint cuts"
    )
    parser.add_argument("--with-tuning", action="store_true", help="also corpus + other tuning sets (LOSO)")
    parser.add_argument(
        "--show", nargs="+", default=[], help="tuning sets whose flags to list (first variant, corpus keep99)"
    )
    parser.add_argument("--timing", action="store_true", help="only the CPU cost of the gate")
    args = parser.parse_args(argv)

    examples, captions = load_corpus(args.corpus)
    query, caches = cached_encoder("embeddinggemma", args.cache)
    sts = DiskCachedEncoder(_single("embeddinggemma"), "embeddinggemma", args.cache)
    corpus = corpus_pairs(examples, captions, query, sts)
    for cache in [*caches, sts]:
        cache.save()
    print(
        f"corpus: {len(examples)} claims, {int(corpus.labels.sum())} spreading, "
        f"{int((corpus.labels == 0).sum())} negative captions",
        flush=True,
    )
    if args.timing:
        timing(corpus, args.spaces[0], args.features[0], args.models[0], args.c[0])
        return 0
    sets, _ = collect(args.cache)
    names = [s.name for s in sets]
    shipped = [counts_at(s.rows, SHIPPED_THRESHOLD) for s in sets]
    summary: list[tuple[str, list[Counts]]] = [("shipped 0.74 (no gate)", shipped)]

    variants = [
        (space, feature, kind, c)
        for space in args.spaces
        for feature in args.features
        for kind in args.models
        for c in (args.c if kind == "lr" else [0.0])
    ]
    for space, feature, kind, c in variants:
        name = f"{space} {feature} {kind}" + (f" C={c:g}" if kind == "lr" else "")
        x = featurize(corpus, space, feature)
        build = functools.partial(make_model, kind, c)
        probability = oof(corpus, x, build)
        auc = roc_auc_score(corpus.labels, probability)
        cuts = {rule: cut_for(probability, corpus.labels, refuse) for rule, refuse in RULES.items()}
        model = build().fit(x, corpus.labels)
        per_set = [model.predict_proba(featurize(set_pairs(s, 0, None), space, feature))[:, 1] for s in sets]
        aucs = [hit_auc(s, p) for s, p in zip(sets, per_set, strict=True)]
        print(
            f"\n{name}: corpus CV AUC {auc:.3f}; cuts " + ", ".join(f"{r} {v:.3f}" for r, v in cuts.items())
        )
        print("  " + kinds_refused(captions, probability, cuts["keep95"]) + " (keep95)")
        print(
            "  AUC right vs flagged at 0.74: "
            + " ".join(
                f"{n.replace('heldout-', '')} {'-' if a is None else f'{a:.2f}'}"
                for n, a in zip(names, aucs, strict=True)
            ),
            flush=True,
        )
        for name_shown in args.show if (space, feature, kind, c) == variants[0] else []:
            k = names.index(name_shown)
            show(sets[k], per_set[k], cuts["keep99"])
        for rule, cut in cuts.items():
            counts = [gated(s.rows, p, SHIPPED_THRESHOLD, cut) for s, p in zip(sets, per_set, strict=True)]
            summary.append((f"{name} {rule}", counts))
            print(f"  {rule}: pooled {total(counts).line()}", flush=True)
        for rule in LOSO_RULES:
            counts = []
            for k, s in enumerate(sets):
                items = [(t.rows, per_set[j]) for j, t in enumerate(sets) if j != k]
                threshold, cut = choose(items, rule, args.flag_budget)
                counts.append(gated(s.rows, per_set[k], threshold, cut))
                line = counts[-1].line()
                print(f"    {name} LOSO {rule} {s.name:11s} t {threshold:.3f} cut {cut:.3f}: {line}")
            summary.append((f"{name} LOSO-cut {rule}", counts))
            print(f"  LOSO-cut {rule}: pooled {total(counts).line()}", flush=True)
        if not args.with_tuning:
            continue
        results: dict[str, list[Counts]] = {rule: [] for rule in RULES}
        for k, s in enumerate(sets):
            pool = concat(
                [Pairs(corpus.labels, corpus.groups % 5, corpus.u, corpus.v)]
                + [set_pairs(t, 5 + j, NEAR) for j, t in enumerate(sets) if j != k]
            )
            xp = featurize(pool, space, feature)
            probability = oof(pool, xp, build)
            fitted = build().fit(xp, pool.labels)
            p = fitted.predict_proba(featurize(set_pairs(s, 0, None), space, feature))[:, 1]
            for rule, refuse in RULES.items():
                cut = cut_for(probability, pool.labels, refuse)
                results[rule].append(gated(s.rows, p, SHIPPED_THRESHOLD, cut))
                print(
                    f"    +tuning {name} {rule} {s.name:11s} cut {cut:.3f}: {results[rule][-1].line()}",
                    flush=True,
                )
        for rule in RULES:
            summary.append((f"+tuning LOSO {name} {rule}", results[rule]))
    table(names, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
