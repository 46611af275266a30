"""What the worker's own consumer loops share (analysis of `posts`, Slack delivery of `alerts`).

Both run beside Faust with a plain aiokafka consumer and explicit commits; both must survive the broker
going away (restart after a pause, uncommitted records are read again) and report their consumer lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
from aiokafka.errors import KafkaError

from monitor.runtime.metrics import Metrics

RESTART_PAUSE = 5.0


async def run_until_stopped(
    run_once: Callable[[], Awaitable[None]], stopping: asyncio.Event, log: logging.Logger, what: str
) -> None:
    """Call `run_once` until `stopping` is set; a failure (say, the broker gone) restarts it after a pause."""
    while not stopping.is_set():
        try:
            await run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; restarting it", what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), RESTART_PAUSE)


async def report_lag(consumer: Any, metrics: Metrics) -> None:
    """Lag per assigned partition: the end offset minus the consumer's position."""
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        with contextlib.suppress(KafkaError, AssertionError):
            position = await consumer.position(tp)
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))


def forget_lag(metrics: Metrics, revoked: Any) -> None:
    """Partitions that moved are their new owner's to report."""
    for tp in revoked:
        with contextlib.suppress(KeyError):
            metrics.consumer_lag.remove(tp.topic, str(tp.partition))


Loop = Callable[[], Awaitable[None]]


def run_beside(app: faust.App, run: Loop, stop: Loop) -> None:
    """Start a loop with the worker and stop it (work in hand finished) before the worker's services go."""
    app.task(run)

    async def finish(sender: Any, *args: Any, **kwargs: Any) -> None:
        await stop()

    app.on_before_shutdown.connect(cast(Any, finish))
