"""Per-caption decisions of the settings' caption model on the tuning sets, to compare two code versions.

A speed change to a caption model (its runtime, batching, the screen) must not change what it decides.
`--out FILE` writes every caption's decision (narrative or none) and fused score on each tuning set
(benchmarks.narratives.TUNING_DATA, never a blind set); `--compare A B` prints how many decisions differ
and the largest score difference. Vectors are embedded afresh (a temporary bank directory), so a cached
vector of the other version cannot hide a difference.

    PYTHONPATH=$PWD python -m benchmarks.narrative_decisions --out /tmp/before.json
    (change the code)
    PYTHONPATH=$PWD python -m benchmarks.narrative_decisions --out /tmp/after.json
    python -m benchmarks.narrative_decisions --compare /tmp/before.json /tmp/after.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.narratives import DEV_CANDIDATES, NAMED_DATA, TUNING_DATA, load_dataset
from monitor.narratives.encoders import exact_of, views_of
from monitor.narratives.matcher import load_encoder
from monitor.pipeline import make_narrative_matcher
from monitor.settings import load_settings


def tuning_paths() -> dict[str, Path]:
    """The distinct tuning sets by file ("heldout" and "heldout-v3" are one file); dev where it exists."""
    paths: dict[str, Path] = {}
    for name in TUNING_DATA:
        if name == "dev":
            found = next((p for p in DEV_CANDIDATES if p.exists()), None)
            if found is not None:
                paths.setdefault(str(found), found)
        else:
            paths.setdefault(str(NAMED_DATA[name]), NAMED_DATA[name])
    return {p.name: p for p in paths.values()}


def decisions() -> dict[str, Any]:
    settings = load_settings()
    encoder = load_encoder(settings.narrative_model)
    asked = {"texts": 0, "counting": False}
    for view in views_of(encoder):
        reference = exact_of(view.encoder)
        if reference is not view.encoder:  # count the close calls taken again on the reference

            def counted(texts: Sequence[str], _encode: Any = reference.encode) -> Any:
                asked["texts"] += len(texts) if asked["counting"] else 0
                return _encode(texts)

            reference.encode = counted  # type: ignore[method-assign]
    out: dict[str, Any] = {"model": settings.narrative_model, "sets": {}}
    with tempfile.TemporaryDirectory() as bank_dir:
        for name, path in tuning_paths().items():
            data = load_dataset(path)
            texts = [t for _, _, t in data.positives] + [t for _, t in data.negatives]
            matcher = make_narrative_matcher(settings, encoder, data.examples, bank_dir=Path(bank_dir))
            start = time.process_time()
            asked["counting"], asked["texts"] = True, 0
            found = matcher.match_many(texts)
            asked["counting"] = False
            took = time.process_time() - start
            out["sets"][name] = [[d.narrative_id, d.score] if d else [None, 0.0] for d in found]
            matched = sum(d is not None for d in found)
            print(
                f"{name}: {len(texts)} captions, {matched} matched, {took:.1f} s CPU; "
                f"{asked['texts']} texts of close calls embedded again by a reference model"
            )
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> str:
    differ = total = 0
    largest = 0.0
    for name, rows in before["sets"].items():
        for (a_id, a_score), (b_id, b_score) in zip(rows, after["sets"][name], strict=True):
            total += 1
            differ += a_id != b_id
            if a_id is not None and a_id == b_id:
                largest = max(largest, abs(a_score - b_score))
    return f"{differ} of {total} decisions differ; largest score difference of a shared match {largest:.6f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="write this code's decisions here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.compare:
        before, after = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        print(compare(before, after))
        return 0
    if args.out is None:
        parser.error("--out or --compare")
    args.out.write_text(json.dumps(decisions()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
