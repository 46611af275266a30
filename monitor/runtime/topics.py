"""Create the project's Kafka topics explicitly, with one partition count for sources and changelogs.

The broker runs with `auto.create.topics.enable=false`: a topic created implicitly would get the broker's
default partition count, and the tracker's state changelog must be partitioned like `sightings` (partition
p of one holds the state of partition p of the other). Creating everything here, idempotently, keeps that
under our control.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from monitor.settings import Settings


class BrokerUnavailable(ConnectionError):
    """Kafka cannot be reached at the configured address: a setting or an outage, not a bug."""


STATE_TABLE = "state"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def bootstrap_servers(broker: str) -> str:
    """`kafka://host:port[;kafka://host2:port]` (Faust's form) -> `host:port,host2:port` (aiokafka's)."""
    servers = []
    for part in broker.replace(";", ",").split(","):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        if part:
            servers.append(part)
    return ",".join(servers)


def state_topic(settings: Settings) -> str:
    """The tracker's state, key by key, written in its transactions (monitor/runtime/tracking_loop.py).

    The name is the one Faust gave the changelog of the tracker's table before, so an existing
    deployment's state restores as it is."""
    return f"{settings.app_id}-{STATE_TABLE}-changelog"


def delivered_topic(settings: Settings) -> str:
    """Alert ids Slack accepted (monitor/runtime/delivery.py), so no alert is posted twice."""
    return f"{settings.app_id}-slack-delivered"


def representatives_topic(settings: Settings) -> str:
    """Every live cluster's representative, keyed by cluster id, read by every analysis worker when
    tracking is partitioned (monitor/runtime/representatives.py). One partition: each worker reads all."""
    return f"{settings.app_id}-cluster-representatives"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.partitions
    keep_forever = {"retention.ms": "-1"}
    # Replayed posts carry old timestamps; time-based retention would delete them at once.
    return [
        TopicSpec(settings.posts_topic, n, keep_forever),
        TopicSpec(settings.sightings_topic, n, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
        TopicSpec(settings.dlq_topic, n, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
        TopicSpec(settings.alerts_topic, n, keep_forever),
        TopicSpec(state_topic(settings), n, {"cleanup.policy": "compact"}),
        TopicSpec(delivered_topic(settings), 1, {"cleanup.policy": "compact"}),
        TopicSpec(representatives_topic(settings), 1, {"cleanup.policy": "compact"}),
    ]


async def ensure_topics(settings: Settings, specs: Sequence[TopicSpec] | None = None) -> list[str]:
    """Create missing topics (default: the pipeline's, `topic_specs`); returns the names created. Existing
    topics are left as they are."""
    servers = bootstrap_servers(settings.broker)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=15000)
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        await admin.close()
        raise BrokerUnavailable(f"cannot reach Kafka at {servers}: {exc}") from None
    try:
        existing = set(await admin.list_topics())
        wanted = topic_specs(settings) if specs is None else specs
        missing = [spec for spec in wanted if spec.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(s.name, s.partitions, 1, topic_configs=s.config) for s in missing]
                )
        return [spec.name for spec in missing]
    finally:
        await admin.close()
