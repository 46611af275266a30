"""Fit the shipped stance gate (monitor/narratives/stance_gate.py) from the hand-written corpus.

    HF_HUB_OFFLINE=1 python -m benchmarks.stance_gate_fit          # writes the shipped gate's file
    HF_HUB_OFFLINE=1 python -m benchmarks.stance_gate_fit --check  # refits, compares with the shipped file

The file: monitor/narratives/stance_gate_embeddinggemma.json.

Needs the fetched model (`monitor models fetch embeddinggemma`) and scikit-learn (a maintainer's tool, not
a dependency of the monitor).

What it fits: each caption of benchmarks/data/stance-train.json (label 1: spreads its claim; 0: an on-topic
caption that does not) paired with its own claim, the claims banked as narratives with their examples;
the features are exactly what the matcher reads at run time (`NarrativeMatcher.gate_inputs`: the
caption's query vector, the document vector of the claim's example nearest to it; the caption's first
part, as `caption_parts` gives it), [u, u*v, |u-v|]; L2 logistic regression, C = 1, balanced classes.
The cut: the highest (on a grid of 1/200) that refuses at most 1 % of the spreading captions' out-of-fold
probabilities, 5 folds grouped by claim (a claim's captions are never scored by a model fitted on them).
That is the variant `query pair+u C=1 keep99 (corpus)` of docs/stance-corpus-experiment.md, chosen there
on the tuning sets only (no tuning set is fitted on).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

from benchmarks.stance_corpus_experiment import CORPUS, load_corpus
from monitor.bank.store import NarrativeExample
from monitor.narratives.encoders import GEMMA, load_encoder
from monitor.narratives.matcher import NarrativeMatcher
from monitor.narratives.stance_gate import StanceGate, gate_path
from monitor.narratives.text import caption_parts

C = 1.0
REFUSE = 0.01
FOLDS = 5
CUT_GRID = tuple(x / 200 for x in range(200))


def features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u, v = u.astype(np.float64), v.astype(np.float64)
    return np.hstack([u, u * v, np.abs(u - v)])


def model() -> LogisticRegression:
    return LogisticRegression(C=C, class_weight="balanced", max_iter=5000)


def fit(model_name: str = GEMMA) -> tuple[dict[str, object], StanceGate]:
    examples, captions = load_corpus()
    bank = [NarrativeExample(claim, text) for claim, texts in examples.items() for text in texts]
    # no decoys and no gate: only the examples' vectors are read
    matcher = NarrativeMatcher(
        load_encoder(model_name), bank, 0.74, retrieval_story_weight=0.0, stance_lead=None, stance_gate=False
    )
    texts = [(caption_parts(c.text) or [c.text])[0] for c in captions]
    u, v = matcher.gate_inputs(texts, [c.claim for c in captions])
    x = features(u, v)
    labels = np.array([c.label for c in captions])
    groups = np.array([sorted(examples).index(c.claim) for c in captions])
    out_of_fold = np.zeros(len(x))
    for train, test in GroupKFold(n_splits=FOLDS).split(x, labels, groups):
        out_of_fold[test] = model().fit(x[train], labels[train]).predict_proba(x[test])[:, 1]
    spread = out_of_fold[labels == 1]
    cut = max((c for c in CUT_GRID if (spread < c).mean() <= REFUSE), default=0.0)
    final = model().fit(x, labels)
    weights = final.coef_[0]
    gate = StanceGate(weights.astype(np.float64), float(final.intercept_[0]), cut)
    document: dict[str, object] = {
        "about": "The stance gate of monitor/narratives/stance_gate.py (benchmarks/stance_gate_fit.py).",
        "model": model_name,
        "precision": getattr(matcher.encoder, "precision", None),
        "corpus_sha256": hashlib.sha256(CORPUS.read_bytes()).hexdigest(),
        "captions": {"spread": int(labels.sum()), "on_topic": int((labels == 0).sum())},
        "features": "[u, u*v, |u-v|]: u the caption's query vector, v its claim's nearest example's",
        "c": C,
        "out_of_fold_auc": round(float(roc_auc_score(labels, out_of_fold)), 4),
        "out_of_fold_refused": {
            "spread": round(float((spread < cut).mean()), 4),
            "on_topic": round(float((out_of_fold[labels == 0] < cut).mean()), 4),
        },
        "cut": cut,
        "bias": float(final.intercept_[0]),
        "weights": [float(f"{w:.7g}") for w in weights],
    }
    return document, gate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=GEMMA)
    parser.add_argument("--check", action="store_true", help="compare with the shipped file, write nothing")
    args = parser.parse_args(argv)
    document, gate = fit(args.model)
    path = gate_path(args.model)
    summary = {k: v for k, v in document.items() if k != "weights"}
    print(json.dumps(summary, indent=1))
    if args.check:
        shipped = StanceGate.read(path)
        drift = float(np.max(np.abs(shipped.weights - gate.weights)))
        print(f"largest weight difference {drift:.2e}; cut shipped {shipped.cut} refit {gate.cut}")
        return 0 if shipped.cut == gate.cut and drift < 1e-3 else 1
    path.write_text(json.dumps(document, indent=None) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
