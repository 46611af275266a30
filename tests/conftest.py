from __future__ import annotations

import os

import pytest

from tests.support.kafka import CREATED, broker_ready, delete_created_topics
from tests.support.synthetic import Scenario, build_scenario

# The project's own pytest plugin (entry point `pytest11`), registered here too so that the tests use this
# checkout's plugin even where the installed package's entry points are older; pytester runs the README's
# example test. The entry point's name is the module's, so pytest never registers the plugin twice.
pytest_plugins = ["pytester", "monitor.testing.plugin"]


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a hidden failure (a missing service, say): fail the run. The topics this
    session's tests created on the broker are deleted (`delete_created_topics`)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if CREATED:
        try:
            deleted = delete_created_topics()
        except Exception as exc:  # the broker may be the very thing that failed: say so, change nothing
            if reporter is not None:
                reporter.write_line(f"could not delete this session's Kafka topics: {exc!r}", yellow=True)
        else:
            if reporter is not None:
                reporter.write_line(f"deleted this session's {len(deleted)} Kafka topics")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and os.environ.get("CI") and exitstatus == 0:
        reporter.write_line(f"CI: {skipped} skipped test(s) count as a failure", red=True)
        session.exitstatus = 1
