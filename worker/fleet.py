"""Start and stop real Celery worker processes (the demo and the integration tests use it)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery

__all__ = ["WorkerProcess", "start_worker", "wait_until_ready"]

DEFAULT_QUEUES = "trading,market_data,escalation"


@dataclass
class WorkerProcess:
    """One ``celery worker`` (main process plus its pool) started by :func:`start_worker`."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def pid(self) -> int:
        """The main process id."""
        return self.process.pid

    def child_pids(self) -> list[int]:
        """The pool processes' ids (prefork children)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            return []

    def kill(self) -> None:
        """SIGKILL the whole process group: nothing acks, nothing cleans up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Warm shutdown, then SIGKILL if it does not exit in time.

        SIGTERM goes to the main process only: it stops consuming, lets the pool finish the
        tasks running and gives back the messages it holds. Sent to the whole process group it
        also reached the pool's children, which died mid-task (their messages requeued, an
        escalation's chain of flushes cut where a flush was running)."""
        if self.process.poll() is not None:
            return
        try:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass

    def log(self) -> str:
        """Everything the worker wrote."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_worker(
    env: Mapping[str, str],
    log_dir: Path,
    *,
    concurrency: int = 2,
    pool: str = "prefork",
    queues: str = DEFAULT_QUEUES,
    name: str | None = None,
    loglevel: str = "WARNING",
    app: str = "worker",
) -> WorkerProcess:
    """Start ``celery -A <app> worker`` in its own process group with ``env``."""
    node = name or f"w{uuid.uuid4().hex[:8]}"
    log_path = log_dir / f"{node}.log"
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "-Q", queues, "-c", str(concurrency), "-P", pool,
        "-n", f"{node}@%h", "-l", loglevel, "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(node, process, log_path, dict(env))


def wait_until_ready(app: Celery, workers: list[WorkerProcess], timeout_s: float = 30.0) -> None:
    """Block until every worker answers a broadcast ping; RuntimeError with its log if not."""
    deadline = time.monotonic() + timeout_s
    expected = {w.name for w in workers}
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker {worker.name} exited early:\n{worker.log()[-4000:]}")
        replies = app.control.ping(timeout=0.5) or []
        answered = {name.split("@", 1)[0] for reply in replies for name in reply}
        if expected <= answered:
            return
    logs = "\n".join(f"--- {w.name}\n{w.log()[-2000:]}" for w in workers)
    raise RuntimeError(f"workers not ready after {timeout_s:g} s:\n{logs}")
