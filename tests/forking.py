"""Running a function in a forked child, as a prefork pool does, from a test."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

__all__ = ["run_forked"]

CHILD_FAILED = 70


def run_forked(child: Callable[[], int], timeout_s: float = 10.0) -> int | None:
    """``child()`` in a child of ``os.fork()``; its exit status, or None if it had not exited
    within ``timeout_s`` (it is killed then).

    A bare fork, not multiprocessing's: multiprocessing runs, in its children, the after-fork
    and exit handlers registered in this process, and an earlier test's Celery app has some
    that read its broker socket (a child hung there for good).
    """
    pid = os.fork()
    if pid == 0:
        code = CHILD_FAILED
        try:
            code = child()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None
