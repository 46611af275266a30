"""misinfo-monitor: a streaming monitor for viral AI-generated fakes.

The public Python API, for scripts and tests (README.md, "Python API")::

    import monitor

    alerts = monitor.replay("archive.jsonl", bank="bank/", threshold=20)
    found = monitor.match_image("suspect.jpg", bank="bank/")

Every name loads on first use: `import monitor` alone imports nothing else, because each analysis process
the worker spawns imports this package, and a test run that never replays should not pay for numpy,
Pillow or the caption models.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "Alert",
    "Bank",
    "BankMatch",
    "BankMatchReason",
    "NarrativeReason",
    "Post",
    "ProvenanceReason",
    "Settings",
    "load_bank",
    "match_image",
    "replay",
]

_HOMES = {
    "Alert": "monitor.models",
    "Bank": "monitor.bank.store",
    "BankMatch": "monitor.models",
    "BankMatchReason": "monitor.models",
    "NarrativeReason": "monitor.models",
    "Post": "monitor.models",
    "ProvenanceReason": "monitor.models",
    "Settings": "monitor.settings",
    "load_bank": "monitor.api",
    "match_image": "monitor.api",
    "replay": "monitor.api",
}

if TYPE_CHECKING:
    from monitor.api import load_bank, match_image, replay
    from monitor.bank.store import Bank
    from monitor.models import Alert, BankMatch, BankMatchReason, NarrativeReason, Post, ProvenanceReason
    from monitor.settings import Settings


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'monitor' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
