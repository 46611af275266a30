"""Analysis in processes (monitor/runtime/analysis_pool.py): the same results as in a thread, metrics
that reach the worker, and a process that dies costs its batch, not the worker."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from monitor.bank.store import add_images
from monitor.models import LoadedImage, Post
from monitor.runtime.analysis_pool import AnalysisProcessDied, ProcessAnalysis, ThreadAnalysis
from monitor.runtime.metrics import Metrics
from monitor.settings import Settings

T0 = 1_700_000_000.0


def jpeg(array: object, size: tuple[int, int], quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).resize(size).save(buffer, format="JPEG", quality=quality)  # type: ignore[arg-type]
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bank")
    source = directory / "astronaut.jpg"
    source.write_bytes(jpeg(skdata.astronaut(), (512, 512)))
    add_images(directory, "astronaut-fake", [source], label="a known fake")
    return directory


def batch() -> tuple[list[Post], list[list[LoadedImage]]]:
    pictures = [
        jpeg(skdata.astronaut(), (300, 300), quality=60),  # a re-upload of the banked fake
        jpeg(skdata.coffee(), (400, 300)),
        jpeg(skdata.chelsea(), (300, 200)),
    ]
    posts = [Post(f"p{i}", "a", T0 + i, text=f"post {i}") for i in range(len(pictures) + 1)]
    images = [[LoadedImage(data)] for data in pictures] + [[LoadedImage(None, error="fetch failed: 404")]]
    return posts, images


def test_processes_give_what_a_thread_gives_and_report_their_metrics(bank_dir: Path) -> None:
    settings = Settings(bank=bank_dir)
    posts, images = batch()
    thread_metrics, process_metrics = Metrics(), Metrics()

    async def both() -> tuple[list[object], list[object]]:
        thread = ThreadAnalysis.for_settings(settings, thread_metrics)
        processes = ProcessAnalysis(settings, 2, process_metrics)
        try:
            return await thread.run(posts, images), await processes.run(posts, images)
        finally:
            thread.close()
            processes.close()

    in_thread, in_process = asyncio.run(both())
    assert in_process == in_thread
    assert [a.images[0].bank_match is not None for a in in_process[:3]] == [True, False, False]
    text = process_metrics.exposition().decode()
    assert 'monitor_stage_duration_seconds_count{stage="decode"} 3.0' in text
    assert 'monitor_bank_entries{kind="images"} 1.0' in text


def test_a_dead_analysis_process_fails_its_batch_and_the_pool_comes_back(bank_dir: Path) -> None:
    settings = Settings(bank=bank_dir)
    posts, images = batch()

    async def scenario() -> None:
        analysis = ProcessAnalysis(settings, 1, Metrics())
        try:
            await analysis.run(posts, images)  # started and warm
            pids = list(analysis._pool._processes)  # the test plays the crashing decoder
            # 120 distinct noise pictures: seconds of work, still pending when the process dies.
            rng = np.random.default_rng(7)
            noise = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(120)]
            fresh = [[LoadedImage(jpeg(picture, (320, 240)))] for picture in noise]
            many = [Post(f"m{i}", "a", T0 + i) for i in range(len(fresh))]
            running = asyncio.ensure_future(analysis.run(many, fresh))
            await asyncio.sleep(0.05)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(AnalysisProcessDied):
                await running
            again = await analysis.run(posts, images)
            assert [a.post_id for a in again] == [p.post_id for p in posts]
        finally:
            analysis.close()

    asyncio.run(scenario())
