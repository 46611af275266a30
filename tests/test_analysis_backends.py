"""Analysis in processes (monitor/runtime/analysis_pool.py): the same results as in a thread, metrics
that reach the worker, and a process that dies costs its batch, not the worker."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from monitor.bank.store import add_images
from monitor.ingest.events import EventLimits, decode_event
from monitor.ingest.loading import ImageLoader
from monitor.models import LoadedImage, Post
from monitor.runtime import analysis_pool
from monitor.runtime.analysis_pool import (
    READY_LINE,
    AnalysisProcessDied,
    AnalyzerHolder,
    ProcessAnalysis,
    Telemetry,
    ThreadAnalysis,
)
from monitor.runtime.metrics import Metrics
from monitor.settings import Settings
from tests.support.poison import TINY_BROKEN_PNG, image_flood

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


async def in_thread_and_processes(
    settings: Settings,
    posts: list[Post],
    images: list[list[LoadedImage]],
    processes: int,
    thread_metrics: Metrics | None = None,
    process_metrics: Metrics | None = None,
) -> tuple[list[object], list[object]]:
    """The same batch analysed in a thread and in `processes` processes: (thread's, processes')."""
    thread = ThreadAnalysis.for_settings(settings, Metrics() if thread_metrics is None else thread_metrics)
    pool = ProcessAnalysis(settings, processes, Metrics() if process_metrics is None else process_metrics)
    try:
        return await thread.run(posts, images), await pool.run(posts, images)
    finally:
        thread.close()
        pool.close()


def test_processes_give_what_a_thread_gives_and_report_their_metrics(bank_dir: Path) -> None:
    settings = Settings(bank=bank_dir)
    posts, images = batch()
    thread_metrics, process_metrics = Metrics(), Metrics()

    in_thread, in_process = asyncio.run(
        in_thread_and_processes(settings, posts, images, 2, thread_metrics, process_metrics)
    )
    assert in_process == in_thread
    assert [a.images[0].bank_match is not None for a in in_process[:3]] == [True, False, False]
    text = process_metrics.exposition().decode()
    assert 'monitor_stage_duration_seconds_count{stage="decode"} 3.0' in text
    assert 'monitor_bank_entries{kind="images"} 1.0' in text


def test_posts_with_inline_pictures_come_out_of_a_process_as_out_of_a_thread(bank_dir: Path) -> None:
    settings = Settings(bank=bank_dir)
    pictures = [jpeg(skdata.astronaut(), (300, 300), quality=60), jpeg(skdata.coffee(), (400, 300))]
    events = [
        {
            "post_id": f"p{i}",
            "author_id": "a",
            "created_at": "2024-01-01T00:00:00Z",
            "text": "look at this",
            "images": [{"data": base64.b64encode(picture).decode()}],
        }
        for i, picture in enumerate(pictures)
    ]
    posts = [decode_event(json.dumps(e).encode())[0] for e in events]
    loader = ImageLoader(None)

    images = asyncio.run(loader.load_many(posts))
    in_thread, in_process = asyncio.run(in_thread_and_processes(settings, posts, images, 1))
    assert in_process == in_thread
    assert [a.images[0].bank_match is not None for a in in_process] == [True, False]


def test_an_analysis_process_warms_up_before_its_first_batch_and_the_warm_up_leaves_no_trace(
    bank_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(bank=bank_dir)
    posts, images = batch()
    metrics = Metrics()

    async def first_batch() -> list[object]:
        analysis = ProcessAnalysis(settings, 1, metrics)
        try:
            return list(await analysis.run(posts, images))
        finally:
            analysis.close()

    analyzed = asyncio.run(first_batch())
    ready = [line for line in capfd.readouterr().err.splitlines() if READY_LINE in line]
    assert len(ready) == 1, ready
    assert analyzed == AnalyzerHolder(settings, Telemetry()).analyze(posts, images)  # as if never warmed
    text = metrics.exposition().decode()
    assert 'monitor_stage_duration_seconds_count{stage="decode"} 3.0' in text  # the batch's only


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


def flood() -> tuple[list[Post], list[list[LoadedImage]]]:
    raw = json.dumps(image_flood("flood", "2024-01-01T00:00:00Z")).encode()
    post, _ = decode_event(raw, limits=EventLimits(max_images=20_000))  # ingest's own bound lifted
    return [post], [[LoadedImage(TINY_BROKEN_PNG)] * len(post.images)]


def test_a_warning_repeated_for_20000_images_is_logged_once_with_its_count_in_a_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    posts, images = flood()
    analysis = ThreadAnalysis.for_settings(Settings(), Metrics())
    try:
        with caplog.at_level(logging.WARNING):
            analyzed = asyncio.run(analysis.run(posts, images))
    finally:
        analysis.close()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(analysis_pool._thread_repeats)
    assert len(analyzed[0].images) == 20_000
    lines = [r.getMessage() for r in caplog.records if r.name == "monitor.provenance.markers"]
    assert len(lines) == 2, lines[:5]
    assert lines[0].startswith("provenance: png:")
    assert lines[1].startswith("... and 19999 more like it in this batch, the last: provenance: png:")


def test_a_warning_repeated_for_20000_images_is_logged_once_with_its_count_in_a_process(
    capfd: pytest.CaptureFixture[str],
) -> None:
    posts, images = flood()

    async def twice() -> None:
        analysis = ProcessAnalysis(Settings(), 1, Metrics())
        try:
            for _ in range(2):  # a batch read again logs again: once, with its count
                await analysis.run(posts, images)
        finally:
            analysis.close()

    asyncio.run(twice())
    lines = [line for line in capfd.readouterr().err.splitlines() if "monitor.provenance.markers" in line]
    assert len(lines) == 4, lines[:5]
    assert sum("... and 19999 more like it in this batch" in line for line in lines) == 2
