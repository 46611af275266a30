"""An analysis process ends when its worker does, however the worker ends (kill -9 included).

Analysis processes ignore SIGTERM and SIGINT (the worker decides when a batch stops), so a worker killed
outright, or dying of a crash, would leave them running: orphans that hold memory (a caption model each)
and CPU, and that nobody will ever ask for a result. Two guards, both set first thing in the process:

- on Linux, `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills the process the moment the thread that
  started it ends (the worker's event-loop thread, which lives as long as the worker);
- everywhere, a daemon thread that watches the parent's pid and ends the process once it has changed (an
  orphan is adopted by init or a subreaper), for systems without prctl and anything prctl does not see.

A parent gone before the guards were set is caught by the same pid check, right after setting them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("monitor.runtime.lifeline")

PR_SET_PDEATHSIG = 1
WATCH_EVERY = 0.5
"""Seconds between two looks at the parent's pid in the fallback thread."""


def die_with_parent(parent: int) -> None:
    """End this process when process `parent` (its creator) is gone."""
    kernel_guard = _set_death_signal()
    if os.getppid() != parent:  # gone already, before the guard was set
        os._exit(1)
    if not kernel_guard:
        log.info("no parent-death signal on this system; watching the parent's pid instead")
    threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()


def _set_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_EVERY)
    os._exit(1)  # no clean-up: the batch in hand has nobody to go to, and will be read again
