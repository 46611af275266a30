"""The pytest plugin: replay an archive in a test and assert on the alerts, as typed records.

Installed with the package (entry point group `pytest11`), so a test only asks for a fixture::

    def test_my_archive_alerts(replay_archive):
        alerts = replay_archive("tests/data/archive.jsonl", bank="tests/data/bank", threshold=20)
        assert [a.bank_cluster for a in alerts] == ["pope-puffer-coat"]

`replay_archive` is `monitor.replay` (README.md, "Python API"): the whole pipeline in-process, no Kafka,
settings from the documented defaults and the arguments only (never from `MONITOR_*` variables, so a test
gives the same alerts on every machine). `monitor_sample` gives the bundled sample archive and bank.

Importing this module imports nothing of the monitor: pytest loads it in every session of an environment
where the package is installed, and most of those sessions never replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from monitor.api import PathLike
    from monitor.bank.store import Bank
    from monitor.models import Alert
    from monitor.settings import Settings


class ReplayArchive(Protocol):
    """The `replay_archive` fixture's type, for annotating tests."""

    def __call__(
        self,
        archive: PathLike,
        *,
        bank: Bank | PathLike | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> list[Alert]: ...


@dataclass(frozen=True)
class Sample:
    """The sample bundled with the package (`monitor demo` replays it) and the settings it is built for."""

    archive: Path
    bank: Path
    threshold: int
    window_seconds: int


@pytest.fixture
def replay_archive() -> ReplayArchive:
    """`replay_archive(archive, *, bank=None, settings=None, **overrides) -> list[Alert]`: the alerts the
    archive yields, in the order they were raised."""
    from monitor.api import replay

    return replay


@pytest.fixture(scope="session")
def monitor_sample() -> Sample:
    """The bundled sample: 201 posts and a bank; with its threshold it raises three alerts."""
    import json

    folder = Path(str(resources.files("monitor") / "sample"))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return Sample(
        archive=folder / "archive.jsonl",
        bank=folder / "bank",
        threshold=int(manifest["threshold"]),
        window_seconds=int(manifest["window_seconds"]),
    )
