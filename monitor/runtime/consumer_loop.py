"""What the worker's own consumer loops share (analysis of `posts`, Slack delivery of `alerts`).

Both run beside Faust with a plain aiokafka consumer in a group of their own and explicit commits; both
must survive the broker going away (restart after a pause, uncommitted records are read again), report
their consumer lag, and stop with the worker after finishing the work in hand. `ConsumerLoop` holds that
wiring once; a subclass says what one session does with its consumer and what happens on a rebalance.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, cast

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from monitor.runtime import groups
from monitor.runtime.metrics import Metrics
from monitor.runtime.topics import bootstrap_servers
from monitor.settings import Settings

RESTART_PAUSE = 5.0
LAG_EVERY = 5.0
"""Seconds between two lag reports of a loop: each costs a position look-up per partition."""


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


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, loop: ConsumerLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        forget_lag(self.loop.metrics, revoked)
        await self.loop.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.loop.on_assigned(set(assigned))


class ConsumerLoop(abc.ABC):
    """One worker's reader of one topic in the group `<app id>-<group_suffix>`; `run` until `stop`.

    A session is one consumer (and whatever the subclass opens beside it) from start to failure or stop;
    `run` starts a new session after a failure, so uncommitted records are read again.
    """

    group_suffix: ClassVar[str]
    what: ClassVar[str]
    """Names the loop in the log line of a restart."""
    stop_timeout: ClassVar[float]
    """How long a stopping worker waits for the work in hand."""
    log: ClassVar[logging.Logger]

    def __init__(self, settings: Settings, metrics: Metrics, topic: str) -> None:
        self.settings = settings
        self.metrics = metrics
        self.topic = topic
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._lag_reported = 0.0

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def register(self, app: faust.App) -> None:
        """Start the loop with the worker; stop it, work in hand finished, before the worker goes."""
        run_beside(app, self.run, self.stop)

    async def run(self) -> None:
        """Read until stopped; a failure of a session (say, the broker gone) restarts it after a pause."""
        try:
            await run_until_stopped(self._session, self._stopping, self.log, self.what)
        finally:
            self.finished()
            self._finished.set()

    async def stop(self) -> None:
        """Finish the work in hand (see `interrupt`), then leave the group."""
        self._stopping.set()
        self.interrupt()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), self.stop_timeout)

    def consumer_options(self) -> dict[str, Any]:
        """aiokafka consumer settings beyond the common ones."""
        return {}

    def new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(self.settings.broker),
            group_id=f"{self.settings.app_id}-{self.group_suffix}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **{**groups.consumer_options(self.settings), **self.consumer_options()},
        )

    async def _session(self) -> None:
        consumer = self.new_consumer()
        try:
            await self.open_session()
            consumer.subscribe([self.topic], listener=_Rebalance(self))
            await consumer.start()
            await self.consume(consumer)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            await self.close_session()

    async def report_lag(self, consumer: Any) -> None:
        """The lag of this loop's partitions, at most every LAG_EVERY seconds."""
        now = time.monotonic()
        if now - self._lag_reported >= LAG_EVERY:
            self._lag_reported = now
            await report_lag(consumer, self.metrics)

    # --- what a subclass says -------------------------------------------------------------------------

    @abc.abstractmethod
    async def consume(self, consumer: Any) -> None:
        """One session's work with a started consumer, until `stopping` (or a failure)."""

    async def open_session(self) -> None:  # noqa: B027  (an optional hook)
        """Open what a session needs beside its consumer (a producer, say), before the consumer starts."""

    async def close_session(self) -> None:  # noqa: B027  (an optional hook)
        """Close what `open_session` opened, after the consumer stopped; must not raise."""

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:  # noqa: B027  (an optional hook)
        """The group gave this loop these partitions."""

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:  # noqa: B027  (an optional hook)
        """These partitions are moving (their lag is already forgotten)."""

    def interrupt(self) -> None:  # noqa: B027  (an optional hook)
        """`stop` was called: cut short any waiting that would delay the end of the work in hand."""

    def finished(self) -> None:  # noqa: B027  (an optional hook)
        """The loop ended for good: release what lives across sessions."""
