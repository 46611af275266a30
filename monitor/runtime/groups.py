"""How a worker's consumers belong to their groups: static members with short sessions, so a worker that
is killed and restarted resumes within seconds instead of a minute.

A worker is in three consumer groups, one per loop: `<app id>-analyze`, `<app id>-track` and `<app id>-slack`
(Faust's own consumer, in the group `<app id>`, reads only Faust's leader topic now; it gets the same
settings). When a worker dies without leaving them (kill -9, a crash, the OOM killer), Kafka keeps its
partitions assigned to the dead member until the member's session times out, and a replacement's join
waits for that: with Faust's default session (60 s) every stage stood still for 45-60 s after a kill -9.

- Sessions last `SESSION_TIMEOUT` (10 s, heartbeats every 3 s) in all three groups. Our loops heartbeat
  from the event loop, which never waits on analysis (that runs in processes or a thread).
- With `MONITOR_INSTANCE_ID` set (the systemd unit sets `<host>-<instance>`), each consumer joins as a
  static member (`group.instance.id`, KIP-345): a replacement with the same id takes the dead member's
  place, and its partitions, as soon as it joins, without waiting for the session to end or a rebalance.
  The price: a static member does not leave its groups when it stops, so a worker stopped for good keeps
  its partitions idle for one session (10 s) before the others take them over. Two live workers must
  never share an id (the newer one fences the older out).
"""

from __future__ import annotations

from typing import Any

from monitor.settings import Settings

SESSION_TIMEOUT = 10.0
"""Seconds without a heartbeat before Kafka gives a member's partitions to the others."""
HEARTBEAT_INTERVAL = 3.0


def static_id(settings: Settings) -> str | None:
    return settings.instance_id.strip() or None


def consumer_options(settings: Settings) -> dict[str, Any]:
    """Group settings for an aiokafka consumer of ours."""
    return {
        "group_instance_id": static_id(settings),
        "session_timeout_ms": int(SESSION_TIMEOUT * 1000),
        "heartbeat_interval_ms": int(HEARTBEAT_INTERVAL * 1000),
    }


def faust_options(settings: Settings) -> dict[str, Any]:
    """The same for Faust's consumer (group `<app id>`, its leader topic only), as `faust.App` settings."""
    return {
        "consumer_group_instance_id": static_id(settings),
        "broker_session_timeout": SESSION_TIMEOUT,
        "broker_heartbeat_interval": HEARTBEAT_INTERVAL,
    }
