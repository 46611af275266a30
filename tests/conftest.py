from __future__ import annotations

import pytest

from monitor.synthetic import Scenario, build_scenario
from tests.support.kafka import broker_ready


@pytest.fixture(scope="session")
def kafka_broker() -> str:
    """The real broker must be up (`bash deploy/kafka/kafka.sh start`): a missing one fails, never skips."""
    ready, message = broker_ready()
    if not ready:
        pytest.fail(f"Kafka broker not ready ({message}); start it with: bash deploy/kafka/kafka.sh start")
    return "localhost:9092"


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """The default synthetic stream: three clusters built to alert, two that must not, noise, bad lines."""
    return build_scenario(tmp_path_factory.mktemp("scenario"))
